extension ImageFile {
    /// The image resized to `width` × `height` by bilinear interpolation, as torchvision's `Resize` with
    /// `antialias=False` (PyTorch's `F.interpolate(mode="bilinear", align_corners=False)`): pixel centres
    /// map onto each other, output x samples the input at (x + 0.5) · inWidth / width − 0.5, clamped below
    /// at 0, and the last row and column repeat at the edge. Shrinking does not average: each output pixel
    /// reads four input pixels at most. This plain loop is the host reference.
    public func resized(width newWidth: Int, height newHeight: Int) -> ImageFile {
        precondition(newWidth >= 1 && newHeight >= 1, "an image is resized to at least 1×1, not \(newWidth)×\(newHeight)")
        if newWidth == width, newHeight == height { return self }
        // For each output column (row): the two input columns (rows) it reads and the weight of the second.
        func taps(_ outSize: Int, _ inSize: Int) -> [(Int, Int, Float)] {
            let scale = Float(inSize) / Float(outSize)
            return (0..<outSize).map { index in
                let source = Swift.max((Float(index) + 0.5) * scale - 0.5, 0)
                let first = Swift.min(Int(source), inSize - 1)
                return (first, Swift.min(first + 1, inSize - 1), source - Float(first))
            }
        }
        let columns = taps(newWidth, width), rows = taps(newHeight, height)
        // pixels: [C, H, W] → result: [C, newHeight, newWidth]
        var result = [Float](repeating: 0, count: channels * newHeight * newWidth)
        for c in 0..<channels {
            let input = c * height * width, output = c * newHeight * newWidth
            for (y, (top, bottom, dy)) in rows.enumerated() {
                for (x, (left, right, dx)) in columns.enumerated() {
                    let upper = (1 - dx) * pixels[input + top * width + left] + dx * pixels[input + top * width + right]
                    let lower = (1 - dx) * pixels[input + bottom * width + left] + dx * pixels[input + bottom * width + right]
                    result[output + y * newWidth + x] = (1 - dy) * upper + dy * lower
                }
            }
        }
        return ImageFile(channels: channels, height: newHeight, width: newWidth, pixels: result)
    }
}
