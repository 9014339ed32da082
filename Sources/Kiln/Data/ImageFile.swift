import Foundation

/// An 8-bit image read from a PNG or binary PGM file, as [C, H, W] values in [0, 1].
public struct ImageFile {
    public var channels: Int, height: Int, width: Int
    public var pixels: [Float]

    /// Reads a PNG (8-bit grey, grey+alpha, RGB or RGBA, not interlaced) or a binary PGM (P5) file.
    public static func read(_ url: URL) throws -> ImageFile {
        let bytes: [UInt8]
        do { bytes = Array(try Data(contentsOf: url)) } catch {
            throw KilnError.corruptFile(path: url.path, reason: "cannot be read (\(error.localizedDescription))")
        }
        if bytes.starts(with: [0x89, 0x50, 0x4E, 0x47]) { return try png(bytes, path: url.path) }
        if bytes.starts(with: Array("P5".utf8)) { return try pgm(bytes, path: url.path) }
        throw KilnError.corruptFile(path: url.path, reason: "not a PNG or binary PGM (P5) image")
    }

    /// The image as `channels` channels: colour is averaged with the Rec. 601 weights for one channel,
    /// alpha is dropped, grey is repeated for three.
    public func converted(toChannels target: Int) -> ImageFile {
        let plane = height * width
        let colour = channels >= 3 ? 3 : 1
        var result = [Float](repeating: 0, count: target * plane)
        for p in 0..<plane {
            if target == 1 {
                result[p] = colour == 3 ? 0.299 * pixels[p] + 0.587 * pixels[plane + p] + 0.114 * pixels[2 * plane + p] : pixels[p]
            } else {
                for c in 0..<target { result[c * plane + p] = pixels[Swift.min(c, colour - 1) * plane + p] }
            }
        }
        return ImageFile(channels: target, height: height, width: width, pixels: result)
    }

    private static func pgm(_ bytes: [UInt8], path: String) throws -> ImageFile {
        // Header: P5, width, height, maxval, separated by whitespace (comments start with #), then one byte.
        var fields: [Int] = [], index = 2
        while fields.count < 3, index < bytes.count {
            if bytes[index] == UInt8(ascii: "#") {
                while index < bytes.count, bytes[index] != 10 { index += 1 }
            } else if (48...57).contains(bytes[index]) {
                var value = 0
                while index < bytes.count, (48...57).contains(bytes[index]) { value = value * 10 + Int(bytes[index] - 48); index += 1 }
                fields.append(value)
                continue
            }
            index += 1
        }
        guard fields.count == 3, fields[2] > 0, fields[2] < 256 else {
            throw KilnError.corruptFile(path: path, reason: "bad PGM header (need width, height and a maxval below 256)")
        }
        let (width, height, maxValue) = (fields[0], fields[1], Float(fields[2]))
        let start = index + 1
        guard bytes.count >= start + width * height else {
            throw KilnError.corruptFile(path: path, reason: "truncated PGM: \(width)×\(height) needs \(width * height) pixel bytes")
        }
        return ImageFile(channels: 1, height: height, width: width, pixels: bytes[start..<(start + width * height)].map { Float($0) / maxValue })
    }

    private static func png(_ bytes: [UInt8], path: String) throws -> ImageFile {
        func corrupt(_ reason: String) -> KilnError { .corruptFile(path: path, reason: "PNG: \(reason)") }
        func be32(_ at: Int) -> Int { (0..<4).reduce(0) { $0 << 8 | Int(bytes[at + $1]) } }
        var at = 8, width = 0, height = 0, channels = 0, compressed: [UInt8] = []
        while at + 8 <= bytes.count {
            let length = be32(at), type = String(decoding: bytes[(at + 4)..<(at + 8)], as: UTF8.self)
            guard at + 12 + length <= bytes.count else { throw corrupt("truncated \(type) chunk") }
            let data = bytes[(at + 8)..<(at + 8 + length)]
            switch type {
            case "IHDR":
                guard length == 13 else { throw corrupt("bad IHDR") }
                (width, height) = (be32(at + 8), be32(at + 12))
                let (depth, colourType, interlace) = (data[data.startIndex + 8], data[data.startIndex + 9], data[data.startIndex + 12])
                guard depth == 8, interlace == 0, let count = [0: 1, 4: 2, 2: 3, 6: 4][Int(colourType)] else {
                    throw corrupt("only 8-bit, non-interlaced grey, grey+alpha, RGB and RGBA images are read")
                }
                channels = count
            case "IDAT": compressed += data
            default: break
            }
            at += 12 + length
        }
        guard width > 0, height > 0, channels > 0, !compressed.isEmpty else { throw corrupt("missing IHDR or IDAT") }
        let raw = try inflateGzip(compressed, path: path)
        let stride = width * channels
        guard raw.count >= height * (stride + 1) else { throw corrupt("image data is shorter than \(width)×\(height)") }
        // Undo the per-row filters (none, sub, up, average, Paeth).
        var image = [UInt8](repeating: 0, count: height * stride)
        for row in 0..<height {
            let filter = raw[row * (stride + 1)]
            for i in 0..<stride {
                let x = Int(raw[row * (stride + 1) + 1 + i])
                let a = i >= channels ? Int(image[row * stride + i - channels]) : 0
                let b = row > 0 ? Int(image[(row - 1) * stride + i]) : 0
                let c = (i >= channels && row > 0) ? Int(image[(row - 1) * stride + i - channels]) : 0
                let predictor: Int
                switch filter {
                case 0: predictor = 0
                case 1: predictor = a
                case 2: predictor = b
                case 3: predictor = (a + b) / 2
                case 4:
                    let p = a + b - c, pa = abs(p - a), pb = abs(p - b), pc = abs(p - c)
                    predictor = pa <= pb && pa <= pc ? a : (pb <= pc ? b : c)
                default: throw corrupt("unknown row filter \(filter)")
                }
                image[row * stride + i] = UInt8((x + predictor) & 0xFF)
            }
        }
        // Interleaved HWC → planar CHW.
        var pixels = [Float](repeating: 0, count: channels * width * height)
        for p in 0..<(width * height) {
            for c in 0..<channels { pixels[c * width * height + p] = Float(image[p * channels + c]) / 255 }
        }
        return ImageFile(channels: channels, height: height, width: width, pixels: pixels)
    }
}
