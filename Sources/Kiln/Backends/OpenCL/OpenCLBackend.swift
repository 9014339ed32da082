import KilnCL
import Synchronization

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

    /// Kernel arguments for the tensor: its buffer and its offset in elements.
    var clArguments: [CLKernelArgument] { [.buffer(clBuffer), .uint(UInt32(offset))] }
}

/// Runs every op with the kernels of Kernels/*.cl (embedded in the binary) and CLBlast, on one device's
/// in-order queue. Nothing here waits for the device except reads.
public final class OpenCLBackend: Backend {
    public let device: Device
    public let context: CLContext
    private let programs = Mutex<[String: CLProgram]>([:])
    /// Work-group size of the reduction kernels: a power of two within the device's limit.
    let reduceGroupSize: Int
    /// Which convolution algorithm runs each (pass, shape): ConvolutionTuner.swift.
    let convolutionTuner: ConvolutionTuner

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
    /// program gets the device's reduction work-group size as REDUCE_WG.
    func kernel(_ name: String, in file: String, prelude: [String] = [], options extraOptions: String = "") throws -> CLKernel {
        let options = "-DREDUCE_WG=\(reduceGroupSize)" + (extraOptions.isEmpty ? "" : " " + extraOptions)
        let key = ([file] + prelude).joined(separator: "+") + " " + options
        let program: CLProgram = try programs.withLock { programs in
            if let program = programs[key] { return program }
            var source = ""
            for part in prelude + [file] {
                guard let text = embeddedKernelSources[part] else {
                    throw KilnError.invalidArgument("no kernel file \(part) is embedded in this binary")
                }
                source += text + "\n"
            }
            let program = try context.program(name: file, source: source, options: options)
            programs[key] = program
            return program
        }
        return try program.kernel(name)
    }

    /// Launches a one-dimensional kernel over `count` items (it must ignore ids from `count` on). The
    /// work-group size is fixed: left to the driver, POCL compiles a new variant for every global size.
    func launch(_ name: String, in file: String, prelude: [String] = [], count: Int, _ arguments: [CLKernelArgument]) throws {
        guard count > 0 else { return }
        try context.launch(try kernel(name, in: file, prelude: prelude), global: [count], local: [reduceGroupSize], arguments: arguments)
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

    public func copy(_ source: Tensor, to destination: Tensor) throws {
        try context.copy(from: source.clBuffer, offset: source.offset * 4, to: destination.clBuffer,
                         offset: destination.offset * 4, byteCount: source.count * 4)
    }

    public func synchronize() throws { try context.finish() }

    // MARK: Creation

    public func fill(_ tensor: Tensor, value: Float) throws {
        try launch("fill", in: "elementwise.cl", count: tensor.count,
                   tensor.clArguments + [.uint(UInt32(tensor.count)), .float(value)])
    }

    public func fillUniform(_ tensor: Tensor, seed: UInt64, offset: UInt64, low: Float, high: Float) throws {
        try launch("random_uniform", in: "random.cl", count: tensor.count,
                   tensor.clArguments + [.uint(UInt32(tensor.count))] + Self.streamArguments(seed, offset) + [.float(low), .float(high)])
    }

    public func fillNormal(_ tensor: Tensor, seed: UInt64, offset: UInt64, mean: Float, std: Float) throws {
        try launch("random_normal", in: "random.cl", count: tensor.count,
                   tensor.clArguments + [.uint(UInt32(tensor.count))] + Self.streamArguments(seed, offset) + [.float(mean), .float(std)])
    }

    static func streamArguments(_ seed: UInt64, _ offset: UInt64) -> [CLKernelArgument] {
        [.uint(UInt32(truncatingIfNeeded: seed)), .uint(UInt32(truncatingIfNeeded: seed >> 32)),
         .uint(UInt32(truncatingIfNeeded: offset)), .uint(UInt32(truncatingIfNeeded: offset >> 32))]
    }

    // MARK: Elementwise

    public func binary(_ op: BinaryOp, _ a: Tensor, _ b: Tensor, into out: Tensor) throws {
        try launch("binary_\(op.rawValue)", in: "elementwise.cl", count: out.count,
                   a.clArguments + b.clArguments + out.clArguments + [.uint(UInt32(out.count))])
    }

    public func binary(_ op: BinaryOp, _ a: Tensor, scalar: Float, into out: Tensor) throws {
        try launch("scalar_\(op.rawValue)", in: "elementwise.cl", count: out.count,
                   a.clArguments + [.float(scalar)] + out.clArguments + [.uint(UInt32(out.count))])
    }

    public func binaryPerChannel(_ op: BinaryOp, _ a: Tensor, _ b: Tensor, channels: Int, inner: Int, into out: Tensor) throws {
        try launch("channel_\(op.rawValue)", in: "elementwise.cl", count: out.count,
                   a.clArguments + b.clArguments + out.clArguments
                   + [.uint(UInt32(out.count)), .uint(UInt32(channels)), .uint(UInt32(Swift.max(inner, 1)))])
    }

    public func axpby(alpha: Float, _ x: Tensor, beta: Float, _ y: Tensor) throws {
        try launch("axpby", in: "elementwise.cl", count: y.count,
                   [.float(alpha)] + x.clArguments + [.float(beta)] + y.clArguments + [.uint(UInt32(y.count))])
    }

    public func unary(_ op: UnaryOp, _ a: Tensor, into out: Tensor) throws {
        try launch("unary_\(op.rawValue)", in: "elementwise.cl", count: out.count,
                   a.clArguments + out.clArguments + [.uint(UInt32(out.count))])
    }

    // MARK: Reductions, layout, GEMM

    public func reduce(_ op: ReduceOp, _ a: Tensor, as shape: ReductionShape, into out: Tensor) throws {
        let outputs = shape.outer * shape.inner
        guard outputs > 0 else { return }
        let kernelName = op == .mean ? "reduce_sum" : "reduce_\(op.rawValue)"
        let scale: Float = op == .mean ? 1 / Float(shape.axis) : 1
        let kernel = try kernel(kernelName, in: "reduce.cl")
        try context.launch(kernel, global: [outputs * reduceGroupSize], local: [reduceGroupSize],
                           arguments: a.clArguments + out.clArguments
                           + [.uint(UInt32(shape.axis)), .uint(UInt32(Swift.max(shape.inner, 1))), .float(scale)])
    }

    public func matmul(_ a: Tensor, transposed transposeA: Bool, _ b: Tensor, transposed transposeB: Bool,
                       m: Int, n: Int, k: Int, alpha: Float, beta: Float, into c: Tensor) throws {
        guard m > 0, n > 0 else { return }
        guard k > 0 else {  // an empty sum: C = beta * C
            try axpby(alpha: 0, c, beta: beta, c)
            return
        }
        try context.sgemm(
            m: m, n: n, k: k, alpha: alpha,
            a: CLMatrix(a.clBuffer, offset: a.offset, leadingDimension: transposeA ? m : k, transposed: transposeA),
            b: CLMatrix(b.clBuffer, offset: b.offset, leadingDimension: transposeB ? k : n, transposed: transposeB),
            beta: beta,
            c: CLMatrix(c.clBuffer, offset: c.offset, leadingDimension: n))
    }

    public func transpose(_ a: Tensor, rows: Int, cols: Int, into out: Tensor) throws {
        let tile = 16
        try context.launch(try kernel("transpose2d", in: "transpose.cl", options: "-DTILE=\(tile)"),
                           global: [cols, rows], local: [tile, tile],
                           arguments: a.clArguments + out.clArguments + [.uint(UInt32(rows)), .uint(UInt32(cols))])
    }
}
