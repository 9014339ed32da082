import KilnCL

/// Device memory for a tensor: a buffer leased from the device's caching allocator.
final class CLStorage: TensorStorage, @unchecked Sendable {
    let buffer: CLBuffer

    init(buffer: CLBuffer, count: Int, backend: OpenCLBackend) {
        self.buffer = buffer
        super.init(count: count, backend: backend)
    }
}

extension Tensor {
    /// The tensor's device buffer (OpenCL backend only).
    var clBuffer: CLBuffer {
        guard let storage = storage as? CLStorage else { preconditionFailure("\(self) is not on an OpenCL device") }
        return storage.buffer
    }
}

/// Runs every op with the kernels of Kernels/*.cl (embedded in the binary) and CLBlast, on one device's
/// in-order queue. Nothing here waits for the device except reads.
public final class OpenCLBackend: Backend {
    public let device: Device
    public let context: CLContext
    private let programs = Locked<[String: CLProgram]>([:])
    /// Kernels by name, file and options, for the launch path (KernelLaunch.swift).
    let launchKernels = Locked<[LaunchKey: CLKernel]>([:])
    /// Work-group size of the reduction kernels: a power of two within the device's limit.
    let reduceGroupSize: Int
    /// Which convolution algorithm runs each (pass, shape): ConvolutionTuner.swift.
    let convolutionTuner: ConvolutionTuner
    /// The tunings the plan being recorded asks for (Warmup.swift).
    let plannedTunings = Locked<[PlannedTuning]>([])

    init(context: CLContext, device: Device) throws {
        self.context = context
        self.device = device
        var groupSize = 64
        while groupSize > context.device.info.maxWorkGroupSize { groupSize /= 2 }
        reduceGroupSize = groupSize
        convolutionTuner = ConvolutionTuner(device: context.device.info)
    }

    public var name: String { context.device.info.name }

    /// The kernel `name` of the kernel file `file` (e.g. "elementwise.cl"), building the program on first use.
    /// Files listed in `prelude` are compiled in front of it (shared helpers such as random.cl). Every
    /// program gets the device's reduction work-group size as REDUCE_WG. Ops launch kernels through the
    /// typed wrappers generated from the kernels' signatures (KernelLaunch.swift), not by name.
    func kernel(_ name: String, in file: String, prelude: [String] = [], options extraOptions: String = "") throws -> CLKernel {
        let (key, options) = programKey(file, prelude, extraOptions)
        if let program = programs.withLock({ $0[key] }) { return try program.kernel(name) }
        // Built outside the lock: programs for other kernels may build at the same time (warm-up threads).
        let program = try context.program(name: file, source: try programSource(file, prelude), options: options)
        programs.withLock { $0[key] = program }
        return try program.kernel(name)
    }

    /// Records the program of `file` for the plan being recorded (`CLContext.plan`), instead of building it.
    func planProgram(_ file: String, prelude: [String], options extraOptions: String) throws {
        let (key, options) = programKey(file, prelude, extraOptions)
        if programs.withLock({ $0[key] }) != nil { return }
        context.planProgram(name: file, source: try programSource(file, prelude), options: options)
    }

    private func programKey(_ file: String, _ prelude: [String], _ extraOptions: String) -> (key: String, options: String) {
        let options = "-DREDUCE_WG=\(reduceGroupSize)" + (extraOptions.isEmpty ? "" : " " + extraOptions)
        return (([file] + prelude).joined(separator: "+") + " " + options, options)
    }

    private func programSource(_ file: String, _ prelude: [String]) throws -> String {
        var source = ""
        for part in prelude + [file] {
            guard let text = embeddedKernelSources[part] else {
                throw KilnError.invalidArgument("no kernel file \(part) is embedded in this binary")
            }
            source += text + "\n"
        }
        return source
    }

    // MARK: Memory

    public func allocate(count: Int) throws -> TensorStorage {
        guard count <= Int(UInt32.max) else {
            throw KilnError.invalidArgument("tensor of \(count) elements exceeds the OpenCL backend's 32-bit indexing")
        }
        return CLStorage(buffer: try context.buffer(count: count), count: count, backend: self)
    }

    public func write(_ values: UnsafeBufferPointer<Float>, to tensor: Tensor) throws {
        try context.write(tensor.clBuffer, offset: tensor.offset * 4, from: UnsafeRawBufferPointer(values))
    }

    public func read(_ tensor: Tensor, into values: UnsafeMutableBufferPointer<Float>) throws {
        try context.read(tensor.clBuffer, offset: tensor.offset * 4, into: UnsafeMutableRawBufferPointer(values))
    }

    public func startRead(_ tensor: Tensor, into values: UnsafeMutableBufferPointer<Float>) throws -> any PendingTransfer {
        OpenCLTransfer(event: try context.startRead(tensor.clBuffer, offset: tensor.offset * 4, into: UnsafeMutableRawBufferPointer(values)))
    }

    public func copy(_ source: Tensor, to destination: Tensor) throws {
        try context.copy(from: source.clBuffer, offset: source.offset * 4, to: destination.clBuffer,
                         offset: destination.offset * 4, byteCount: source.count * 4)
    }

    public func synchronize() throws { try context.finish() }

    // MARK: Creation

    public func fill(_ tensor: Tensor, value: Float) throws {
        try elementwiseKernels.fill(items: tensor.count, out: tensor, n: tensor.count, value: value)
    }

    public func fillUniform(_ tensor: Tensor, seed: UInt64, offset: UInt64, low: Float, high: Float) throws {
        let (seed, offset) = (Self.words(seed), Self.words(offset))
        try randomKernels.randomUniform(items: tensor.count, out: tensor, n: tensor.count, seedLo: seed.low, seedHi: seed.high,
                                        offsetLo: offset.low, offsetHi: offset.high, low: low, high: high)
    }

    public func fillNormal(_ tensor: Tensor, seed: UInt64, offset: UInt64, mean: Float, std: Float) throws {
        let (seed, offset) = (Self.words(seed), Self.words(offset))
        try randomKernels.randomNormal(items: tensor.count, out: tensor, n: tensor.count, seedLo: seed.low, seedHi: seed.high,
                                       offsetLo: offset.low, offsetHi: offset.high, mean: mean, std: std)
    }

    /// A 64-bit seed or stream position as the two 32-bit words the kernels take (OpenCL C 1.2 has no
    /// portable 64-bit kernel arguments on every driver).
    static func words(_ value: UInt64) -> (low: Int, high: Int) {
        (Int(value & 0xFFFF_FFFF), Int(value >> 32))
    }

    // MARK: Elementwise

    public func binary(_ op: BinaryOp, _ a: Tensor, _ b: Tensor, into out: Tensor) throws {
        try elementwiseKernels.binary(op.kernel, items: out.count, a: a, b: b, out: out, n: out.count)
    }

    public func binary(_ op: BinaryOp, _ a: Tensor, scalar: Float, into out: Tensor) throws {
        try elementwiseKernels.scalar(op.kernel, items: out.count, a: a, y: scalar, out: out, n: out.count)
    }

    public func binaryPerChannel(_ op: BinaryOp, _ a: Tensor, _ b: Tensor, channels: Int, inner: Int, into out: Tensor) throws {
        try elementwiseKernels.channel(op.kernel, items: out.count, a: a, b: b, out: out, n: out.count, channels: channels,
                                       inner: Swift.max(inner, 1))
    }

    public func axpby(alpha: Float, _ x: Tensor, beta: Float, _ y: Tensor) throws {
        try elementwiseKernels.axpby(items: y.count, alpha: alpha, x: x, beta: beta, y: y, n: y.count)
    }

    public func unary(_ op: UnaryOp, _ a: Tensor, into out: Tensor) throws {
        try elementwiseKernels.unary(op.kernel, items: out.count, a: a, out: out, n: out.count)
    }

    // MARK: Reductions, layout, GEMM

    public func reduce(_ op: ReduceOp, _ a: Tensor, as shape: ReductionShape, into out: Tensor) throws {
        let outputs = shape.outer * shape.inner
        let inner = Swift.max(shape.inner, 1)
        let kernels = reduceKernels
        switch op {
        case .sum: try kernels.reduce(.sum, groups: outputs, a: a, out: out, axis: shape.axis, inner: inner, scale: 1)
        case .mean: try kernels.reduce(.sum, groups: outputs, a: a, out: out, axis: shape.axis, inner: inner, scale: 1 / Float(shape.axis))
        case .max: try kernels.reduce(.max, groups: outputs, a: a, out: out, axis: shape.axis, inner: inner, scale: 1)
        case .min: try kernels.reduce(.min, groups: outputs, a: a, out: out, axis: shape.axis, inner: inner, scale: 1)
        case .argmax: try kernels.reduceArgmax(groups: outputs, a: a, out: out, axis: shape.axis, inner: inner, unused: 0)
        }
    }

    public func gemm(_ a: Tensor, transposed transposeA: Bool, _ b: Tensor, transposed transposeB: Bool,
                     m: Int, n: Int, k: Int, alpha: Float, beta: Float, into c: Tensor) throws {
        try context.sgemm(
            m: m, n: n, k: k, alpha: alpha,
            a: CLMatrix(a.clBuffer, offset: a.offset, leadingDimension: transposeA ? m : k, transposed: transposeA),
            b: CLMatrix(b.clBuffer, offset: b.offset, leadingDimension: transposeB ? k : n, transposed: transposeB),
            beta: beta,
            c: CLMatrix(c.clBuffer, offset: c.offset, leadingDimension: n))
    }

    public func transpose(_ a: Tensor, rows: Int, cols: Int, into out: Tensor) throws {
        let tile = 16
        try TransposeKernels(self, options: "-DTILE=\(tile)")
            .transpose2d(global: [cols, rows], local: [tile, tile], a: a, out: out, rows: rows, cols: cols)
    }
}

extension BinaryOp {
    /// The elementwise.cl kernels of this op.
    var kernel: ElementwiseKernels.BinaryKernels {
        switch self {
        case .add: return .add
        case .sub: return .sub
        case .mul: return .mul
        case .div: return .div
        case .max: return .max
        case .min: return .min
        }
    }
}

extension UnaryOp {
    /// The elementwise.cl kernel of this map.
    var kernel: ElementwiseKernels.UnaryKernel {
        switch self {
        case .neg: return .neg
        case .abs: return .abs
        case .square: return .square
        case .sqrt: return .sqrt
        case .rsqrt: return .rsqrt
        case .exp: return .exp
        case .log: return .log
        case .reciprocal: return .reciprocal
        case .relu: return .relu
        case .sigmoid: return .sigmoid
        case .tanh: return .tanh
        case .sign: return .sign
        }
    }
}

/// A non-blocking read on an OpenCL queue.
struct OpenCLTransfer: PendingTransfer {
    let event: CLEvent?
    func isComplete() throws -> Bool { try event?.isComplete() ?? true }
    func wait() throws { try event?.wait() }
}
