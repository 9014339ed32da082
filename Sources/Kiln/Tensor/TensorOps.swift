// The tensor-level op API: checks operands, allocates results, and hands the work to the backend.

extension Tensor {
    // MARK: Elementwise

    /// `self OP other`. `other` has the same shape, or is a per-channel vector of `shape[1]` values that is
    /// broadcast over every other axis (a `[C]` bias over `[N, C, H, W]` or `[N, C]`).
    public func binary(_ op: BinaryOp, _ other: Tensor) throws -> Tensor {
        try sameDevice(other, op.rawValue)
        let result = try Tensor.empty(shape, on: device)
        if other.shape == shape {
            try backend.binary(op, self, other, into: result)
        } else if rank >= 2, other.rank == 1, other.shape[0] == shape[1] {
            try backend.binaryPerChannel(op, self, other, channels: shape[1], inner: shape.dropFirst(2).reduce(1, *), into: result)
        } else {
            throw KilnError.shapeMismatch(operation: op.rawValue, expected: describe(shape), got: describe(other.shape))
        }
        return result
    }

    /// `self OP scalar` for every element.
    public func binary(_ op: BinaryOp, _ scalar: Float) throws -> Tensor {
        let result = try Tensor.empty(shape, on: device)
        try backend.binary(op, self, scalar: scalar, into: result)
        return result
    }

    /// `f(self)` for every element.
    public func map(_ op: UnaryOp) throws -> Tensor {
        let result = try Tensor.empty(shape, on: device)
        try backend.unary(op, self, into: result)
        return result
    }

    /// `self = alpha * x + beta * self`, in place.
    public func axpby(alpha: Float, _ x: Tensor, beta: Float) throws {
        try sameDevice(x, "axpby")
        guard x.shape == shape else {
            throw KilnError.shapeMismatch(operation: "axpby", expected: describe(shape), got: describe(x.shape))
        }
        try backend.axpby(alpha: alpha, x, beta: beta, self)
    }

    /// Sets every element to `value`, in place.
    public func fill(_ value: Float) throws { try backend.fill(self, value: value) }

    /// Adds `values[c]` to every element of channel c, in place: self is [N, C, ...] and `values` is [C]
    /// (a bias).
    public func addPerChannel(_ values: Tensor) throws {
        try sameDevice(values, "per-channel add")
        guard rank >= 2, values.shape == [shape[1]] else {
            throw KilnError.shapeMismatch(operation: "per-channel add", expected: "[N, C, ...] and [C]",
                                          got: "\(describe(shape)) and \(describe(values.shape))")
        }
        try backend.binaryPerChannel(.add, self, values, channels: shape[1], inner: shape.dropFirst(2).reduce(1, *), into: self)
    }

    /// Fills the tensor in place with uniform values in [low, high) from the counter-based stream (seed,
    /// offset): the same on every device.
    public func fillUniform(low: Float = 0, high: Float = 1, seed: UInt64, offset: UInt64 = 0) throws {
        try backend.fillUniform(self, seed: seed, offset: offset, low: low, high: high)
    }

    /// Fills the tensor in place with normal values from the counter-based stream (seed, offset).
    public func fillNormal(mean: Float = 0, std: Float = 1, seed: UInt64, offset: UInt64 = 0) throws {
        try backend.fillNormal(self, seed: seed, offset: offset, mean: mean, std: std)
    }

    public static func + (a: Tensor, b: Tensor) throws -> Tensor { try a.binary(.add, b) }
    public static func - (a: Tensor, b: Tensor) throws -> Tensor { try a.binary(.sub, b) }
    public static func * (a: Tensor, b: Tensor) throws -> Tensor { try a.binary(.mul, b) }
    public static func / (a: Tensor, b: Tensor) throws -> Tensor { try a.binary(.div, b) }
    public static func + (a: Tensor, b: Float) throws -> Tensor { try a.binary(.add, b) }
    public static func - (a: Tensor, b: Float) throws -> Tensor { try a.binary(.sub, b) }
    public static func * (a: Tensor, b: Float) throws -> Tensor { try a.binary(.mul, b) }
    public static func / (a: Tensor, b: Float) throws -> Tensor { try a.binary(.div, b) }
    public static prefix func - (a: Tensor) throws -> Tensor { try a.map(.neg) }

    // MARK: Reductions

    /// Reduces over `axis` (negative counts from the end), removing it from the shape (or keeping it as 1).
    public func reduce(_ op: ReduceOp, axis: Int, keepingDimension: Bool = false) throws -> Tensor {
        let axis = axis < 0 ? axis + rank : axis
        guard (0..<rank).contains(axis) else {
            throw KilnError.invalidArgument("\(op.rawValue): axis \(axis) out of range for shape \(describe(shape))")
        }
        guard shape[axis] > 0 || op == .sum else {
            throw KilnError.invalidArgument("\(op.rawValue): empty axis \(axis) in shape \(describe(shape))")
        }
        var outShape = shape
        if keepingDimension { outShape[axis] = 1 } else { outShape.remove(at: axis) }
        let result = try Tensor.empty(outShape, on: device)
        let reduction = ReductionShape(outer: shape[..<axis].reduce(1, *), axis: shape[axis],
                                       inner: shape[(axis + 1)...].reduce(1, *))
        try backend.reduce(op, self, as: reduction, into: result)
        return result
    }

    /// Reduces over every element to a one-element tensor of shape `[]`.
    public func reduce(_ op: ReduceOp) throws -> Tensor {
        try reshaped([count]).reduce(op, axis: 0)
    }

    public func sum(axis: Int) throws -> Tensor { try reduce(.sum, axis: axis) }
    public func mean(axis: Int) throws -> Tensor { try reduce(.mean, axis: axis) }
    public func max(axis: Int) throws -> Tensor { try reduce(.max, axis: axis) }
    public func min(axis: Int) throws -> Tensor { try reduce(.min, axis: axis) }
    /// Indices (as Float values) of the largest element along `axis`; the first one on ties.
    public func argmax(axis: Int) throws -> Tensor { try reduce(.argmax, axis: axis) }
    public func sum() throws -> Float { try reduce(.sum).item() }
    public func mean() throws -> Float { try reduce(.mean).item() }
    public func max() throws -> Float { try reduce(.max).item() }
    public func min() throws -> Float { try reduce(.min).item() }
    /// Flat index of the largest element; the first one on ties.
    public func argmax() throws -> Int { Int(try reduce(.argmax).item()) }

    // MARK: Linear algebra and layout

    /// The matrix product `op(self) x op(other)` of two 2-D tensors, where op transposes when asked.
    public func matmul(_ other: Tensor, transposeSelf: Bool = false, transposeOther: Bool = false) throws -> Tensor {
        let (m, n, k) = try productShape(other, transposeSelf, transposeOther)
        let result = try Tensor.empty([m, n], on: device)
        try backend.matmul(self, transposed: transposeSelf, other, transposed: transposeOther,
                           m: m, n: n, k: k, alpha: 1, beta: 0, into: result)
        return result
    }

    /// Adds `op(self) x op(other)` to `result` ([m, n]; a parameter's gradient).
    public func matmul(_ other: Tensor, transposeSelf: Bool = false, transposeOther: Bool = false,
                       accumulatingInto result: Tensor) throws {
        let (m, n, k) = try productShape(other, transposeSelf, transposeOther)
        try sameDevice(result, "matmul")
        guard result.shape == [m, n] else {
            throw KilnError.shapeMismatch(operation: "matmul (accumulating)", expected: describe([m, n]), got: describe(result.shape))
        }
        try backend.matmul(self, transposed: transposeSelf, other, transposed: transposeOther,
                           m: m, n: n, k: k, alpha: 1, beta: 1, into: result)
    }

    /// (m, n, k) of `op(self) x op(other)`, or an error naming both shapes.
    private func productShape(_ other: Tensor, _ transposeSelf: Bool, _ transposeOther: Bool) throws -> (Int, Int, Int) {
        try sameDevice(other, "matmul")
        guard rank == 2, other.rank == 2 else {
            throw KilnError.shapeMismatch(operation: "matmul (2-D operands)", expected: describe(shape), got: describe(other.shape))
        }
        let (m, k) = transposeSelf ? (shape[1], shape[0]) : (shape[0], shape[1])
        let (otherK, n) = transposeOther ? (other.shape[1], other.shape[0]) : (other.shape[0], other.shape[1])
        guard k == otherK else {
            let left = describe(shape) + (transposeSelf ? "ᵀ" : "")
            let right = describe(other.shape) + (transposeOther ? "ᵀ" : "")
            throw KilnError.shapeMismatch(operation: "matmul", expected: left, got: right)
        }
        return (m, n, k)
    }

    /// The transpose of a 2-D tensor, as a new contiguous tensor.
    public func transposed() throws -> Tensor {
        guard rank == 2 else {
            throw KilnError.shapeMismatch(operation: "transpose (2-D)", expected: "[rows, cols]", got: describe(shape))
        }
        let result = try Tensor.empty([shape[1], shape[0]], on: device)
        try backend.transpose(self, rows: shape[0], cols: shape[1], into: result)
        return result
    }

    func sameDevice(_ other: Tensor, _ operation: String) throws {
        if other.device != device { throw KilnError.deviceMismatch(operation: operation, device, other.device) }
    }
}

/// The matrix product `op(a) x op(b)`.
public func matmul(_ a: Tensor, _ b: Tensor, transposeA: Bool = false, transposeB: Bool = false) throws -> Tensor {
    try a.matmul(b, transposeSelf: transposeA, transposeOther: transposeB)
}
