/// Errors raised by Kiln's tensor API, layers and tools. OpenCL failures arrive as `KilnCL.CLError`.
public enum KilnError: Error, CustomStringConvertible, Equatable {
    /// An operation got operands whose shapes do not fit together.
    case shapeMismatch(operation: String, expected: String, got: String)
    /// Operands live on different devices.
    case deviceMismatch(operation: String, Device, Device)
    /// A device string that names no device of this machine.
    case unknownDevice(String, available: [String])
    /// Any other argument out of its domain.
    case invalidArgument(String)
    /// A data set, checkpoint or other file that cannot be read as what it should be.
    case corruptFile(path: String, reason: String)

    public var description: String {
        switch self {
        case let .shapeMismatch(operation, expected, got):
            return "\(operation): shapes do not match: \(expected) and \(got)"
        case let .deviceMismatch(operation, a, b):
            return "\(operation): operands are on different devices (\(a) and \(b)); move one with .to(_:)"
        case let .unknownDevice(name, available):
            return "unknown device '\(name)'; available: \(available.joined(separator: ", "))"
        case let .invalidArgument(message):
            return message
        case let .corruptFile(path, reason):
            return "\(path): \(reason)"
        }
    }
}

/// Formats a shape the way error messages and summaries print it: `[2, 3, 28, 28]`.
func describe(_ shape: [Int]) -> String { "[" + shape.map(String.init).joined(separator: ", ") + "]" }
