import CZlib
import Foundation

extension ImageFile {
    /// The image as a PNG file's bytes: 8-bit grey (1 channel), grey+alpha (2), RGB (3) or RGBA (4), not
    /// interlaced, each value clamped to [0, 1] (NaN as 0) and rounded to the nearest of 256 levels (so an image read
    /// from an 8-bit file writes back the same bytes). Rows are unfiltered: the writer is for previews and
    /// test fixtures, where size matters less than a format every reader takes.
    public func pngData() throws -> [UInt8] {
        guard (1...4).contains(channels) else {
            throw KilnError.invalidArgument("a PNG holds 1 to 4 channels (grey, grey+alpha, RGB, RGBA), not \(channels)")
        }
        guard width >= 1, height >= 1, width <= 0x7FFF_FFFF, height <= 0x7FFF_FFFF else {
            throw KilnError.invalidArgument("a PNG is 1 to 2^31 − 1 pixels wide and high, not \(width)×\(height)")
        }
        // Planar CHW → interleaved HWC rows, each led by filter type 0 (none).
        let plane = width * height, rowBytes = width * channels
        var raw = [UInt8](repeating: 0, count: height * (rowBytes + 1))
        for y in 0..<height {
            for x in 0..<width {
                for c in 0..<channels {
                    let value = pixels[c * plane + y * width + x]
                    raw[y * (rowBytes + 1) + 1 + x * channels + c] = UInt8((unitClamped(value) * 255).rounded())
                }
            }
        }
        var compressed = [UInt8](repeating: 0, count: Int(compressBound(uLong(raw.count))))
        var compressedSize = uLongf(compressed.count)
        let status = compressed.withUnsafeMutableBufferPointer { target in
            raw.withUnsafeBufferPointer { source in
                compress2(target.baseAddress, &compressedSize, source.baseAddress, uLong(source.count), Z_DEFAULT_COMPRESSION)
            }
        }
        guard status == Z_OK else { throw KilnError.invalidArgument("zlib could not compress a \(width)×\(height) image (status \(status))") }
        compressed.removeSubrange(Int(compressedSize)...)

        func bigEndian(_ value: UInt32) -> [UInt8] { [24, 16, 8, 0].map { UInt8(truncatingIfNeeded: value >> $0) } }
        var file: [UInt8] = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]
        func chunk(_ type: String, _ data: [UInt8]) {
            let body = Array(type.utf8) + data
            let crc = body.withUnsafeBufferPointer { UInt32(truncatingIfNeeded: crc32(0, $0.baseAddress, uInt($0.count))) }
            file += bigEndian(UInt32(data.count)) + body + bigEndian(crc)
        }
        let colourType: UInt8 = [1: 0, 2: 4, 3: 2, 4: 6][channels] ?? 0
        chunk("IHDR", bigEndian(UInt32(width)) + bigEndian(UInt32(height)) + [8, colourType, 0, 0, 0])
        // One IDAT chunk holds at most 2^31 − 1 bytes.
        let limit = 0x7FFF_FFFF
        for start in stride(from: 0, to: Swift.max(compressed.count, 1), by: limit) {
            chunk("IDAT", Array(compressed[start..<Swift.min(start + limit, compressed.count)]))
        }
        chunk("IEND", [])
        return file
    }

    /// Writes the image as a PNG file (`pngData`), atomically.
    public func write(png url: URL) throws {
        try writeAtomically(try pngData(), to: url)
    }
}

/// `value` clamped to [0, 1], NaN as 0 (which min and max would pass through, and UInt8 would trap on).
func unitClamped(_ value: Float) -> Float {
    value.isNaN ? 0 : Swift.min(Swift.max(value, 0), 1)
}
