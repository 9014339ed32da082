// A fully connected layer's forward: the op surface each backend implements, and the checked tensor-level API.

/// Linear-layer ops of a `Backend`.
public protocol LinearBackend {
    /// y [N, out] = x [N, in] · Wᵀ (W is [out, in]) (+ b [out] on every row), with `relu` passed through
    /// max(·, 0), in one pass where the backend can.
    func linearForward(_ x: Tensor, weight: Tensor, bias: Tensor?, relu: Bool, into y: Tensor) throws
}

extension LinearBackend where Self: Backend {
    /// linearForward as separate ops: the product, the bias and the ReLU (the OpenCL backend's way for a
    /// layer too large for its one-launch kernel).
    func linearForwardUnfused(_ x: Tensor, weight: Tensor, bias: Tensor?, relu: Bool, into y: Tensor) throws {
        let (n, inputs, outputs) = (x.shape[0], x.shape[1], weight.shape[0])
        try matmul(x, transposed: false, weight, transposed: true, m: n, n: outputs, k: inputs, alpha: 1, beta: 0, into: y)
        if let bias { try binaryPerChannel(.add, y, bias, channels: outputs, inner: 1, into: y) }
        if relu { try activationForward(.relu, y, into: y) }
    }
}

/// y = x · Wᵀ + b for x [N, in], `weight` [out, in] and an optional `bias` [out]; with `relu`, followed by
/// max(·, 0) in the same pass.
public func linear(_ x: Tensor, weight: Tensor, bias: Tensor? = nil, relu: Bool = false) throws -> Tensor {
    guard x.rank == 2, weight.rank == 2, x.shape[1] == weight.shape[1] else {
        throw KilnError.shapeMismatch(operation: "linear", expected: "x [N, in] and weight [out, in]",
                                      got: "\(describe(x.shape)) and \(describe(weight.shape))")
    }
    try x.sameDevice(weight, "linear")
    if let bias {
        try x.sameDevice(bias, "linear")
        guard bias.shape == [weight.shape[0]] else {
            throw KilnError.shapeMismatch(operation: "linear bias", expected: "[\(weight.shape[0])]", got: describe(bias.shape))
        }
    }
    let y = try Tensor.empty([x.shape[0], weight.shape[0]], on: x.device)
    try x.backend.linearForward(x, weight: weight, bias: bias, relu: relu, into: y)
    return y
}
