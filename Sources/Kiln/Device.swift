import KilnCL

/// Where a tensor lives and its ops run: the host backend (Swift + OpenBLAS) or an OpenCL device.
public enum Device: Hashable, Sendable, CustomStringConvertible {
    case host
    /// An OpenCL device by platform and device index, as `kiln devices` lists them.
    case opencl(platform: Int, device: Int)

    /// Parses a device string: `auto`, `host`, or `cl:P:D`. Throws, listing the available devices, when the
    /// string names no device of this machine.
    public init(parsing text: String) throws {
        let lowered = text.lowercased()
        if lowered == "auto" { self = Device.auto; return }
        if lowered == "host" || lowered == "cpu" { self = .host; return }
        let parts = lowered.split(separator: ":", omittingEmptySubsequences: false)
        if parts.count == 3, parts[0] == "cl", let platform = Int(parts[1]), let device = Int(parts[2]),
           (try? CLRuntime.device(platform: platform, device: device)) != nil {
            self = .opencl(platform: platform, device: device)
            return
        }
        throw KilnError.unknownDevice(text, available: Device.available.map(\.description) + ["auto"])
    }

    /// The device `auto` stands for: a GPU, else another non-CPU OpenCL device (an accelerator), else the
    /// host. An OpenCL driver for the CPU itself (POCL) runs on the same cores as the host backend and is
    /// several times slower there (BENCHMARKS.md), so `auto` leaves it to an explicit `cl:P:D`; so too a
    /// simulator (Oclgrind), which reports itself as a GPU.
    public static var auto: Device {
        guard let device = try? CLRuntime.preferredDevice(), device.info.type != .cpu else { return .host }
        return .opencl(platform: device.platformIndex, device: device.deviceIndex)
    }

    /// What `auto` stands for in the process of local rank `localRank` of a data-parallel job (its rank among
    /// the job's processes on this machine): the GPU numbered so (modulo their count), else another non-CPU
    /// device numbered so, else the host.
    public static func auto(localRank: Int) -> Device {
        let real = ((try? CLRuntime.devices()) ?? []).filter { !$0.info.isSimulator }
        let gpus = real.filter { $0.info.type == .gpu }
        let candidates = gpus.isEmpty ? real.filter { $0.info.type != .cpu } : gpus
        guard !candidates.isEmpty else { return .host }
        let device = candidates[localRank % candidates.count]
        return .opencl(platform: device.platformIndex, device: device.deviceIndex)
    }

    /// The host and every OpenCL device of this machine.
    public static var available: [Device] {
        [.host] + ((try? CLRuntime.devices()) ?? []).map { .opencl(platform: $0.platformIndex, device: $0.deviceIndex) }
    }

    public var description: String {
        switch self {
        case .host: return "host"
        case let .opencl(platform, device): return "cl:\(platform):\(device)"
        }
    }

    /// The backend that runs ops on this device, created once per process.
    public func backend() throws -> any Backend {
        try BackendRegistry.shared.backend(for: self)
    }
}

final class BackendRegistry: Sendable {
    static let shared = BackendRegistry()
    private let backends = Locked<[Device: any Backend]>([:])

    func backend(for device: Device) throws -> any Backend {
        try backends.withLock { backends in
            if let backend = backends[device] { return backend }
            let backend: any Backend
            switch device {
            case .host:
                backend = HostBackend.shared
            case let .opencl(platform, index):
                guard let clDevice = try CLRuntime.device(platform: platform, device: index) else {
                    throw KilnError.unknownDevice(device.description, available: Device.available.map(\.description))
                }
                backend = try OpenCLBackend(context: clDevice.context(), device: device)
            }
            backends[device] = backend
            return backend
        }
    }
}
