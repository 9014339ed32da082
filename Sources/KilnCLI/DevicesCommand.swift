import ArgumentParser
import Foundation
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
                if let folder = info.driverProgramCache {
                    let role = info.driverCachesWholeBuilds ? "compiled programs" : "the driver's final compile step"
                    print("      driver cache (\(role)): \(describeFolder(folder))")
                }
            }
        }
        let hostMark = auto == .host ? "  ← auto" : ""
        print("host  \(try Device.host.backend().name)\(hostMark)")
        let kilnCache = CLBinaryCache.standardDirectory
        print("\nKiln's cache (program binaries for drivers without their own, convolution tuning; KILN_CACHE_DIR): \(describeFolder(kilnCache))")
    }
}

/// "PATH (12 files, 3.4 MiB)", "PATH (empty)" or "PATH (not created yet)".
func describeFolder(_ folder: URL) -> String {
    let manager = FileManager.default
    var isFolder: ObjCBool = false
    guard manager.fileExists(atPath: folder.path, isDirectory: &isFolder), isFolder.boolValue else {
        return "\(folder.path) (not created yet)"
    }
    var files = 0, total = 0
    if let walker = manager.enumerator(at: folder, includingPropertiesForKeys: [.fileSizeKey, .isRegularFileKey]) {
        for case let url as URL in walker {
            guard let values = try? url.resourceValues(forKeys: [.fileSizeKey, .isRegularFileKey]), values.isRegularFile == true else { continue }
            files += 1
            total += values.fileSize ?? 0
        }
    }
    let writable = manager.isWritableFile(atPath: folder.path) ? "" : ", read-only"
    return files == 0 ? "\(folder.path) (empty\(writable))" : "\(folder.path) (\(files) files, \(bytes(total))\(writable))"
}

func bytes(_ count: Int) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"]
    var value = Double(count)
    var unit = 0
    while value >= 1024, unit < units.count - 1 { value /= 1024; unit += 1 }
    return unit == 0 ? "\(count) B" : String(format: "%.1f %@", value, units[unit])
}
