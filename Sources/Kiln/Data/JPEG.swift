import CJPEG

extension ImageFile {
    /// A JPEG through libjpeg-turbo: grey stays one channel, colour becomes RGB. libjpeg's own reason names
    /// what is wrong with a damaged file (its warnings about corrupt data count as errors: Kiln does not train
    /// on the pixels libjpeg would make up).
    static func jpeg(_ bytes: [UInt8], path: String) throws -> ImageFile {
        var decoded: UnsafeMutablePointer<UInt8>?
        var width: Int32 = 0, height: Int32 = 0, channels: Int32 = 0
        var message = [CChar](repeating: 0, count: 256)
        let status = bytes.withUnsafeBufferPointer { input in
            message.withUnsafeMutableBufferPointer { text in
                kiln_jpeg_decode(input.baseAddress, input.count, &decoded, &width, &height, &channels, text.baseAddress, text.count)
            }
        }
        defer { kiln_jpeg_free(decoded) }
        guard status == 0, let decoded, width > 0, height > 0, channels == 1 || channels == 3 else {
            let reason = String(decoding: message.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            throw KilnError.corruptFile(path: path, reason: "JPEG: \(reason.isEmpty ? "libjpeg decoded no image" : reason)")
        }
        let (w, h, c) = (Int(width), Int(height), Int(channels))
        let plane = w * h
        var pixels = [Float](repeating: 0, count: c * plane)
        // Interleaved HWC → planar CHW.
        for p in 0..<plane {
            for k in 0..<c { pixels[k * plane + p] = Float(decoded[p * c + k]) / 255 }
        }
        return ImageFile(channels: c, height: h, width: w, pixels: pixels)
    }
}
