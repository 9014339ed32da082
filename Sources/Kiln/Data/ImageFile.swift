import CZlib
import Foundation

/// An 8-bit image read from a PNG, binary PGM or JPEG file, as [C, H, W] values in [0, 1].
public struct ImageFile: Sendable, Equatable {
    public var channels: Int, height: Int, width: Int
    public var pixels: [Float]

    /// An image of `pixels` in CHW order, which must hold channels × height × width values.
    public init(channels: Int, height: Int, width: Int, pixels: [Float]) {
        precondition(pixels.count == channels * height * width, "an image of \(channels)×\(height)×\(width) holds \(channels * height * width) values, not \(pixels.count)")
        (self.channels, self.height, self.width, self.pixels) = (channels, height, width, pixels)
    }

    /// Reads a PNG (8-bit grey, grey+alpha, RGB or RGBA, not interlaced), a binary PGM (P5) or a JPEG (grey or
    /// colour, baseline or progressive) file.
    public static func read(_ url: URL) throws -> ImageFile {
        let bytes: [UInt8]
        do { bytes = Array(try Data(contentsOf: url)) } catch {
            throw KilnError.corruptFile(path: url.path, reason: "cannot be read (\(error.localizedDescription))")
        }
        return try parse(bytes: bytes, path: url.path)
    }

    /// Decodes a PNG or PGM file's bytes (`path` names it in errors), telling them apart by their magic.
    static func parse(bytes: [UInt8], path: String) throws -> ImageFile {
        if bytes.starts(with: [0x89, 0x50, 0x4E, 0x47]) { return try png(bytes, path: path) }
        if bytes.starts(with: Array("P5".utf8)) { return try pgm(bytes, path: path) }
        if bytes.starts(with: [0xFF, 0xD8, 0xFF]) { return try jpeg(bytes, path: path) }
        throw KilnError.corruptFile(path: path, reason: "not a PNG, binary PGM (P5) or JPEG image")
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

    /// A binary PGM: `P5`, width, height and maxval as decimal numbers separated by whitespace and
    /// `#` comments, one whitespace byte, then width × height samples of one byte (maxval below 256) or two
    /// big-endian bytes, each at most maxval. Bytes after the image (the format allows further images) are
    /// not read.
    static func pgm(_ bytes: [UInt8], path: String) throws -> ImageFile {
        func corrupt(_ reason: String) -> KilnError { .corruptFile(path: path, reason: "PGM: \(reason)") }
        func isWhitespace(_ byte: UInt8) -> Bool { [0x20, 0x09, 0x0A, 0x0B, 0x0C, 0x0D].contains(byte) }
        func describeByte(_ byte: UInt8) -> String {
            (0x21...0x7E).contains(byte) ? "'\(Character(Unicode.Scalar(byte)))'" : String(format: "byte 0x%02x", byte)
        }
        guard bytes.count > 2, isWhitespace(bytes[2]) else {
            throw corrupt(bytes.count > 2 ? "bad header: \(describeByte(bytes[2])) after P5 where whitespace belongs" : "truncated header: nothing after P5")
        }
        var fields: [Int] = [], index = 2
        for field in ["width", "height", "maxval"] {
            while index < bytes.count, isWhitespace(bytes[index]) || bytes[index] == UInt8(ascii: "#") {
                if bytes[index] == UInt8(ascii: "#") {
                    while index < bytes.count, bytes[index] != 0x0A, bytes[index] != 0x0D { index += 1 }
                } else {
                    index += 1
                }
            }
            guard index < bytes.count else { throw corrupt("truncated header: the file ends before the \(field)") }
            guard (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(bytes[index]) else {
                throw corrupt("bad header: \(describeByte(bytes[index])) at byte \(index) where the \(field) belongs")
            }
            var value = 0
            while index < bytes.count, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(bytes[index]) {
                let (times10, overflow1) = value.multipliedReportingOverflow(by: 10)
                let (next, overflow2) = times10.addingReportingOverflow(Int(bytes[index] - UInt8(ascii: "0")))
                guard !overflow1, !overflow2 else { throw corrupt("bad header: the \(field) has more digits than an Int holds") }
                value = next
                index += 1
            }
            fields.append(value)
        }
        let (width, height, maxValue) = (fields[0], fields[1], fields[2])
        guard width > 0, height > 0 else { throw corrupt("bad header: a \(width)×\(height) image") }
        guard (1...65535).contains(maxValue) else { throw corrupt("bad header: maxval \(maxValue) is outside 1...65535") }
        guard index < bytes.count else { throw corrupt("truncated: the file ends after the maxval") }
        guard isWhitespace(bytes[index]) else { throw corrupt("bad header: \(describeByte(bytes[index])) after the maxval where one whitespace byte belongs") }
        let start = index + 1, sampleSize = maxValue < 256 ? 1 : 2
        let (samples, overflow1) = width.multipliedReportingOverflow(by: height)
        let (needed, overflow2) = samples.multipliedReportingOverflow(by: sampleSize)
        guard !overflow1, !overflow2 else { throw corrupt("a \(width)×\(height) image has more bytes than an Int counts") }
        guard bytes.count - start >= needed else {
            throw corrupt("truncated: \(width)×\(height) needs \(needed) pixel bytes, the file has \(bytes.count - start) after the header")
        }
        var pixels = [Float](repeating: 0, count: samples)
        for p in 0..<samples {
            let value = sampleSize == 1 ? Int(bytes[start + p]) : Int(bytes[start + 2 * p]) << 8 | Int(bytes[start + 2 * p + 1])
            guard value <= maxValue else {
                throw corrupt("pixel (\(p % width), \(p / width)) is \(value), above the maxval \(maxValue)")
            }
            pixels[p] = Float(value) / Float(maxValue)
        }
        return ImageFile(channels: 1, height: height, width: width, pixels: pixels)
    }

    /// A PNG: the signature, then chunks (length, type, data, CRC-32, each checked), IHDR first, IDAT
    /// consecutive, IEND last (bytes after it are not read); 8-bit grey, grey+alpha, RGB or RGBA, not
    /// interlaced; the zlib stream inflates to exactly height rows of one filter byte and width × channels
    /// bytes.
    static func png(_ bytes: [UInt8], path: String) throws -> ImageFile {
        func corrupt(_ reason: String) -> KilnError { .corruptFile(path: path, reason: "PNG: \(reason)") }
        func be32(_ at: Int) -> UInt32 { (0..<4).reduce(UInt32(0)) { $0 << 8 | UInt32(bytes[at + $1]) } }
        guard bytes.starts(with: [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]) else {
            throw corrupt("bad signature (the 8 bytes after which a PNG begins are wrong: truncated, or line endings converted)")
        }
        var at = 8, width = 0, height = 0, channels = 0, compressed: [UInt8] = []
        var seenIHDR = false, idatState = 0  // 0: none yet, 1: in the IDAT run, 2: after it
        scan: while true {
            guard bytes.count - at >= 8 else {
                throw corrupt(at == bytes.count ? "truncated: the file ends before the IEND chunk" : "truncated: \(bytes.count - at) bytes at byte \(at), too few for a chunk header")
            }
            let length = be32(at)
            let typeBytes = Array(bytes[(at + 4)..<(at + 8)])
            guard typeBytes.allSatisfy({ (0x41...0x5A).contains($0) || (0x61...0x7A).contains($0) }) else {
                throw corrupt("the chunk at byte \(at) has type bytes \(typeBytes.map { String(format: "%02x", $0) }.joined()), not four letters")
            }
            let type = String(decoding: typeBytes, as: UTF8.self)
            guard length <= 0x7FFF_FFFF else { throw corrupt("\(type) chunk at byte \(at) claims \(length) bytes, more than PNG's limit of 2^31 − 1") }
            guard bytes.count - at - 12 >= Int(length) else {
                throw corrupt("truncated \(type) chunk at byte \(at): it claims \(length) bytes of data and its CRC, the file has \(Swift.max(0, bytes.count - at - 8)) left")
            }
            let dataStart = at + 8, dataEnd = at + 8 + Int(length)
            let stored = be32(dataEnd)
            let computed = bytes.withUnsafeBufferPointer { buffer in
                UInt32(truncatingIfNeeded: crc32(0, buffer.baseAddress! + at + 4, uInt(4 + Int(length))))
            }
            guard stored == computed else {
                throw corrupt(String(format: "\(type) chunk at byte \(at): CRC 0x%08x does not match its contents (0x%08x)", stored, computed))
            }
            let data = bytes[dataStart..<dataEnd]
            if !seenIHDR, type != "IHDR" { throw corrupt("the first chunk is \(type), not IHDR") }
            if idatState == 1, type != "IDAT" { idatState = 2 }
            switch type {
            case "IHDR":
                guard !seenIHDR else { throw corrupt("a second IHDR chunk at byte \(at)") }
                seenIHDR = true
                guard length == 13 else { throw corrupt("IHDR has \(length) bytes, not 13") }
                let (w, h) = (be32(dataStart), be32(dataStart + 4))
                guard (1...0x7FFF_FFFF).contains(w), (1...0x7FFF_FFFF).contains(h) else {
                    throw corrupt("IHDR gives a \(w)×\(h) image; width and height are 1...2^31 − 1")
                }
                (width, height) = (Int(w), Int(h))
                let (depth, colourType, compression, filter, interlace) = (data[dataStart + 8], data[dataStart + 9], data[dataStart + 10], data[dataStart + 11], data[dataStart + 12])
                let depths: [UInt8: [UInt8]] = [0: [1, 2, 4, 8, 16], 2: [8, 16], 3: [1, 2, 4, 8], 4: [8, 16], 6: [8, 16]]
                let names: [UInt8: String] = [0: "grey", 2: "RGB", 3: "palette", 4: "grey+alpha", 6: "RGBA"]
                guard let allowed = depths[colourType], let colourName = names[colourType] else { throw corrupt("IHDR has colour type \(colourType), which PNG does not define") }
                guard allowed.contains(depth) else { throw corrupt("IHDR has bit depth \(depth), which PNG does not allow for colour type \(colourType) (\(colourName))") }
                guard compression == 0 else { throw corrupt("IHDR has compression method \(compression); PNG defines only 0") }
                guard filter == 0 else { throw corrupt("IHDR has filter method \(filter); PNG defines only 0") }
                guard interlace <= 1 else { throw corrupt("IHDR has interlace method \(interlace); PNG defines 0 and 1") }
                let supported = "Kiln reads 8-bit, non-interlaced grey, grey+alpha, RGB and RGBA"
                guard colourType != 3 else { throw corrupt("colour type 3 (palette) is not read; \(supported)") }
                guard depth == 8 else { throw corrupt("bit depth \(depth) (\(colourName)) is not read; \(supported)") }
                guard interlace == 0 else { throw corrupt("Adam7-interlaced images are not read; \(supported)") }
                channels = [0: 1, 4: 2, 2: 3, 6: 4][colourType] ?? 1
            case "IDAT":
                guard idatState != 2 else { throw corrupt("the IDAT chunk at byte \(at) does not follow the other IDAT chunks") }
                idatState = 1
                compressed += data
            case "IEND":
                guard length == 0 else { throw corrupt("IEND has \(length) bytes, not 0") }
                break scan
            case "PLTE":
                break  // a suggested palette for RGB; palette images are refused at IHDR
            default:
                // An unknown chunk whose first letter is upper case is critical: it cannot be skipped.
                if typeBytes[0] & 0x20 == 0 { throw corrupt("unknown critical chunk \(type) at byte \(at)") }
            }
            at = dataEnd + 4
        }
        guard !compressed.isEmpty else { throw corrupt("no IDAT chunk: no image data") }
        guard case let (stride, false) = width.multipliedReportingOverflow(by: channels),
              case let (rowBytes, false) = stride.addingReportingOverflow(1),
              case let (rows, false) = rowBytes.multipliedReportingOverflow(by: height) else {
            throw corrupt("a \(width)×\(height) image of \(channels) channels has more bytes than an Int counts")
        }
        let raw = try inflateStream(compressed, wrapping: .zlib, limit: rows, path: path, context: "PNG: IDAT: ")
        guard raw.count == rows else {
            throw corrupt("image data is shorter than \(width)×\(height) needs: \(raw.count) of \(rows) bytes (\(height) rows of a filter byte and \(stride) pixel bytes)")
        }
        // Undo the per-row filters (none, sub, up, average, Paeth).
        var image = [UInt8](repeating: 0, count: height * stride)
        for row in 0..<height {
            let filter = raw[row * (stride + 1)]
            guard filter <= 4 else { throw corrupt("unknown row filter \(filter) in row \(row)") }
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
                default:
                    let p = a + b - c, pa = abs(p - a), pb = abs(p - b), pc = abs(p - c)
                    predictor = pa <= pb && pa <= pc ? a : (pb <= pc ? b : c)
                }
                image[row * stride + i] = UInt8((x + predictor) & 0xFF)
            }
        }
        // Interleaved HWC → planar CHW.
        let plane = width * height
        var pixels = [Float](repeating: 0, count: channels * plane)
        for p in 0..<plane {
            for c in 0..<channels { pixels[c * plane + p] = Float(image[p * channels + c]) / 255 }
        }
        return ImageFile(channels: channels, height: height, width: width, pixels: pixels)
    }
}
