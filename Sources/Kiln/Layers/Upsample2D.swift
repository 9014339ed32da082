/// Nearest-neighbour upsampling by an integer factor, as PyTorch's `nn.Upsample(scale_factor: s, mode:
/// "nearest")`: [N, C, H, W] → [N, C, s·H, s·W], each pixel repeated over an s×s block. No parameters.
///
/// It is a depthwise transposed convolution with an s×s kernel of ones and stride s, so it runs on the
/// convolution ops of both backends: forward is that convolution's backward-data pass, and the gradient
/// (the sum of each s×s block of the output gradient) is its forward pass.
public final class Upsample2D: Layer {
    public let scale: Int
    private var ones: Tensor?
    private var shape: Conv2DShape?

    public init(scale: Int) throws {
        guard scale > 0 else { throw KilnError.invalidArgument("Upsample2D: the scale factor must be positive, got \(scale)") }
        self.scale = scale
    }

    public var typeName: String { "Upsample2D(×\(scale))" }

    /// The block-summing convolution from the upsampled [N, C, s·H, s·W] back to [N, C, H, W].
    private func convolutionShape(_ inputShape: [Int]) throws -> Conv2DShape {
        guard inputShape.count == 4, inputShape.allSatisfy({ $0 > 0 }) else {
            throw layerShapeError(typeName, expected: "[N, C, H, W]", got: inputShape)
        }
        let (n, c, h, w) = (inputShape[0], inputShape[1], inputShape[2], inputShape[3])
        return try Conv2DShape(input: [n, c, scale * h, scale * w], weight: [c, 1, scale, scale],
                               geometry: Conv2DGeometry(kernelSize: scale, stride: scale, groups: c), operation: typeName)
    }

    public func outputShape(for inputShape: [Int]) throws -> [Int] { try convolutionShape(inputShape).inputShape }

    public func forward(_ x: Tensor, _ context: ForwardContext) throws -> Tensor {
        let s = try convolutionShape(x.shape)
        let kernel = try onesKernel(channels: s.inputChannels, on: x.device)
        shape = s
        return try conv2dBackwardData(x, weight: kernel, inputShape: s.inputShape, geometry: s.geometry)
    }

    public func backward(_ dy: Tensor) throws -> Tensor {
        guard let s = shape, let kernel = ones else { throw KilnError.invalidArgument("\(typeName): backward before forward") }
        guard dy.shape == s.inputShape else {
            throw layerShapeError(typeName, expected: "output gradient \(describe(s.inputShape))", got: dy.shape)
        }
        return try conv2d(dy, weight: kernel, geometry: s.geometry)
    }

    /// The [C, 1, s, s] kernel of ones, kept on the device of the last input (it is no parameter, so moving
    /// the model does not move it).
    private func onesKernel(channels: Int, on device: Device) throws -> Tensor {
        if let ones, ones.device == device, ones.shape[0] == channels { return ones }
        // Written from the host rather than filled by a kernel: a warm-up's plan skips kernels, not writes.
        let kernel = try Tensor([Float](repeating: 1, count: channels * scale * scale), shape: [channels, 1, scale, scale], on: device)
        ones = kernel
        return kernel
    }
}
