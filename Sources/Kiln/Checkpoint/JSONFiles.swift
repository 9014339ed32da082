import Foundation

// JSON has no NaN or infinity, and a fit state may hold them (a validation loss of NaN, say); written as strings
// they survive a checkpoint instead of failing it.
private let nonConformingFloats = (positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")

extension JSONEncoder {
    /// Sorted keys, so the same value always encodes to the same bytes, and NaN and infinities as strings.
    static var sorted: JSONEncoder {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        encoder.nonConformingFloatEncodingStrategy = .convertToString(
            positiveInfinity: nonConformingFloats.positiveInfinity, negativeInfinity: nonConformingFloats.negativeInfinity,
            nan: nonConformingFloats.nan)
        return encoder
    }
}

extension JSONDecoder {
    /// Reads what `JSONEncoder.sorted` writes.
    static var nonConforming: JSONDecoder {
        let decoder = JSONDecoder()
        decoder.nonConformingFloatDecodingStrategy = .convertFromString(
            positiveInfinity: nonConformingFloats.positiveInfinity, negativeInfinity: nonConformingFloats.negativeInfinity,
            nan: nonConformingFloats.nan)
        return decoder
    }
}

/// A decoding error in a sentence, without Swift's debug dump: what is wrong, and where.
func describeDecodingError(_ error: any Error) -> String {
    func path(_ codingPath: [any CodingKey]) -> String {
        codingPath.isEmpty ? "the top level" : "\"" + codingPath.map { $0.intValue.map { "[\($0)]" } ?? $0.stringValue }.joined(separator: ".") + "\""
    }
    guard let error = error as? DecodingError else { return "\(error)" }
    switch error {
    case let .keyNotFound(key, context): return "\(path(context.codingPath + [key])) is missing"
    case let .typeMismatch(type, context): return "\(path(context.codingPath)) is not a \(type)"
    case let .valueNotFound(type, context): return "\(path(context.codingPath)) is null, not a \(type)"
    case let .dataCorrupted(context):
        return context.codingPath.isEmpty ? "not valid JSON" : "\(path(context.codingPath)) is invalid: \(context.debugDescription)"
    @unknown default: return "not readable"
    }
}

/// A file-system error in a sentence: the system's reason, without Foundation's domain and code.
func describeFileError(_ error: any Error) -> String {
    let error = error as NSError
    if error.domain == NSPOSIXErrorDomain { return String(cString: strerror(Int32(error.code))).lowercased() }
    if let underlying = error.userInfo[NSUnderlyingErrorKey] as? NSError, underlying.domain == NSPOSIXErrorDomain {
        return String(cString: strerror(Int32(underlying.code))).lowercased()
    }
    if error.domain == NSCocoaErrorDomain {
        switch CocoaError.Code(rawValue: error.code) {
        case .fileNoSuchFile, .fileReadNoSuchFile: return "no such file or folder"
        case .fileReadNoPermission, .fileWriteNoPermission: return "permission denied"
        case .fileWriteFileExists: return "a file of that name exists"
        case .fileWriteOutOfSpace: return "no space left on the device"
        case .fileReadCorruptFile: return "the file is damaged"
        default: break
        }
    }
    return error.localizedFailureReason ?? error.localizedDescription
}
