import KilnCL

/// Augmentation with Kernels/augment.cl: one work-item per output element, one work-group per image for the
/// ops that need an image's statistics.
extension OpenCLBackend: AugmentationBackend {
    public func shiftFlip(_ x: Tensor, params: Tensor, border: AugmentBorder, into y: Tensor) throws {
        let (kind, fill): (AugmentBorderKind, Float) = switch border {
        case let .constant(value): (.constant, value)
        case .reflect: (.reflect, 0)
        }
        try augmentKernels.shiftFlip(items: x.count, x: x, y: y, params: params, n: x.count, channels: x.shape[1],
                                     height: x.shape[2], width: x.shape[3], border: kind, fill: fill)
    }

    public func warpAffine(_ x: Tensor, matrices: Tensor, interpolation: Interpolation, fill: Float, into y: Tensor) throws {
        try augmentKernels.warpAffine(items: y.count, x: x, y: y, matrices: matrices, n: y.count, channels: x.shape[1],
                                      height: x.shape[2], width: x.shape[3], outHeight: y.shape[2], outWidth: y.shape[3],
                                      interpolation: interpolation == .nearest ? .nearest : .bilinear, fill: fill)
    }

    public func colorJitter(_ x: Tensor, factors: Tensor, into y: Tensor) throws {
        try augmentKernels.colorJitter(groups: x.shape[0], x: x, y: y, factors: factors, channels: x.shape[1],
                                       plane: x.shape[2] * x.shape[3])
    }

    public func eraseBoxes(_ x: Tensor, boxes: Tensor, value: Float, into y: Tensor) throws {
        try augmentKernels.eraseBoxes(items: x.count, x: x, y: y, boxes: boxes, n: x.count, channels: x.shape[1],
                                      height: x.shape[2], width: x.shape[3], value: value)
    }

    public func mixPairs(_ a: Tensor, _ b: Tensor, params: Tensor, into y: Tensor) throws {
        try augmentKernels.mixPairs(items: a.count, a: a, b: b, y: y, params: params, n: a.count, channels: a.shape[1],
                                    height: a.shape[2], width: a.shape[3])
    }

    public func scaleShiftChannels(_ x: Tensor, scale: Tensor, shift: Tensor, into y: Tensor) throws {
        try augmentKernels.scaleShiftChannels(items: x.count, x: x, y: y, scale: scale, shift: shift, n: x.count,
                                              channels: x.shape[1], inner: x.count / Swift.max(x.shape[0] * x.shape[1], 1))
    }

    public func standardizeImages(_ x: Tensor, into y: Tensor) throws {
        try augmentKernels.standardizeImages(groups: x.shape[0], x: x, y: y, size: x.count / Swift.max(x.shape[0], 1))
    }
}
