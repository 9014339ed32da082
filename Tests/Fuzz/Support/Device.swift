// The fuzz build compiles Kiln's parsers without KilnCL and OpenCL; KilnError names a Device, so this
// stands in for Sources/Kiln/Device.swift there. Not part of the library.
public enum Device: Hashable, Sendable, CustomStringConvertible {
    case host
    case opencl(platform: Int, device: Int)

    public var description: String {
        switch self {
        case .host: return "host"
        case let .opencl(platform, device): return "cl:\(platform):\(device)"
        }
    }
}
