import COpenCL
import Foundation

/// What a stretch of work needs built before it runs: the programs it would build and the CLBlast products
/// it would compute (CLBlast compiles its kernels on a routine's first call). `CLContext.plan` records one
/// by running the work with every command skipped; `CLContext.prepare` then builds it all in parallel.
public struct CLWorkPlan: Sendable {
    public struct Program: Hashable, Sendable {
        public var name: String
        public var source: String
        public var options: String
    }

    /// A CLBlast product's sizes: what decides which of its kernels CLBlast compiles.
    public struct Product: Hashable, Sendable {
        public var m: Int, n: Int, k: Int
        public var transposedA: Bool, transposedB: Bool
        /// nil for a single product (`sgemm`), else the batch of `sgemmStridedBatched`.
        public var batch: Int?
    }

    /// In the order first met.
    public private(set) var programs: [Program] = []
    public private(set) var products: [Product] = []

    public init() {}

    mutating func add(_ program: Program) { if !programs.contains(program) { programs.append(program) } }
    mutating func add(_ product: Product) { if !products.contains(product) { products.append(product) } }
}

extension CLContext {
    /// Runs `body` with every kernel launch, CLBlast call and device-to-device copy skipped, recording the
    /// programs and products it asks for instead. Device memory is still allocated, written from the host
    /// and read, so what the work computes is undefined: state it creates must be thrown away or be
    /// written from the host, and state it would change in place is left as it was. One plan at a time.
    public func plan(_ body: () throws -> Void) throws -> CLWorkPlan {
        planning.withLock { $0 = CLWorkPlan() }
        planningActive.store(true, ordering: .releasing)
        defer {
            planningActive.store(false, ordering: .releasing)
            planning.withLock { $0 = nil }
        }
        try body()
        return planning.withLock { $0 } ?? CLWorkPlan()
    }

    /// Whether a `plan` is being recorded: launchers then call `planProgram` rather than building.
    public var isPlanning: Bool { planningActive.load(ordering: .acquiring) }

    /// Records a program the planned work would build.
    public func planProgram(name: String, source: String, options: String) {
        planning.withLock { $0?.add(CLWorkPlan.Program(name: name, source: source, options: options)) }
    }

    /// Records a product, returning true while planning (the call is then skipped).
    func planned(_ product: CLWorkPlan.Product) -> Bool {
        guard isPlanning else { return false }
        planning.withLock { $0?.add(product) }
        return true
    }

    /// The programs of `plan` not yet built in this context, and the products `prepare` has not computed yet.
    public func remainingWork(in plan: CLWorkPlan) -> (programs: [CLWorkPlan.Program], products: [CLWorkPlan.Product]) {
        (plan.programs.filter { !hasProgram(source: $0.source, options: $0.options) },
         clblastPrepared.withLock { prepared in plan.products.filter { !prepared.contains($0) } })
    }

    /// Builds the programs of `plan` on `threads` threads at once (POCL's compiler is single-threaded per
    /// program) and computes each product once on scratch buffers so that CLBlast compiles its kernels,
    /// calling `finished` after each item. Returns when everything is built; the first error is thrown
    /// (a failed build with its log).
    public func prepare(_ plan: CLWorkPlan, threads: Int, finished: @escaping @Sendable () -> Void = {}) throws {
        let (programs, products) = remainingWork(in: plan)
        // CLBlast's compile is the longest item: it starts first, beside the programs.
        var work: [@Sendable () throws -> Void] = []
        if !products.isEmpty { work.append { [self] in try prepareProducts(products); finished() } }
        for program in programs {
            work.append { [self] in _ = try self.program(name: program.name, source: program.source, options: program.options); finished() }
        }
        let jobs = work
        let next = Locked(0)
        let firstError = Locked<Error?>(nil)
        let group = DispatchGroup()
        for _ in 0..<Swift.max(1, Swift.min(threads, jobs.count)) {
            group.enter()
            Thread.detachNewThread {
                defer { group.leave() }
                while firstError.withLock({ $0 == nil }) {
                    let index = next.withLock { index in defer { index += 1 }; return index }
                    guard index < jobs.count else { return }
                    do { try jobs[index]() } catch { firstError.withLock { if $0 == nil { $0 = error } } }
                }
            }
        }
        group.wait()
        if let error = firstError.withLock({ $0 }) { throw error }
    }

    private func prepareProducts(_ products: [CLWorkPlan.Product]) throws {
        for product in products {
            let batch = product.batch ?? 1
            let a = try buffer(count: batch * product.m * product.k), b = try buffer(count: batch * product.k * product.n)
            let c = try buffer(count: batch * product.m * product.n)
            let (m, n, k) = (product.m, product.n, product.k)
            let matrixA = CLMatrix(a, leadingDimension: product.transposedA ? m : k, transposed: product.transposedA, batchStride: m * k)
            let matrixB = CLMatrix(b, leadingDimension: product.transposedB ? k : n, transposed: product.transposedB, batchStride: k * n)
            let matrixC = CLMatrix(c, leadingDimension: n, batchStride: m * n)
            if product.batch != nil {
                try sgemmStridedBatched(m: m, n: n, k: k, batch: batch, a: matrixA, b: matrixB, c: matrixC)
            } else {
                try sgemm(m: m, n: n, k: k, a: matrixA, b: matrixB, c: matrixC)
            }
            try finish()
            clblastPrepared.withLock { _ = $0.insert(product) }
        }
    }
}
