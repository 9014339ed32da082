import ArgumentParser
import Kiln
import KilnCL

struct DevicesCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "devices",
        abstract: "List every OpenCL platform and device, and the host backend; mark the one --device auto picks.")

    func run() throws {
        let auto = Device.auto
        let platforms: [CLPlatform]
        do {
            platforms = try CLRuntime.platforms()
        } catch {
            print("OpenCL: \(error)")
            platforms = []
        }
        if platforms.isEmpty {
            print("No OpenCL platform found (install an OpenCL driver, e.g. pocl-opencl-icd); Kiln runs on the host backend.\n")
        }
        for platform in platforms {
            print("Platform \(platform.index): \(platform.name) — \(platform.vendor), \(platform.version)")
            for device in platform.devices {
                let info = device.info
                let mark = Device.opencl(platform: platform.index, device: device.deviceIndex) == auto ? "  ← auto" : ""
                print("  \(device.identifier)  \(info.name) [\(info.type.rawValue)]\(mark)")
                print("      vendor \(info.vendor), driver \(info.driverVersion), \(info.deviceVersion), \(info.openCLCVersion)")
                print("      \(info.computeUnits) compute units at \(info.clockMHz) MHz, global memory \(bytes(info.globalMemoryBytes))"
                      + " (max allocation \(bytes(info.maxAllocationBytes))), local memory \(bytes(info.localMemoryBytes)),"
                      + " max work-group \(info.maxWorkGroupSize)")
                print("      extensions: \(info.extensions.joined(separator: " "))")
            }
        }
        let hostMark = auto == .host ? "  ← auto" : ""
        print("host  \(try Device.host.backend().name)\(hostMark)")
    }
}

func bytes(_ count: Int) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"]
    var value = Double(count)
    var unit = 0
    while value >= 1024, unit < units.count - 1 { value /= 1024; unit += 1 }
    return unit == 0 ? "\(count) B" : String(format: "%.1f %@", value, units[unit])
}
