/// Max or average pooling over NCHW, as PyTorch's MaxPool2d/AvgPool2d (the stride defaults to the window).
public final class Pool2D: Layer {
    public let kind: PoolKind
    public let geometry: Pool2DGeometry
    /// What backward needs: the input's shape, the arg-max of max pooling, and the output of a pass that
    /// applied a ReLU before pooling (`forwardAfterReLU`).
    private var saved: (inputShape: [Int], argmax: Tensor?, reluOutput: Tensor?)?

    public init(_ kind: PoolKind, geometry: Pool2DGeometry) {
        self.kind = kind
        self.geometry = geometry
    }

    public var typeName: String { kind == .max ? "MaxPool2D" : "AvgPool2D" }

    public func outputShape(for inputShape: [Int]) throws -> [Int] {
        try geometry.outputShape(inputShape, operation: "\(typeName)(\(geometry))")
    }

    public func multiplyAccumulates(for inputShape: [Int]) throws -> Int { 0 }

    public func forward(_ x: Tensor, _ context: ForwardContext) throws -> Tensor {
        _ = try outputShape(for: x.shape)
        let result = try pool2d(kind, x, geometry: geometry)
        saved = (x.shape, result.argmax, nil)
        return result.output
    }

    /// Max pooling of ReLU(x) in one pass, for a ReLU layer fused into this one; the next backward then
    /// returns the gradient with respect to the ReLU's input.
    func forwardAfterReLU(_ x: Tensor) throws -> Tensor {
        _ = try outputShape(for: x.shape)
        let result = try pool2d(kind, x, geometry: geometry, relu: true)
        saved = (x.shape, result.argmax, result.output)
        return result.output
    }

    public func backward(_ dy: Tensor) throws -> Tensor {
        guard let saved else { throw KilnError.invalidArgument("\(typeName): backward before forward") }
        return try pool2dBackward(kind, dy: dy, argmax: saved.argmax, inputShape: saved.inputShape, geometry: geometry,
                                  reluOutput: saved.reluOutput)
    }
}

/// `MaxPool2D(window: 2)`: max pooling, stride = window unless given.
public func MaxPool2D(window: Int, stride: Int? = nil, padding: Int = 0) throws -> Pool2D {
    Pool2D(.max, geometry: try Pool2DGeometry(window: window, stride: stride, padding: padding))
}

/// `AvgPool2D(window: 2)`: average pooling, stride = window unless given.
public func AvgPool2D(window: Int, stride: Int? = nil, padding: Int = 0) throws -> Pool2D {
    Pool2D(.average, geometry: try Pool2DGeometry(window: window, stride: stride, padding: padding))
}

/// Global pooling: [N, C, H, W] → [N, C, 1, 1] (follow with `Flatten` for a classifier).
public final class GlobalPool2D: Layer {
    public let kind: PoolKind
    private var inner: Pool2D?

    public init(_ kind: PoolKind) { self.kind = kind }

    public var typeName: String { kind == .max ? "GlobalMaxPool" : "GlobalAvgPool" }

    public func outputShape(for inputShape: [Int]) throws -> [Int] {
        _ = try globalPoolGeometry(for: inputShape)
        return [inputShape[0], inputShape[1], 1, 1]
    }

    public func forward(_ x: Tensor, _ context: ForwardContext) throws -> Tensor {
        let pool = Pool2D(kind, geometry: try globalPoolGeometry(for: x.shape))
        inner = pool
        return try pool.forward(x, context)
    }

    public func backward(_ dy: Tensor) throws -> Tensor {
        guard let inner else { throw KilnError.invalidArgument("\(typeName): backward before forward") }
        return try inner.backward(dy)
    }
}
