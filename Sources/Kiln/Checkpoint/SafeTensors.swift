import Foundation

/// A safetensors file: an 8-byte little-endian header length, a JSON header naming each tensor's dtype,
/// shape and byte range, then the raw little-endian data. The format PyTorch's `safetensors.torch.save_file`
/// writes and reads.
public struct SafeTensors {
    public enum DType: String, Sendable {
        case float32 = "F32", int64 = "I64"

        var byteWidth: Int { self == .float32 ? 4 : 8 }
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
        set(name, Entry(dtype: .float32, shape: shape, data: floats.flatMap { withUnsafeBytes(of: $0.bitPattern.littleEndian, Array.init) }))
    }

    public mutating func set(_ name: String, integers: [Int64], shape: [Int]) {
        precondition(integers.count == shape.reduce(1, *), "\(name): \(integers.count) values for shape \(shape)")
        set(name, Entry(dtype: .int64, shape: shape, data: integers.flatMap { withUnsafeBytes(of: $0.littleEndian, Array.init) }))
    }

    /// The values of a tensor as Float (int64 tensors are converted).
    public func floats(_ name: String) -> [Float]? {
        guard let entry = entries[name] else { return nil }
        switch entry.dtype {
        case .float32:
            return stride(from: 0, to: entry.data.count, by: 4).map { at in
                Float(bitPattern: UInt32(entry.data[at]) | UInt32(entry.data[at + 1]) << 8
                      | UInt32(entry.data[at + 2]) << 16 | UInt32(entry.data[at + 3]) << 24)
            }
        case .int64:
            return stride(from: 0, to: entry.data.count, by: 8).map { at in
                Float(Int64(bitPattern: (0..<8).reduce(UInt64(0)) { $0 | UInt64(entry.data[at + $1]) << (8 * UInt64($1)) }))
            }
        }
    }

    // MARK: Reading

    /// Reads and validates a file; a truncated or malformed one raises `KilnError.corruptFile` naming it.
    public static func read(from url: URL) throws -> SafeTensors {
        let path = url.path
        let bytes: [UInt8]
        do { bytes = Array(try Data(contentsOf: url)) } catch {
            throw KilnError.corruptFile(path: path, reason: "cannot be read (\(error.localizedDescription))")
        }
        func corrupt(_ reason: String) -> KilnError { .corruptFile(path: path, reason: "not a valid safetensors file: \(reason)") }
        guard bytes.count >= 8 else { throw corrupt("\(bytes.count) bytes, shorter than the 8-byte header length") }
        let headerLength = (0..<8).reduce(UInt64(0)) { $0 | UInt64(bytes[$1]) << (8 * UInt64($1)) }
        guard headerLength <= UInt64(bytes.count - 8) else {
            throw corrupt("the header claims \(headerLength) bytes but the file has \(bytes.count - 8) after the length")
        }
        let dataStart = 8 + Int(headerLength)
        guard let header = try? JSONSerialization.jsonObject(with: Data(bytes[8..<dataStart])) as? [String: Any] else {
            throw corrupt("the header is not a JSON object")
        }
        var file = SafeTensors()
        if let metadata = header["__metadata__"] as? [String: String] { file.metadata = metadata }
        var ranges: [(name: String, begin: Int, end: Int)] = []
        for (name, value) in header where name != "__metadata__" {
            guard let description = value as? [String: Any],
                  let dtypeName = description["dtype"] as? String,
                  let shape = description["shape"] as? [Int],
                  let offsets = description["data_offsets"] as? [Int], offsets.count == 2 else {
                throw corrupt("tensor '\(name)' lacks dtype, shape or data_offsets")
            }
            guard let dtype = DType(rawValue: dtypeName) else {
                throw corrupt("tensor '\(name)' has dtype \(dtypeName); Kiln reads F32 and I64")
            }
            let (begin, end) = (offsets[0], offsets[1])
            guard shape.allSatisfy({ $0 >= 0 }), begin >= 0, end >= begin, end - begin == shape.reduce(1, *) * dtype.byteWidth else {
                throw corrupt("tensor '\(name)': shape \(shape) of \(dtypeName) does not fit bytes \(begin)..<\(end)")
            }
            guard dataStart + end <= bytes.count else {
                throw corrupt("truncated: tensor '\(name)' ends at byte \(dataStart + end) but the file has \(bytes.count)")
            }
            ranges.append((name, begin, end))
            file.entries[name] = Entry(dtype: dtype, shape: shape, data: Array(bytes[(dataStart + begin)..<(dataStart + end)]))
        }
        file.names = ranges.sorted { ($0.begin, $0.name) < ($1.begin, $1.name) }.map(\.name)
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
