import Foundation

/// A safetensors file: an 8-byte little-endian header length, a JSON header naming each tensor's dtype,
/// shape and byte range, then the raw little-endian data. The format PyTorch's `safetensors.torch.save_file`
/// writes and reads.
public struct SafeTensors {
    public enum DType: String, Sendable {
        case float32 = "F32", int64 = "I64"
        /// Read only, converted to Float: the half-precision files pretrained weights are often published in.
        case float16 = "F16", bfloat16 = "BF16", float64 = "F64"

        var byteWidth: Int {
            switch self {
            case .float16, .bfloat16: return 2
            case .float32: return 4
            case .int64, .float64: return 8
            }
        }
    }

    public struct Entry {
        public var dtype: DType
        public var shape: [Int]
        /// Raw little-endian bytes.
        public var data: [UInt8]
    }

    /// Tensors by name, in insertion order.
    public private(set) var names: [String] = []
    private var entries: [String: Entry] = [:]
    /// The `__metadata__` strings.
    public var metadata: [String: String] = [:]

    public init() {}

    public subscript(name: String) -> Entry? { entries[name] }

    public mutating func set(_ name: String, _ entry: Entry) {
        if entries[name] == nil { names.append(name) }
        entries[name] = entry
    }

    public mutating func set(_ name: String, floats: [Float], shape: [Int]) {
        precondition(floats.count == shape.reduce(1, *), "\(name): \(floats.count) values for shape \(shape)")
        set(name, Entry(dtype: .float32, shape: shape, data: littleEndianBytes(floats)))
    }

    public mutating func set(_ name: String, integers: [Int64], shape: [Int]) {
        precondition(integers.count == shape.reduce(1, *), "\(name): \(integers.count) values for shape \(shape)")
        set(name, Entry(dtype: .int64, shape: shape, data: integers.flatMap { withUnsafeBytes(of: $0.littleEndian, Array.init) }))
    }

    /// The values of a tensor as Float (other dtypes are converted, F64 and I64 rounded to the nearest Float);
    /// a trailing partial value is ignored.
    public func floats(_ name: String) -> [Float]? {
        guard let entry = entries[name] else { return nil }
        let data = entry.data
        func word(_ at: Int, _ bytes: Int) -> UInt64 { (0..<bytes).reduce(UInt64(0)) { $0 | UInt64(data[at + $1]) << (8 * UInt64($1)) } }
        let values = stride(from: 0, to: data.count - entry.dtype.byteWidth + 1, by: entry.dtype.byteWidth)
        switch entry.dtype {
        case .float32 where UInt32(1).littleEndian == 1:
            // The stored bytes are this machine's Floats: copied whole (a checkpoint holds millions).
            return [Float](unsafeUninitializedCapacity: data.count / 4) { buffer, initialized in
                data.withUnsafeBytes { bytes in
                    _ = UnsafeMutableRawBufferPointer(buffer).copyBytes(from: bytes.prefix(buffer.count * 4))
                }
                initialized = buffer.count
            }
        case .float32: return values.map { Float(bitPattern: UInt32(word($0, 4))) }
        case .int64: return values.map { Float(Int64(bitPattern: word($0, 8))) }
        case .float64: return values.map { Float(Double(bitPattern: word($0, 8))) }
        case .float16, .bfloat16:
            // Millions of values in a pretrained file: read as 16-bit words in one pass.
            let bfloat = entry.dtype == .bfloat16
            return data.withUnsafeBytes { bytes in
                (0..<(data.count / 2)).map { index in
                    let bits = UInt16(littleEndian: bytes.loadUnaligned(fromByteOffset: 2 * index, as: UInt16.self))
                    return bfloat ? Float(bitPattern: UInt32(bits) << 16) : Float(Float16(bitPattern: bits))
                }
            }
        }
    }

    /// The little-endian bytes of `floats`: a copy of their memory on a little-endian machine.
    private func littleEndianBytes(_ floats: [Float]) -> [UInt8] {
        guard UInt32(1).littleEndian == 1 else { return floats.flatMap { withUnsafeBytes(of: $0.bitPattern.littleEndian, Array.init) } }
        return floats.withUnsafeBytes { Array($0) }
    }

    // MARK: Reading

    /// The largest header the format allows (the safetensors reference implementation's limit).
    static let maximumHeaderLength = 100_000_000

    /// The dtypes of the format; Kiln holds F32 and I64 tensors and names the others when it meets them.
    static let formatDTypes: Set<String> = ["BOOL", "U8", "I8", "F8_E5M2", "F8_E4M3", "F8_E8M0", "F4", "F6_E2M3", "F6_E3M2",
                                            "I16", "U16", "F16", "BF16", "I32", "U32", "F32", "F64", "C64", "I64", "U64"]

    /// Reads and validates a file; a truncated or malformed one raises `KilnError.corruptFile` naming it.
    public static func read(from url: URL) throws -> SafeTensors {
        let bytes: [UInt8]
        do { bytes = Array(try Data(contentsOf: url)) } catch {
            throw KilnError.corruptFile(path: url.path, reason: "cannot be read (\(error.localizedDescription))")
        }
        return try parse(bytes: bytes, path: url.path)
    }

    /// Parses a file's bytes (`path` names it in errors). Follows the format's rules: an 8-byte little-endian
    /// header length of at most 100 MB, a UTF-8 JSON object, for every tensor a known dtype, a shape of
    /// non-negative integers and `data_offsets` [begin, end) into the data buffer with end − begin equal to
    /// the dtype's size times the shape's product; the tensors cover the data buffer exactly, without
    /// overlaps or holes; no name twice; `__metadata__` maps strings to strings.
    public static func parse(bytes: [UInt8], path: String) throws -> SafeTensors {
        func corrupt(_ reason: String) -> KilnError { .corruptFile(path: path, reason: "not a valid safetensors file: \(reason)") }
        guard bytes.count >= 8 else { throw corrupt("\(bytes.count) bytes, shorter than the 8-byte header length") }
        let headerLength = (0..<8).reduce(UInt64(0)) { $0 | UInt64(bytes[$1]) << (8 * UInt64($1)) }
        guard headerLength <= UInt64(maximumHeaderLength) else {
            throw corrupt("the header claims \(headerLength) bytes, more than the format's limit of \(maximumHeaderLength)")
        }
        guard headerLength <= UInt64(bytes.count - 8) else {
            throw corrupt("the header claims \(headerLength) bytes but the file has \(bytes.count - 8) after the length")
        }
        let dataStart = 8 + Int(headerLength), dataLength = bytes.count - dataStart
        let header: [(key: String, value: HeaderJSON)]
        do {
            guard case let .object(members) = try HeaderJSON.parse(bytes[8..<dataStart]) else {
                throw corrupt("the header is JSON but not a JSON object")
            }
            header = members
        } catch let error as HeaderJSON.SyntaxError {
            throw corrupt("the header is not valid JSON (\(error.message) at header byte \(error.offset))")
        }

        var file = SafeTensors()
        var seen = Set<String>()
        var ranges: [(name: String, begin: Int, end: Int)] = []
        for (name, value) in header {
            guard seen.insert(name).inserted else {
                throw corrupt(name == "__metadata__" ? "__metadata__ appears twice" : "tensor \(name) appears twice in the header")
            }
            if name == "__metadata__" {
                guard case let .object(members) = value else { throw corrupt("__metadata__ is \(value.kind), not an object of strings") }
                for (key, item) in members {
                    guard case let .string(text) = item else { throw corrupt("__metadata__ \(key) is \(item.kind), not a string") }
                    guard file.metadata.updateValue(text, forKey: key) == nil else { throw corrupt("__metadata__ \(key) appears twice") }
                }
                continue
            }
            guard case let .object(fields) = value else { throw corrupt("tensor \(name) is \(value.kind), not an object") }
            func field(_ key: String) throws -> HeaderJSON {
                let matches = fields.filter { $0.key == key }
                guard matches.count <= 1 else { throw corrupt("tensor \(name): \(key) appears twice") }
                guard let match = matches.first else { throw corrupt("tensor \(name) lacks \(key)") }
                return match.value
            }
            func integers(_ key: String) throws -> [Int] {
                guard case let .array(items) = try field(key) else { throw corrupt("tensor \(name): \(key) is not an array") }
                return try items.map { item in
                    guard case let .number(text) = item, let value = Int(text), value >= 0 else {
                        throw corrupt("tensor \(name): \(key) holds \(item.summary), not a non-negative integer")
                    }
                    return value
                }
            }
            guard case let .string(dtypeName) = try field("dtype") else { throw corrupt("tensor \(name): dtype is not a string") }
            guard let dtype = DType(rawValue: dtypeName) else {
                throw corrupt(formatDTypes.contains(dtypeName)
                    ? "tensor \(name) has dtype \(dtypeName); Kiln reads F32, F16, BF16, F64 and I64"
                    : "tensor \(name) has dtype \(dtypeName.debugDescription), which the format does not define")
            }
            let shape = try integers("shape"), offsets = try integers("data_offsets")
            guard offsets.count == 2 else { throw corrupt("tensor \(name): data_offsets has \(offsets.count) numbers, not 2") }
            let (begin, end) = (offsets[0], offsets[1])
            guard begin <= end else { throw corrupt("tensor \(name): data_offsets [\(begin), \(end)) end before they begin") }
            guard end <= dataLength else {
                throw corrupt("truncated: tensor \(name) has data_offsets [\(begin), \(end)) but the data buffer has \(dataLength) bytes")
            }
            var size = dtype.byteWidth
            for dimension in shape {
                let (product, overflow) = size.multipliedReportingOverflow(by: dimension)
                guard !overflow else { throw corrupt("tensor \(name): shape \(describe(shape)) of \(dtypeName) has more bytes than an Int counts") }
                size = product
            }
            guard end - begin == size else {
                throw corrupt("tensor \(name): shape \(describe(shape)) of \(dtypeName) needs \(size) bytes, data_offsets [\(begin), \(end)) hold \(end - begin)")
            }
            ranges.append((name, begin, end))
            file.entries[name] = Entry(dtype: dtype, shape: shape, data: Array(bytes[(dataStart + begin)..<(dataStart + end)]))
        }
        // In offset order the tensors must tile the data buffer: each begins where the one before ends.
        ranges.sort { ($0.begin, $0.end, $0.name) < ($1.begin, $1.end, $1.name) }
        var covered = 0, previous: (name: String, begin: Int, end: Int)?
        for range in ranges {
            if range.begin < covered, let previous {
                throw corrupt("tensor \(range.name): data_offsets [\(range.begin), \(range.end)) overlap \(previous.name)'s [\(previous.begin), \(previous.end))")
            }
            if range.begin > covered {
                throw corrupt("bytes [\(covered), \(range.begin)) of the data buffer belong to no tensor (a hole before \(range.name))")
            }
            covered = range.end
            previous = range
        }
        guard covered == dataLength else {
            throw corrupt("bytes [\(covered), \(dataLength)) of the data buffer belong to no tensor (\(dataLength - covered) bytes after the last one)")
        }
        file.names = ranges.map(\.name)
        return file
    }

    // MARK: Writing

    /// The file's bytes: header padded with spaces to a multiple of 8, then the tensors in order.
    public func serialized() throws -> [UInt8] {
        var header: [String: Any] = [:]
        var offset = 0
        for name in names {
            guard let entry = entries[name] else { continue }
            header[name] = ["dtype": entry.dtype.rawValue, "shape": entry.shape, "data_offsets": [offset, offset + entry.data.count]]
            offset += entry.data.count
        }
        if !metadata.isEmpty { header["__metadata__"] = metadata }
        var json = Array(try JSONSerialization.data(withJSONObject: header, options: [.sortedKeys]))
        while json.count % 8 != 0 { json.append(0x20) }
        var bytes = withUnsafeBytes(of: UInt64(json.count).littleEndian, Array.init) + json
        bytes.reserveCapacity(bytes.count + offset)
        for name in names { bytes += entries[name]?.data ?? [] }
        return bytes
    }

    /// Writes atomically: a temporary file in the same folder, flushed to disk, then renamed over `url`, so
    /// a crash leaves either the old file or the new one, never a torn one.
    public func write(to url: URL) throws {
        try writeAtomically(try serialized(), to: url)
    }
}

/// Writes `bytes` to `url` through a temporary file, fsync and rename.
public func writeAtomically(_ bytes: [UInt8], to url: URL) throws {
    let directory = url.deletingLastPathComponent()
    try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    let temporary = directory.appending(path: ".\(url.lastPathComponent).\(UUID().uuidString).tmp")
    let descriptor = open(temporary.path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
    guard descriptor >= 0 else {
        throw KilnError.corruptFile(path: temporary.path, reason: "cannot be created: \(String(cString: strerror(errno)))")
    }
    var failure: String?
    bytes.withUnsafeBytes { buffer in
        var written = 0
        while written < buffer.count {
            let result = Foundation.write(descriptor, buffer.baseAddress! + written, buffer.count - written)
            if result < 0 {
                if errno == EINTR { continue }
                failure = "write failed: \(String(cString: strerror(errno)))"
                return
            }
            written += result
        }
        if fsync(descriptor) != 0 { failure = "fsync failed: \(String(cString: strerror(errno)))" }
    }
    close(descriptor)
    if let failure {
        unlink(temporary.path)
        throw KilnError.corruptFile(path: url.path, reason: failure)
    }
    guard rename(temporary.path, url.path) == 0 else {
        let reason = String(cString: strerror(errno))
        unlink(temporary.path)
        throw KilnError.corruptFile(path: url.path, reason: "rename failed: \(reason)")
    }
    // Make the rename itself durable.
    let directoryDescriptor = open(directory.path, O_RDONLY)
    if directoryDescriptor >= 0 {
        fsync(directoryDescriptor)
        close(directoryDescriptor)
    }
}

/// A strict JSON (RFC 8259) reader for safetensors headers. Unlike JSONSerialization it keeps members in
/// their order and keeps repeated names (so that a repeated tensor is an error, not silently the last one),
/// keeps numbers as their text (so that an offset that does not fit an Int is reported, not rounded), and
/// bounds the nesting depth. Every failure is a `SyntaxError` with the byte offset.
enum HeaderJSON: Equatable {
    case object([(key: String, value: HeaderJSON)])
    case array([HeaderJSON])
    case string(String)
    case number(String)
    case bool(Bool)
    case null

    struct SyntaxError: Error {
        var message: String
        var offset: Int
    }

    static let maximumDepth = 64

    static func == (a: HeaderJSON, b: HeaderJSON) -> Bool {
        switch (a, b) {
        case let (.object(x), .object(y)): return x.count == y.count && zip(x, y).allSatisfy { $0.key == $1.key && $0.value == $1.value }
        case let (.array(x), .array(y)): return x == y
        case let (.string(x), .string(y)), let (.number(x), .number(y)): return x == y
        case let (.bool(x), .bool(y)): return x == y
        case (.null, .null): return true
        default: return false
        }
    }

    /// What kind of value this is, for error messages.
    var kind: String {
        switch self {
        case .object: return "an object"
        case .array: return "an array"
        case .string: return "a string"
        case .number: return "a number"
        case .bool: return "a boolean"
        case .null: return "null"
        }
    }

    /// The value itself when short (numbers, booleans, null), else its kind.
    var summary: String {
        switch self {
        case let .number(text): return text
        case let .bool(value): return String(value)
        case .null: return "null"
        default: return kind
        }
    }

    /// Parses one JSON value that, with surrounding whitespace, makes up all of `bytes`.
    static func parse(_ bytes: ArraySlice<UInt8>) throws -> HeaderJSON {
        var parser = Parser(bytes: Array(bytes))
        parser.skipWhitespace()
        let value = try parser.value(depth: 0)
        parser.skipWhitespace()
        guard parser.index == parser.bytes.count else { throw parser.error("unexpected \(parser.describeByte()) after the JSON value") }
        return value
    }

    private struct Parser {
        let bytes: [UInt8]
        var index = 0

        func error(_ message: String) -> SyntaxError { SyntaxError(message: message, offset: index) }

        func describeByte() -> String {
            guard index < bytes.count else { return "end of the header" }
            let byte = bytes[index]
            return (0x21...0x7E).contains(byte) ? "'\(Character(Unicode.Scalar(byte)))'" : String(format: "byte 0x%02x", byte)
        }

        mutating func skipWhitespace() {
            while index < bytes.count, [0x20, 0x09, 0x0A, 0x0D].contains(bytes[index]) { index += 1 }
        }

        mutating func expect(_ byte: UInt8) throws {
            guard index < bytes.count, bytes[index] == byte else {
                throw error("expected '\(Character(Unicode.Scalar(byte)))', found \(describeByte())")
            }
            index += 1
        }

        mutating func value(depth: Int) throws -> HeaderJSON {
            guard depth < HeaderJSON.maximumDepth else { throw error("nested deeper than \(HeaderJSON.maximumDepth) levels") }
            guard index < bytes.count else { throw error("unexpected end of the header") }
            switch bytes[index] {
            case UInt8(ascii: "{"):
                index += 1
                var members: [(key: String, value: HeaderJSON)] = []
                skipWhitespace()
                if index < bytes.count, bytes[index] == UInt8(ascii: "}") { index += 1; return .object(members) }
                while true {
                    skipWhitespace()
                    guard index < bytes.count, bytes[index] == UInt8(ascii: "\"") else { throw error("expected a member name, found \(describeByte())") }
                    let key = try string()
                    skipWhitespace()
                    try expect(UInt8(ascii: ":"))
                    skipWhitespace()
                    members.append((key, try value(depth: depth + 1)))
                    skipWhitespace()
                    guard index < bytes.count else { throw error("unexpected end of the header inside an object") }
                    if bytes[index] == UInt8(ascii: "}") { index += 1; return .object(members) }
                    try expect(UInt8(ascii: ","))
                }
            case UInt8(ascii: "["):
                index += 1
                var items: [HeaderJSON] = []
                skipWhitespace()
                if index < bytes.count, bytes[index] == UInt8(ascii: "]") { index += 1; return .array(items) }
                while true {
                    skipWhitespace()
                    items.append(try value(depth: depth + 1))
                    skipWhitespace()
                    guard index < bytes.count else { throw error("unexpected end of the header inside an array") }
                    if bytes[index] == UInt8(ascii: "]") { index += 1; return .array(items) }
                    try expect(UInt8(ascii: ","))
                }
            case UInt8(ascii: "\""):
                return .string(try string())
            case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"):
                return .number(try number())
            case UInt8(ascii: "t"): try literal("true"); return .bool(true)
            case UInt8(ascii: "f"): try literal("false"); return .bool(false)
            case UInt8(ascii: "n"): try literal("null"); return .null
            default:
                throw error("unexpected \(describeByte())")
            }
        }

        mutating func literal(_ word: String) throws {
            let expected = Array(word.utf8)
            guard bytes.count - index >= expected.count, Array(bytes[index..<(index + expected.count)]) == expected else {
                throw error("unexpected \(describeByte())")
            }
            index += expected.count
        }

        mutating func digits() -> Int {
            let start = index
            while index < bytes.count, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(bytes[index]) { index += 1 }
            return index - start
        }

        mutating func number() throws -> String {
            let start = index
            if bytes[index] == UInt8(ascii: "-") { index += 1 }
            if index < bytes.count, bytes[index] == UInt8(ascii: "0") {
                index += 1
            } else if digits() == 0 {
                throw error("expected a digit, found \(describeByte())")
            }
            if index < bytes.count, bytes[index] == UInt8(ascii: ".") {
                index += 1
                guard digits() > 0 else { throw error("expected a digit after the decimal point, found \(describeByte())") }
            }
            if index < bytes.count, bytes[index] == UInt8(ascii: "e") || bytes[index] == UInt8(ascii: "E") {
                index += 1
                if index < bytes.count, bytes[index] == UInt8(ascii: "+") || bytes[index] == UInt8(ascii: "-") { index += 1 }
                guard digits() > 0 else { throw error("expected a digit in the exponent, found \(describeByte())") }
            }
            return String(decoding: bytes[start..<index], as: UTF8.self)
        }

        mutating func hex4() throws -> UInt32 {
            guard bytes.count - index >= 4 else { throw error("truncated \\u escape") }
            var value: UInt32 = 0
            for _ in 0..<4 {
                let byte = bytes[index]
                let digit: UInt8
                switch byte {
                case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = byte - UInt8(ascii: "0")
                case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = byte - UInt8(ascii: "a") + 10
                case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = byte - UInt8(ascii: "A") + 10
                default: throw error("bad hex digit \(describeByte()) in a \\u escape")
                }
                value = value << 4 | UInt32(digit)
                index += 1
            }
            return value
        }

        /// A string starting at the opening quote; its raw bytes must be UTF-8.
        mutating func string() throws -> String {
            let start = index
            index += 1
            var utf8: [UInt8] = []
            while true {
                guard index < bytes.count else { index = start; throw error("unterminated string") }
                let byte = bytes[index]
                switch byte {
                case UInt8(ascii: "\""):
                    index += 1
                    guard let text = String(validating: utf8, as: UTF8.self) else { index = start; throw error("a string that is not UTF-8") }
                    return text
                case UInt8(ascii: "\\"):
                    index += 1
                    guard index < bytes.count else { throw error("truncated escape") }
                    let escape = bytes[index]
                    index += 1
                    switch escape {
                    case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): utf8.append(escape)
                    case UInt8(ascii: "b"): utf8.append(0x08)
                    case UInt8(ascii: "f"): utf8.append(0x0C)
                    case UInt8(ascii: "n"): utf8.append(0x0A)
                    case UInt8(ascii: "r"): utf8.append(0x0D)
                    case UInt8(ascii: "t"): utf8.append(0x09)
                    case UInt8(ascii: "u"):
                        var code = try hex4()
                        if (0xD800..<0xDC00).contains(code) {
                            guard bytes.count - index >= 2, bytes[index] == UInt8(ascii: "\\"), bytes[index + 1] == UInt8(ascii: "u") else {
                                throw error("a lone UTF-16 high surrogate")
                            }
                            index += 2
                            let low = try hex4()
                            guard (0xDC00..<0xE000).contains(low) else { throw error("a high surrogate without its low surrogate") }
                            code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)
                        }
                        guard let scalar = Unicode.Scalar(code) else { throw error("a lone UTF-16 low surrogate") }
                        utf8 += Array(String(Character(scalar)).utf8)
                    default:
                        index -= 1
                        throw error("unknown escape \\\(describeByte())")
                    }
                case 0x00..<0x20:
                    throw error("a control character (\(describeByte())) inside a string")
                default:
                    utf8.append(byte)
                    index += 1
                }
            }
        }
    }
}
