import Foundation

extension AttributionMap {
    /// The map as a NumPy .npy file (format 1.0): little-endian float32, shape (H, W), C order, so that
    /// `numpy.load` reads it as is.
    public func npyData() -> [UInt8] { numpyFile(values, shape: [height, width]) }

    /// The map in the viridis colour map over the image, as an RGB image `scale` times the map's size
    /// (nearest neighbour): half the image in grey, half the colour of the map's value, which is scaled so
    /// that the largest magnitude is 1 (signed maps are shown by magnitude).
    public func overlay(on image: ImageFile, scale: Int = 1) throws -> ImageFile {
        guard image.height == height, image.width == width else {
            throw KilnError.shapeMismatch(operation: "attribution overlay", expected: "an image of \(height)×\(width)",
                                          got: "\(image.height)×\(image.width)")
        }
        let grey = image.converted(toChannels: 1).pixels
        let largest = values.map(Swift.abs).max() ?? 0
        let (outHeight, outWidth) = (height * scale, width * scale)
        var pixels = [Float](repeating: 0, count: 3 * outHeight * outWidth)
        for y in 0..<outHeight {
            for x in 0..<outWidth {
                let source = (y / scale) * width + x / scale
                let colour = viridis(largest > 0 ? Swift.abs(values[source]) / largest : 0)
                for channel in 0..<3 {
                    pixels[(channel * outHeight + y) * outWidth + x] = 0.5 * unitClamped(grey[source]) + 0.5 * colour[channel]
                }
            }
        }
        return ImageFile(channels: 3, height: outHeight, width: outWidth, pixels: pixels)
    }
}

/// `values` of `shape` as a NumPy .npy file, format 1.0: little-endian float32 in C order.
func numpyFile(_ values: [Float], shape: [Int]) -> [UInt8] {
    let dimensions = shape.count == 1 ? "\(shape[0])," : shape.map(String.init).joined(separator: ", ")
    var header = "{'descr': '<f4', 'fortran_order': False, 'shape': (\(dimensions)), }"
    // Magic (6) + version (2) + header length (2) + header, padded with spaces to a multiple of 64, ending in \n.
    while (10 + header.utf8.count + 1) % 64 != 0 { header += " " }
    header += "\n"
    let length = UInt16(header.utf8.count)
    var bytes: [UInt8] = [0x93] + Array("NUMPY".utf8) + [1, 0, UInt8(length & 0xFF), UInt8(length >> 8)] + Array(header.utf8)
    bytes.reserveCapacity(bytes.count + 4 * values.count)
    for value in values { bytes += withUnsafeBytes(of: value.bitPattern.littleEndian, Array.init) }
    return bytes
}

/// The viridis colour map (perceptually uniform, readable in grey and by colour-blind readers) at t in [0, 1],
/// interpolated linearly between nine of its colours.
func viridis(_ t: Float) -> [Float] {
    let stops: [[Float]] = [[0.267, 0.005, 0.329], [0.283, 0.141, 0.458], [0.254, 0.265, 0.530], [0.207, 0.372, 0.553],
                            [0.164, 0.471, 0.558], [0.128, 0.567, 0.551], [0.135, 0.659, 0.518], [0.580, 0.840, 0.270],
                            [0.993, 0.906, 0.144]]
    let position = unitClamped(t) * Float(stops.count - 1)
    let low = Swift.min(Int(position), stops.count - 2), fraction = position - Float(low)
    return (0..<3).map { stops[low][$0] + fraction * (stops[low + 1][$0] - stops[low][$0]) }
}
