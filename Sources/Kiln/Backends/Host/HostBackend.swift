import Foundation
import Synchronization

/// The reference backend: plain Swift loops with shape comments, OpenBLAS for GEMM. Every OpenCL kernel is
/// tested against it, and it is the fallback when no OpenCL device exists.
///
/// It runs its own threads: each op splits its work (the batch of a convolution, the columns of a GEMM,
/// the elements of a map) across `threads`, and OpenBLAS runs single-threaded inside each part, so that
/// small GEMMs are not split again and no idle OpenBLAS thread spins between ops.
public final class HostBackend: Backend {
    public static let shared = HostBackend()

    public let device = Device.host
    private let threadCount: Atomic<Int>

    init() {
        let requested = ProcessInfo.processInfo.environment["KILN_HOST_THREADS"].flatMap { Int($0) }
        threadCount = Atomic(Swift.max(1, requested ?? ProcessInfo.processInfo.activeProcessorCount))
        if (try? BLAS.load()) != nil { BLAS.setThreads(1) }
    }

    /// Threads the host ops use (default: every core, or `KILN_HOST_THREADS`).
    public var threads: Int {
        get { threadCount.load(ordering: .relaxed) }
        set { threadCount.store(Swift.max(1, newValue), ordering: .relaxed) }
    }

    public var name: String { "host (Swift + OpenBLAS \(BLAS.core), \(threads) threads)" }

    // MARK: Memory

    public func allocate(count: Int) throws -> TensorStorage { HostStorage(count: count, backend: self) }

    public func write(_ values: UnsafeBufferPointer<Float>, to tensor: Tensor) throws {
        _ = tensor.hostBuffer.update(fromContentsOf: values)
    }

    public func read(_ tensor: Tensor, into values: UnsafeMutableBufferPointer<Float>) throws {
        _ = values.update(fromContentsOf: tensor.hostBuffer)
    }

    public func copy(_ source: Tensor, to destination: Tensor) throws {
        _ = destination.hostBuffer.update(fromContentsOf: source.hostBuffer)
    }

    public func synchronize() throws {}

    // MARK: Creation

    public func fill(_ tensor: Tensor, value: Float) throws {
        tensor.hostBuffer.update(repeating: value)
    }

    // Element i is a function of (seed, offset + i) alone, so the threads' parts give the values one thread would.
    public func fillUniform(_ tensor: Tensor, seed: UInt64, offset: UInt64, low: Float, high: Float) throws {
        let buffer = tensor.hostBuffer
        parallelRanges(buffer.count, grain: 1 << 16) { part in
            Philox.fillUniform(UnsafeMutableBufferPointer(rebasing: buffer[part]), seed: seed, offset: offset &+ UInt64(part.lowerBound),
                               low: low, high: high)
        }
    }

    public func fillNormal(_ tensor: Tensor, seed: UInt64, offset: UInt64, mean: Float, std: Float) throws {
        let buffer = tensor.hostBuffer
        parallelRanges(buffer.count, grain: 1 << 16) { part in
            Philox.fillNormal(UnsafeMutableBufferPointer(rebasing: buffer[part]), seed: seed, offset: offset &+ UInt64(part.lowerBound),
                              mean: mean, std: std)
        }
    }

    // MARK: Elementwise

    static func apply(_ op: BinaryOp, _ x: Float, _ y: Float) -> Float {
        switch op {
        case .add: return x + y
        case .sub: return x - y
        case .mul: return x * y
        case .div: return x / y
        case .max: return x.isNaN ? y : (y.isNaN ? x : Swift.max(x, y))  // fmax: NaN loses
        case .min: return x.isNaN ? y : (y.isNaN ? x : Swift.min(x, y))
        }
    }

    static func apply(_ op: UnaryOp, _ x: Float) -> Float {
        switch op {
        case .neg: return -x
        case .abs: return Swift.abs(x)
        case .square: return x * x
        case .sqrt: return x.squareRoot()
        case .rsqrt: return 1 / x.squareRoot()
        case .exp: return Float(Foundation.exp(Double(x)))
        case .log: return Float(Foundation.log(Double(x)))
        case .reciprocal: return 1 / x
        case .relu: return Swift.max(x, 0)
        case .sigmoid: return Float(1 / (1 + Foundation.exp(-Double(x))))
        case .tanh: return Float(Foundation.tanh(Double(x)))
        case .sign: return x > 0 ? 1 : (x < 0 ? -1 : 0)
        }
    }

    public func binary(_ op: BinaryOp, _ a: Tensor, _ b: Tensor, into out: Tensor) throws {
        let (a, b, out) = (a.hostBuffer.baseAddress!, b.hostBuffer.baseAddress!, out.hostBuffer)
        map(out) { range in
            switch op {
            case .add: for i in range { out[i] = a[i] + b[i] }
            case .sub: for i in range { out[i] = a[i] - b[i] }
            case .mul: for i in range { out[i] = a[i] * b[i] }
            case .div: for i in range { out[i] = a[i] / b[i] }
            case .max, .min: for i in range { out[i] = Self.apply(op, a[i], b[i]) }
            }
        }
    }

    public func binary(_ op: BinaryOp, _ a: Tensor, scalar: Float, into out: Tensor) throws {
        let (a, out) = (a.hostBuffer.baseAddress!, out.hostBuffer)
        map(out) { range in
            switch op {
            case .add: for i in range { out[i] = a[i] + scalar }
            case .sub: for i in range { out[i] = a[i] - scalar }
            case .mul: for i in range { out[i] = a[i] * scalar }
            case .div: for i in range { out[i] = a[i] / scalar }
            case .max, .min: for i in range { out[i] = Self.apply(op, a[i], scalar) }
            }
        }
    }

    public func binaryPerChannel(_ op: BinaryOp, _ a: Tensor, _ b: Tensor, channels: Int, inner: Int, into out: Tensor) throws {
        // a, out: [outer, channels, inner]; b: [channels]. Work on whole rows of `inner` so b[c] is loaded once.
        let rows = out.count / Swift.max(inner, 1)
        let (a, b, out) = (a.hostBuffer.baseAddress!, b.hostBuffer, out.hostBuffer.baseAddress!)
        parallelRanges(rows, grain: Self.elementGrain / Swift.max(inner, 1)) { range in
            for row in range {
                let value = b[row % channels], start = row * inner
                switch op {
                case .add: for i in start..<(start + inner) { out[i] = a[i] + value }
                case .sub: for i in start..<(start + inner) { out[i] = a[i] - value }
                case .mul: for i in start..<(start + inner) { out[i] = a[i] * value }
                case .div: for i in start..<(start + inner) { out[i] = a[i] / value }
                case .max, .min: for i in start..<(start + inner) { out[i] = Self.apply(op, a[i], value) }
                }
            }
        }
    }

    public func axpby(alpha: Float, _ x: Tensor, beta: Float, _ y: Tensor) throws {
        let (x, y) = (x.hostBuffer.baseAddress!, y.hostBuffer)
        map(y) { range in for i in range { y[i] = alpha * x[i] + beta * y[i] } }
    }

    public func unary(_ op: UnaryOp, _ a: Tensor, into out: Tensor) throws {
        let (a, out) = (a.hostBuffer.baseAddress!, out.hostBuffer)
        map(out) { range in
            switch op {
            case .neg: for i in range { out[i] = -a[i] }
            case .square: for i in range { out[i] = a[i] * a[i] }
            case .relu: for i in range { out[i] = Swift.max(a[i], 0) }
            default: for i in range { out[i] = Self.apply(op, a[i]) }
            }
        }
    }

    /// Elements per thread below which a map is not worth splitting.
    static let elementGrain = 1 << 15

    /// Runs `body` over the indices of `out`, split across threads when there are enough of them.
    private func map(_ out: UnsafeMutableBufferPointer<Float>, _ body: (Range<Int>) -> Void) {
        parallelRanges(out.count, grain: Self.elementGrain, body)
    }

    // MARK: Reductions, layout, GEMM

    public func reduce(_ op: ReduceOp, _ a: Tensor, as shape: ReductionShape, into out: Tensor) throws {
        // a: [outer, axis, inner] -> out: [outer, inner]
        let (a, out) = (a.hostBuffer, out.hostBuffer)
        if op == .sum || op == .mean, shape.inner == 1 {
            // Contiguous rows (bias gradients, per-image sums): sixteen Float lanes per row.
            let base = a.baseAddress!
            parallelRanges(shape.outer, grain: Swift.max(1, Self.elementGrain / Swift.max(shape.axis, 1))) { rows in
                for o in rows {
                    let total = Self.moments(base + o * shape.axis, shape.axis, shift: 0).sum
                    out[o] = op == .mean ? total / Float(shape.axis) : total
                }
            }
            return
        }
        for o in 0..<shape.outer {
            for j in 0..<shape.inner {
                let base = o * shape.axis * shape.inner + j
                func element(_ k: Int) -> Float { a[base + k * shape.inner] }
                let result: Float
                switch op {
                case .sum, .mean:
                    var total = 0.0  // accumulate in Double: the reference should be the accurate side
                    for k in 0..<shape.axis { total += Double(element(k)) }
                    result = Float(op == .mean ? total / Double(shape.axis) : total)
                case .max, .min:
                    var best: Float = op == .max ? -.infinity : .infinity
                    for k in 0..<shape.axis { best = Self.apply(op == .max ? .max : .min, best, element(k)) }
                    result = best
                case .argmax:
                    var bestIndex = 0
                    for k in 1..<Swift.max(shape.axis, 1) where element(k) > element(bestIndex) { bestIndex = k }
                    result = Float(bestIndex)
                }
                out[o * shape.inner + j] = result
            }
        }
    }

    public func gemm(_ a: Tensor, transposed transposeA: Bool, _ b: Tensor, transposed transposeB: Bool,
                     m: Int, n: Int, k: Int, alpha: Float, beta: Float, into c: Tensor) throws {
        try BLAS.load()
        let (a, b, c) = (a.hostBuffer.baseAddress!, b.hostBuffer.baseAddress!, c.hostBuffer.baseAddress!)
        let (lda, ldb) = (transposeA ? m : k, transposeB ? k : n)
        // Each thread takes a block of C's columns: op(b)'s columns start at b + j (b + j·ldb when transposed).
        parallelRanges(n, grain: Swift.max(16, Self.gemmGrain / Swift.max(m * k, 1))) { columns in
            BLAS.sgemm(transposeA: transposeA, transposeB: transposeB, m: m, n: columns.count, k: k, alpha: alpha,
                       a: a, lda: lda, b: b + columns.lowerBound * (transposeB ? ldb : 1), ldb: ldb,
                       beta: beta, c: c + columns.lowerBound, ldc: n)
        }
    }

    /// Multiply-adds per thread below which a GEMM is not worth splitting.
    static let gemmGrain = 1 << 18

    public func transpose(_ a: Tensor, rows: Int, cols: Int, into out: Tensor) throws {
        // a: [rows, cols] -> out: [cols, rows]
        let (a, out) = (a.hostBuffer, out.hostBuffer)
        for r in 0..<rows {
            for c in 0..<cols { out[c * rows + r] = a[r * cols + c] }
        }
    }
}
