import ArgumentParser
import Foundation
import Kiln

struct MatmulCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "matmul",
        abstract: "Multiply two random n×n matrices on a device, check the result against the host, report GFLOP/s.")

    @Option(help: "auto, host, or cl:P:D (see `kiln devices`).")
    var device = "auto"

    @Option(name: .shortAndLong, help: "Matrix size n.")
    var size = 1024

    @Option(help: "Timed repetitions (after one warm-up).")
    var repeats = 5

    func run() throws {
        let device = try DeviceOption.parse(device)
        guard size > 0, repeats > 0 else { throw ValidationError("--size and --repeats must be positive") }
        let backend = try device.backend()
        print("device \(device): \(backend.name)")
        let n = size
        let a = try Tensor.uniform([n, n], low: -1, high: 1, seed: 1, on: device)
        let b = try Tensor.uniform([n, n], low: -1, high: 1, seed: 2, on: device)

        // Validate against the host before timing anything.
        let product = try matmul(a, b)
        let reference = try matmul(a.to(.host), b.to(.host)).toArray()
        let result = try product.toArray()
        let worst = zip(result, reference).map { abs($0 - $1) / (1 + abs($1)) }.max() ?? 0
        guard worst < 1e-3 else { throw ValidationError("result differs from the host by \(worst)") }
        print("checked against the host: max relative difference \(String(format: "%.1e", worst))")

        var seconds: [Double] = []
        for _ in 0..<repeats {
            let start = ContinuousClock.now
            _ = try matmul(a, b)
            try backend.synchronize()
            let elapsed = ContinuousClock.now - start
            seconds.append(Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) * 1e-18)
        }
        let median = seconds.sorted()[seconds.count / 2]
        let gflops = 2 * Double(n) * Double(n) * Double(n) / median / 1e9
        print(String(format: "%d×%d×%d: median %.2f ms over %d runs, %.1f GFLOP/s", n, n, n, median * 1e3, repeats, gflops))
    }
}
