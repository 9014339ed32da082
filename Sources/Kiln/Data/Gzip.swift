import CZlib
import Foundation

/// Reads a whole file, inflating it when it is gzip-compressed (by its magic bytes, not its name).
func readPossiblyCompressed(_ url: URL) throws -> [UInt8] {
    let bytes: [UInt8]
    do { bytes = Array(try Data(contentsOf: url)) } catch {
        throw KilnError.corruptFile(path: url.path, reason: "cannot be read (\(error.localizedDescription))")
    }
    guard bytes.count >= 2, bytes[0] == 0x1f, bytes[1] == 0x8b else { return bytes }
    return try inflateGzip(bytes, path: url.path)
}

/// Inflates a gzip stream with zlib.
func inflateGzip(_ input: [UInt8], path: String) throws -> [UInt8] {
    var stream = z_stream()
    // windowBits 15 + 32: accept a zlib or gzip header.
    guard inflateInit2_(&stream, 15 + 32, ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size)) == Z_OK else {
        throw KilnError.corruptFile(path: path, reason: "zlib could not start inflating")
    }
    defer { inflateEnd(&stream) }
    var output: [UInt8] = []
    output.reserveCapacity(input.count * 4)
    var chunk = [UInt8](repeating: 0, count: 1 << 20)
    var input = input
    var status: Int32 = Z_OK
    try input.withUnsafeMutableBufferPointer { source in
        stream.next_in = source.baseAddress
        stream.avail_in = uInt(source.count)
        repeat {
            status = chunk.withUnsafeMutableBufferPointer { target in
                stream.next_out = target.baseAddress
                stream.avail_out = uInt(target.count)
                return inflate(&stream, Z_NO_FLUSH)
            }
            guard status == Z_OK || status == Z_STREAM_END else {
                let message = stream.msg.map { String(cString: $0) } ?? "status \(status)"
                throw KilnError.corruptFile(path: path, reason: "corrupt gzip data (\(message))")
            }
            output.append(contentsOf: chunk[0..<(chunk.count - Int(stream.avail_out))])
            if status == Z_OK, stream.avail_in == 0, stream.avail_out != 0 {
                throw KilnError.corruptFile(path: path, reason: "truncated gzip data: the stream ends early")
            }
        } while status != Z_STREAM_END
    }
    return output
}
