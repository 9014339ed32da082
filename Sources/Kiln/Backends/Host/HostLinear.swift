extension HostBackend: LinearBackend {
    /// The product by BLAS, then the bias and the ReLU in one pass over y.
    public func linearForward(_ x: Tensor, weight: Tensor, bias: Tensor?, relu: Bool, into y: Tensor) throws {
        let (n, inputs, outputs) = (x.shape[0], x.shape[1], weight.shape[0])
        try matmul(x, transposed: false, weight, transposed: true, m: n, n: outputs, k: inputs, alpha: 1, beta: 0, into: y)
        guard bias != nil || relu else { return }
        let out = y.hostBuffer, b = bias?.hostBuffer
        for row in 0..<n {
            let start = row * outputs
            for o in 0..<outputs {
                let value = out[start + o] + (b?[o] ?? 0)
                out[start + o] = relu ? Swift.max(value, 0) : value
            }
        }
    }
}
