import KilnCL
import XCTest
@testable import Kiln

final class ErrorTests: XCTestCase {
    func testMismatchedShapesNameTheOpAndBothShapes() throws {
        for device in try testDevices() {
            let a = try Tensor.zeros([2, 3], on: device)
            let b = try Tensor.zeros([3, 2], on: device)
            XCTAssertThrowsError(try a + b) { error in
                XCTAssertEqual(error as? KilnError, .shapeMismatch(operation: "add", expected: "[2, 3]", got: "[3, 2]"))
                XCTAssertEqual("\(error)", "add: shapes do not match: [2, 3] and [3, 2]")
            }
            XCTAssertThrowsError(try a.matmul(a)) { error in
                XCTAssertTrue("\(error)".contains("matmul"), "\(error)")
                XCTAssertTrue("\(error)".contains("[2, 3]"), "\(error)")
            }
            XCTAssertThrowsError(try a.axpby(alpha: 1, b, beta: 1)) { error in
                XCTAssertEqual(error as? KilnError, .shapeMismatch(operation: "axpby", expected: "[2, 3]", got: "[3, 2]"))
            }
            XCTAssertThrowsError(try a.reshaped([4, 2])) { error in
                XCTAssertEqual(error as? KilnError, .shapeMismatch(operation: "reshape", expected: "[2, 3]", got: "[4, 2]"))
            }
            XCTAssertThrowsError(try Tensor([1, 2, 3], shape: [2, 2], on: device))
            XCTAssertThrowsError(try a.sum(axis: 2))
            XCTAssertThrowsError(try a.slice(1..<3))
        }
    }

    func testOperandsOnDifferentDevicesAreRefused() throws {
        let gpu = try openCLDevice()
        XCTAssertThrowsError(try Tensor.zeros([2], on: .host) + Tensor.zeros([2], on: gpu)) { error in
            XCTAssertEqual(error as? KilnError, .deviceMismatch(operation: "add", .host, gpu))
        }
    }

    func testUnknownDeviceStringsListTheAvailableDevices() throws {
        for name in ["cl:9:9", "gpu7", "cl:x"] {
            XCTAssertThrowsError(try Device(parsing: name)) { error in
                guard case let .unknownDevice(given, available) = error as? KilnError else { return XCTFail("\(error)") }
                XCTAssertEqual(given, name)
                XCTAssertTrue(available.contains("host"))
                XCTAssertTrue("\(error)".contains("host"))
                for device in (try? CLRuntime.devices()) ?? [] {
                    XCTAssertTrue(available.contains(device.identifier), "\(available) lacks \(device.identifier)")
                }
            }
        }
    }

    func testDeviceStringsParse() throws {
        XCTAssertEqual(try Device(parsing: "host"), .host)
        let gpu = try openCLDevice()
        XCTAssertEqual(try Device(parsing: gpu.description), gpu)
        // auto: the first GPU, else the first other non-CPU device, else the host (an OpenCL driver for the
        // CPU itself is slower than the host backend on the same cores): worked out here from the device list.
        let devices = try CLRuntime.devices().filter { !$0.info.name.contains("Oclgrind") }
        let pick = devices.first { $0.info.type == .gpu } ?? devices.first { $0.info.type != .cpu }
        let expected = pick.map { Device.opencl(platform: $0.platformIndex, device: $0.deviceIndex) } ?? .host
        XCTAssertEqual(try Device(parsing: "auto"), expected)
        XCTAssertEqual(try Device(parsing: "AUTO"), expected)
    }

    func testAKernelFileWithASyntaxErrorRaisesTheBuildLog() throws {
        guard case let .opencl(platform, index) = try openCLDevice(),
              let device = try CLRuntime.device(platform: platform, device: index) else { return XCTFail() }
        XCTAssertThrowsError(try device.context().program(name: "typo.cl", source: "__kernel void f(__global float *x) { x[0] = y; }")) { error in
            let clError = error as? CLError
            XCTAssertEqual(clError?.name, "CL_BUILD_PROGRAM_FAILURE")
            XCTAssertTrue(clError?.buildLog?.contains("y") ?? false, "\(error)")
        }
    }
}
