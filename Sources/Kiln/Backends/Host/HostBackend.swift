import CBLAS
import Foundation

/// Host memory for a tensor.
final class HostStorage: TensorStorage, @unchecked Sendable {
    let pointer: UnsafeMutablePointer<Float>

    init(count: Int, backend: HostBackend) {
        pointer = .allocate(capacity: Swift.max(count, 1))
        super.init(count: count, backend: backend)
    }

    deinit { pointer.deallocate() }
}

extension Tensor {
    /// The tensor's elements in host memory (host backend only).
    var hostBuffer: UnsafeMutableBufferPointer<Float> {
        guard let host = storage as? HostStorage else { preconditionFailure("\(self) is not on the host") }
        return UnsafeMutableBufferPointer(start: host.pointer + offset, count: count)
    }
}

/// The reference backend: plain Swift loops with shape comments, OpenBLAS for GEMM. Every OpenCL kernel is
/// tested against it, and it is the fallback when no OpenCL device exists.
public final class HostBackend: Backend {
    public static let shared = HostBackend()

    public let device = Device.host
    public var name: String { "host (Swift + OpenBLAS, \(openblas_get_num_threads()) threads)" }

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

    public func fillUniform(_ tensor: Tensor, seed: UInt64, offset: UInt64, low: Float, high: Float) throws {
        Philox.fillUniform(tensor.hostBuffer, seed: seed, offset: offset, low: low, high: high)
    }

    public func fillNormal(_ tensor: Tensor, seed: UInt64, offset: UInt64, mean: Float, std: Float) throws {
        Philox.fillNormal(tensor.hostBuffer, seed: seed, offset: offset, mean: mean, std: std)
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
        let (a, b, out) = (a.hostBuffer, b.hostBuffer, out.hostBuffer)
        for i in out.indices { out[i] = Self.apply(op, a[i], b[i]) }
    }

    public func binary(_ op: BinaryOp, _ a: Tensor, scalar: Float, into out: Tensor) throws {
        let (a, out) = (a.hostBuffer, out.hostBuffer)
        for i in out.indices { out[i] = Self.apply(op, a[i], scalar) }
    }

    public func binaryPerChannel(_ op: BinaryOp, _ a: Tensor, _ b: Tensor, channels: Int, inner: Int, into out: Tensor) throws {
        // a, out: [outer, channels, inner]; b: [channels]
        let (a, b, out) = (a.hostBuffer, b.hostBuffer, out.hostBuffer)
        for i in out.indices { out[i] = Self.apply(op, a[i], b[(i / inner) % channels]) }
    }

    public func axpby(alpha: Float, _ x: Tensor, beta: Float, _ y: Tensor) throws {
        let (x, y) = (x.hostBuffer, y.hostBuffer)
        for i in y.indices { y[i] = alpha * x[i] + beta * y[i] }
    }

    public func unary(_ op: UnaryOp, _ a: Tensor, into out: Tensor) throws {
        let (a, out) = (a.hostBuffer, out.hostBuffer)
        for i in out.indices { out[i] = Self.apply(op, a[i]) }
    }

    // MARK: Reductions, layout, GEMM

    public func reduce(_ op: ReduceOp, _ a: Tensor, as shape: ReductionShape, into out: Tensor) throws {
        // a: [outer, axis, inner] -> out: [outer, inner]
        let (a, out) = (a.hostBuffer, out.hostBuffer)
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

    public func matmul(_ a: Tensor, transposed transposeA: Bool, _ b: Tensor, transposed transposeB: Bool,
                       m: Int, n: Int, k: Int, alpha: Float, beta: Float, into c: Tensor) throws {
        guard m > 0, n > 0 else { return }
        guard k > 0 else {  // an empty sum: C = beta * C
            try axpby(alpha: 0, c, beta: beta, c)
            return
        }
        cblas_sgemm(CblasRowMajor, transposeA ? CblasTrans : CblasNoTrans, transposeB ? CblasTrans : CblasNoTrans,
                    Int32(m), Int32(n), Int32(k), alpha,
                    a.hostBuffer.baseAddress, Int32(transposeA ? m : k),
                    b.hostBuffer.baseAddress, Int32(transposeB ? k : n),
                    beta, c.hostBuffer.baseAddress, Int32(n))
    }

    public func transpose(_ a: Tensor, rows: Int, cols: Int, into out: Tensor) throws {
        // a: [rows, cols] -> out: [cols, rows]
        let (a, out) = (a.hostBuffer, out.hostBuffer)
        for r in 0..<rows {
            for c in 0..<cols { out[c * rows + r] = a[r * cols + c] }
        }
    }
}
