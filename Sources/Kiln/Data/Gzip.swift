import CZlib
import Foundation

/// Reads a whole file, inflating it when it is gzip-compressed (by its magic bytes, not its name).
func readPossiblyCompressed(_ url: URL) throws -> [UInt8] {
    let bytes: [UInt8]
    do { bytes = Array(try Data(contentsOf: url)) } catch {
        throw KilnError.corruptFile(path: url.path, reason: "cannot be read (\(error.localizedDescription))")
    }
    return try decompressedIfGzip(bytes, path: url.path)
}

/// `bytes` inflated when they start with gzip's magic bytes, else `bytes` themselves.
func decompressedIfGzip(_ bytes: [UInt8], path: String) throws -> [UInt8] {
    guard bytes.count >= 2, bytes[0] == 0x1f, bytes[1] == 0x8b else { return bytes }
    return try inflateGzip(bytes, path: path)
}

/// The two wrappings of a deflate stream that Kiln reads.
enum DeflateWrapping {
    /// RFC 1952, `.gz` files: one member or several concatenated (as `cat a.gz b.gz` makes).
    case gzip
    /// RFC 1950, PNG's IDAT stream: exactly one stream, nothing after it.
    case zlib
}

/// Inflates a gzip file's bytes with zlib (which checks every member's CRC-32 and length).
func inflateGzip(_ input: [UInt8], path: String) throws -> [UInt8] {
    try inflateStream(input, wrapping: .gzip, path: path)
}

/// Inflates a gzip or zlib stream. Every failure, a truncated stream, bytes after its end or more than
/// `limit` bytes of output, is a `KilnError.corruptFile` naming `path`, its reason after `context`.
func inflateStream(_ input: [UInt8], wrapping: DeflateWrapping, limit: Int = .max, path: String, context: String = "") throws -> [UInt8] {
    let name = wrapping == .gzip ? "gzip" : "zlib"
    func corrupt(_ reason: String) -> KilnError { .corruptFile(path: path, reason: context + reason) }
    guard input.count <= Int(UInt32.max) else { throw corrupt("\(input.count) bytes of \(name) data, more than zlib takes at once (4 GiB)") }
    var stream = z_stream()
    let windowBits: Int32 = wrapping == .gzip ? 15 + 16 : 15
    guard inflateInit2_(&stream, windowBits, ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size)) == Z_OK else {
        throw corrupt("zlib could not start inflating")
    }
    defer { inflateEnd(&stream) }
    var output: [UInt8] = []
    output.reserveCapacity(Swift.min(limit, input.count.multipliedReportingOverflow(by: 4).overflow ? input.count : input.count * 4))
    var chunk = [UInt8](repeating: 0, count: 1 << 16)
    var input = input
    try input.withUnsafeMutableBufferPointer { source in
        stream.next_in = source.baseAddress
        stream.avail_in = uInt(source.count)
        while true {
            let status = chunk.withUnsafeMutableBufferPointer { target in
                stream.next_out = target.baseAddress
                stream.avail_out = uInt(target.count)
                return inflate(&stream, Z_NO_FLUSH)
            }
            let produced = chunk.count - Int(stream.avail_out)
            guard produced <= limit - output.count else { throw corrupt("the \(name) data inflates to more than the expected \(limit) bytes") }
            output.append(contentsOf: chunk[0..<produced])
            switch status {
            case Z_STREAM_END:
                let remaining = Int(stream.avail_in)
                guard remaining > 0 else { return }
                let next = source.count - remaining
                if wrapping == .gzip, remaining >= 2, source[next] == 0x1f, source[next + 1] == 0x8b {
                    inflateReset(&stream)  // another gzip member
                    continue
                }
                throw corrupt("\(remaining) bytes of trailing data after the end of the \(name) stream")
            case Z_OK:
                if stream.avail_in == 0, stream.avail_out != 0 { throw corrupt("truncated \(name) data: the stream ends early") }
            case Z_BUF_ERROR:
                throw corrupt("truncated \(name) data: the stream ends early")
            case Z_NEED_DICT:
                throw corrupt("corrupt \(name) data (the stream needs a preset dictionary)")
            default:
                let message = stream.msg.map { String(cString: $0) } ?? "zlib status \(status)"
                throw corrupt("corrupt \(name) data (\(message))")
            }
        }
    }
    return output
}
