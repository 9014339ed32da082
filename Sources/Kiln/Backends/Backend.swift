/// Binary elementwise operations.
public enum BinaryOp: String, CaseIterable, Sendable {
    case add, sub, mul, div, max, min
}

/// Unary elementwise maps.
public enum UnaryOp: String, CaseIterable, Sendable {
    case neg, abs, square, sqrt, rsqrt, exp, log, reciprocal, relu, sigmoid, tanh, sign
}

/// Reductions over one axis.
public enum ReduceOp: String, CaseIterable, Sendable {
    case sum, mean, max, min
    /// Index of the largest value (the first one on ties), stored as a Float.
    case argmax
}

/// A tensor seen as `[outer, axis, inner]` for a reduction over its middle dimension.
public struct ReductionShape: Equatable, Sendable {
    public var outer: Int
    public var axis: Int
    public var inner: Int
}

/// A device-to-host copy under way (`Backend.startRead`).
public protocol PendingTransfer {
    func isComplete() throws -> Bool
    func wait() throws
}

/// A transfer that was done when it was started.
public struct CompletedTransfer: PendingTransfer {
    public init() {}
    public func isComplete() throws -> Bool { true }
    public func wait() throws {}
}

extension Backend {
    public func startRead(_ tensor: Tensor, into values: UnsafeMutableBufferPointer<Float>) throws -> any PendingTransfer {
        try read(tensor, into: values)
        return CompletedTransfer()
    }
}

/// The op surface every device implements. `HostBackend` is the reference; `OpenCLBackend` runs the same
/// ops with Kernels/*.cl and CLBlast. Operands are already checked by the caller (the `Tensor` API): same
/// device, matching shapes, outputs allocated. Ops are asynchronous on devices that can be: they are only
/// guaranteed done when values are read back or after `synchronize()`.
public protocol Backend: AnyObject, Sendable,
    ConvolutionBackend, LinearBackend, PoolingBackend, NormalizationBackend, DropoutBackend, ActivationBackend, LossBackend,
    OptimizerBackend, AugmentationBackend
{
    var device: Device { get }
    /// A human-readable name, e.g. "host (OpenBLAS, 2 threads)" or the OpenCL device name.
    var name: String { get }
    /// One-time work done so far (programs built, convolution shapes tuned); a step that changes it is not
    /// a steady-state step. Always 0 on the host.
    var warmupWorkDone: Int { get }

    // Memory
    func allocate(count: Int) throws -> TensorStorage
    func write(_ values: UnsafeBufferPointer<Float>, to tensor: Tensor) throws
    func read(_ tensor: Tensor, into values: UnsafeMutableBufferPointer<Float>) throws
    /// Starts reading `tensor` into `values` after the work enqueued before, without waiting for it; `values`
    /// must stay valid until the transfer completes. Backends that cannot do it read at once.
    func startRead(_ tensor: Tensor, into values: UnsafeMutableBufferPointer<Float>) throws -> any PendingTransfer
    func copy(_ source: Tensor, to destination: Tensor) throws
    func synchronize() throws

    // Creation
    func fill(_ tensor: Tensor, value: Float) throws
    /// Fills with the counter-based stream: element i is `Philox.uniform(seed, offset + i)` scaled to [low, high).
    func fillUniform(_ tensor: Tensor, seed: UInt64, offset: UInt64, low: Float, high: Float) throws
    /// Fills with the counter-based stream: element i is `mean + std * Philox.normal(seed, offset + i)`.
    func fillNormal(_ tensor: Tensor, seed: UInt64, offset: UInt64, mean: Float, std: Float) throws

    // Elementwise
    func binary(_ op: BinaryOp, _ a: Tensor, _ b: Tensor, into out: Tensor) throws
    func binary(_ op: BinaryOp, _ a: Tensor, scalar: Float, into out: Tensor) throws
    /// `out = a OP b[c]` where a is `[outer, channels, inner]` and b holds one value per channel.
    func binaryPerChannel(_ op: BinaryOp, _ a: Tensor, _ b: Tensor, channels: Int, inner: Int, into out: Tensor) throws
    /// `y = alpha * x + beta * y`, in place.
    func axpby(alpha: Float, _ x: Tensor, beta: Float, _ y: Tensor) throws
    func unary(_ op: UnaryOp, _ a: Tensor, into out: Tensor) throws

    // Reductions, layout and linear algebra
    func reduce(_ op: ReduceOp, _ a: Tensor, as shape: ReductionShape, into out: Tensor) throws
    /// `c = alpha * op(a) * op(b) + beta * c` with row-major matrices; op(a) is m x k, op(b) is k x n, and
    /// m, n and k are all positive (`matmul` handles the empty cases).
    func gemm(_ a: Tensor, transposed transposeA: Bool, _ b: Tensor, transposed transposeB: Bool,
              m: Int, n: Int, k: Int, alpha: Float, beta: Float, into c: Tensor) throws
    /// `out = a^T` for a `[rows, cols]` matrix.
    func transpose(_ a: Tensor, rows: Int, cols: Int, into out: Tensor) throws
}

extension Backend {
    public var warmupWorkDone: Int { 0 }

    /// `c = alpha * op(a) * op(b) + beta * c` with row-major matrices; op(a) is m x k, op(b) is k x n.
    public func matmul(_ a: Tensor, transposed transposeA: Bool, _ b: Tensor, transposed transposeB: Bool,
                       m: Int, n: Int, k: Int, alpha: Float, beta: Float, into c: Tensor) throws {
        guard m > 0, n > 0 else { return }
        guard k > 0 else {  // an empty sum: C = beta * C
            try axpby(alpha: 0, c, beta: beta, c)
            return
        }
        try gemm(a, transposed: transposeA, b, transposed: transposeB, m: m, n: n, k: k, alpha: alpha, beta: beta, into: c)
    }
}

/// Memory that holds a tensor's elements on one backend. Subclassed by each backend.
open class TensorStorage: @unchecked Sendable {
    /// Number of Float elements.
    public let count: Int
    public let backend: any Backend

    public init(count: Int, backend: any Backend) {
        self.count = count
        self.backend = backend
    }
}
