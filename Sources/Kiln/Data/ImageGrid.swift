/// Tiles a batch of images into one picture (augmentation previews, explanation images), to be written with
/// `ImageFile.write(png:)`.
public enum ImageGrid {
    /// `images` of `shape` [N, C, H, W] (C of 1 to 4, values clamped to [0, 1], NaN as 0) laid out row by row,
    /// `columns` to a row (fewer when N is smaller), with `border` pixels of `borderValue` around and between
    /// them. Cells past the last image are left at `borderValue`.
    public static func tile(_ images: [Float], shape: [Int], columns: Int, border: Int = 1, borderValue: Float = 1) throws -> ImageFile {
        guard shape.count == 4, shape.allSatisfy({ $0 >= 1 }) else {
            throw KilnError.invalidArgument("ImageGrid: images of shape \(describe(shape)); it tiles [N, C, H, W], each at least 1")
        }
        let (count, channels, height, width) = (shape[0], shape[1], shape[2], shape[3])
        guard (1...4).contains(channels) else { throw KilnError.invalidArgument("ImageGrid: \(channels) channels; it tiles 1 to 4") }
        guard images.count == count * channels * height * width else {
            throw KilnError.shapeMismatch(operation: "ImageGrid", expected: "\(count * channels * height * width) values for \(describe(shape))",
                                          got: "\(images.count)")
        }
        guard columns >= 1 else { throw KilnError.invalidArgument("ImageGrid: columns must be at least 1, not \(columns)") }
        guard border >= 0 else { throw KilnError.invalidArgument("ImageGrid: border must be at least 0, not \(border)") }
        let across = Swift.min(columns, count), down = (count + across - 1) / across
        let gridWidth = across * (width + border) + border, gridHeight = down * (height + border) + border
        let gridPlane = gridWidth * gridHeight, imagePlane = height * width
        var pixels = [Float](repeating: unitClamped(borderValue), count: channels * gridPlane)
        for n in 0..<count {
            // The top-left corner of image n's cell.
            let left = border + (n % across) * (width + border), top = border + (n / across) * (height + border)
            for c in 0..<channels {
                let source = (n * channels + c) * imagePlane
                for y in 0..<height {
                    for x in 0..<width {
                        pixels[c * gridPlane + (top + y) * gridWidth + left + x] = unitClamped(images[source + y * width + x])
                    }
                }
            }
        }
        return ImageFile(channels: channels, height: gridHeight, width: gridWidth, pixels: pixels)
    }
}
