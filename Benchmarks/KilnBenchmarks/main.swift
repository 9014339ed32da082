// Device-vs-host benchmarks of the tensor foundation. Prints Markdown tables for BENCHMARKS.md.
//   swift run -c release KilnBenchmarks [--quick]
// Every measured result is first validated against the host; one warm-up run is excluded; the median of
// the timed repeats is reported.
import CBLAS
import Foundation
import Kiln
import KilnCL

let arguments = CommandLine.arguments
let quick = arguments.contains("--quick")

// A child process that only reports how long the embedded programs take to build (see buildTimes()).
if arguments.contains("--build-time-child") {
    guard let device = Device.available.first(where: { $0 != .host }) else { exit(1) }
    let backend = try device.backend()
    let start = ContinuousClock.now
    _ = try Tensor.ones([16], on: backend.device).sum()
    print(seconds(ContinuousClock.now - start))
    exit(0)
}

func seconds(_ duration: Duration) -> Double {
    Double(duration.components.seconds) + Double(duration.components.attoseconds) * 1e-18
}

/// Median seconds of `repeats` runs of `body` (after one warm-up), each ending with a device sync.
func median(repeats: Int, on backend: any Backend, _ body: () throws -> Void) throws -> Double {
    try body()
    try backend.synchronize()
    var times: [Double] = []
    for _ in 0..<repeats {
        let start = ContinuousClock.now
        try body()
        try backend.synchronize()
        times.append(seconds(ContinuousClock.now - start))
    }
    return times.sorted()[times.count / 2]
}

func validate(_ result: Tensor, against reference: [Float], tolerance: Float, _ what: String) throws {
    let values = try result.toArray()
    let worst = zip(values, reference).map { abs($0 - $1) / (1 + abs($1)) }.max() ?? 0
    guard worst <= tolerance else { throw KilnError.invalidArgument("\(what): differs from the host by \(worst)") }
}

let devices = Device.available
let backends = try devices.map { try $0.backend() }
let environmentNote = ProcessInfo.processInfo.environment["OPENBLAS_CORETYPE"].map { "OPENBLAS_CORETYPE=\($0)" } ?? "OPENBLAS_CORETYPE unset"
print("# Kiln foundation benchmarks")
print("")
print("Backends: " + backends.map { "`\($0.device)` \($0.name)" }.joined(separator: "; ") + ". \(environmentNote).")
print("")

// MARK: GEMM

print("## Matmul (C = A·B, n×n, FLOP = 2n³)")
print("")
print("| n | OpenBLAS cblas_sgemm GFLOP/s | " + backends.map { "Kiln `\($0.device)` GFLOP/s" }.joined(separator: " | ") + " | Kiln host / OpenBLAS |")
print("|---|---|" + backends.map { _ in "---|" }.joined() + "---|")
for n in quick ? [256, 512] : [256, 512, 1024, 2048] {
    let repeats = n >= 2048 ? 3 : 7
    let hostA = try Tensor.uniform([n, n], low: -1, high: 1, seed: 1)
    let hostB = try Tensor.uniform([n, n], low: -1, high: 1, seed: 2)
    let reference = try matmul(hostA, hostB).toArray()
    let flops = 2 * Double(n) * Double(n) * Double(n)

    // OpenBLAS called directly: the ceiling the host backend is measured against.
    let a = try hostA.toArray(), b = try hostB.toArray()
    var c = [Float](repeating: 0, count: n * n)
    let openBLAS = try median(repeats: repeats, on: backends[0]) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(n), Int32(n), Int32(n), 1, a, Int32(n), b, Int32(n), 0, &c, Int32(n))
    }
    var row = "| \(n) | \(String(format: "%.1f", flops / openBLAS / 1e9)) |"
    var hostGflops = 0.0
    for backend in backends {
        let x = try hostA.to(backend.device), y = try hostB.to(backend.device)
        try validate(try matmul(x, y), against: reference, tolerance: 1e-3, "matmul \(n) on \(backend.device)")
        let out = try Tensor.empty([n, n], on: backend.device)
        let time = try median(repeats: repeats, on: backend) {
            try backend.matmul(x, transposed: false, y, transposed: false, m: n, n: n, k: n, alpha: 1, beta: 0, into: out)
        }
        let gflops = flops / time / 1e9
        if backend.device == .host { hostGflops = gflops }
        row += " \(String(format: "%.1f", gflops)) |"
    }
    print(row + " \(String(format: "%.0f%%", 100 * hostGflops / (flops / openBLAS / 1e9))) |")
}
print("")

// MARK: Elementwise add bandwidth

print("## Elementwise add (c = a + b, bytes moved = 12 per element)")
print("")
print("| elements | " + backends.map { "`\($0.device)` GB/s" }.joined(separator: " | ") + " |")
print("|---|" + backends.map { _ in "---|" }.joined())
for count in quick ? [1 << 16, 1 << 20] : [1 << 16, 1 << 20, 1 << 24] {
    let hostA = try Tensor.uniform([count], seed: 3), hostB = try Tensor.uniform([count], seed: 4)
    let reference = try (hostA + hostB).toArray()
    var row = "| \(count) |"
    for backend in backends {
        let x = try hostA.to(backend.device), y = try hostB.to(backend.device)
        try validate(try x + y, against: reference, tolerance: 0, "add \(count) on \(backend.device)")
        let out = try Tensor.empty([count], on: backend.device)
        let time = try median(repeats: 9, on: backend) { try backend.binary(.add, x, y, into: out) }
        row += " \(String(format: "%.1f", 12 * Double(count) / time / 1e9)) |"
    }
    print(row)
}
print("")

// MARK: Per-op overhead

print("## Overhead of a small op (allocate a 64-element result from the cache + launch `x + 1`), mean of 2000")
print("")
print("| backend | µs per op | driver allocations during the loop |")
print("|---|---|---|")
for backend in backends {
    let x = try Tensor.ones([64], on: backend.device)
    _ = try x + 1
    try backend.synchronize()
    let allocationsBefore = (backend as? OpenCLBackend)?.context.allocator.statistics.driverAllocations
    let start = ContinuousClock.now
    for _ in 0..<2000 { _ = try x + 1 }
    try backend.synchronize()
    let perOp = seconds(ContinuousClock.now - start) / 2000
    let allocations = (backend as? OpenCLBackend).map { "\($0.context.allocator.statistics.driverAllocations - (allocationsBefore ?? 0))" } ?? "n/a (malloc)"
    print("| `\(backend.device)` | \(String(format: "%.1f", perOp * 1e6)) | \(allocations) |")
}
print("")

// MARK: Program build times, first and second process

if let executable = Bundle.main.executablePath, Device.available.contains(where: { $0 != .host }) {
    print("## Program build (elementwise.cl + reduce.cl) in a first and a second process, fresh caches")
    print("")
    let cache = FileManager.default.temporaryDirectory.appending(path: "kiln-bench-\(UUID().uuidString)")
    defer { try? FileManager.default.removeItem(at: cache) }
    var environment = ProcessInfo.processInfo.environment
    environment["KILN_CACHE_DIR"] = cache.appending(path: "kiln").path
    environment["POCL_CACHE_DIR"] = cache.appending(path: "pocl").path
    var times: [String] = []
    for _ in 0..<2 {
        let child = Process()
        child.executableURL = URL(fileURLWithPath: executable)
        child.arguments = ["--build-time-child"]
        child.environment = environment
        let output = Pipe()
        child.standardOutput = output
        try child.run()
        child.waitUntilExit()
        times.append(String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            .trimmingCharacters(in: .whitespacesAndNewlines))
    }
    let first = Double(times[0]) ?? .nan, second = Double(times[1]) ?? .nan
    print("| process | first op incl. program builds (s) |")
    print("|---|---|")
    print("| first (compiles, stores binaries) | \(String(format: "%.3f", first)) |")
    print("| second (loads binaries from KILN_CACHE_DIR) | \(String(format: "%.3f", second)) (\(String(format: "%.1f%%", 100 * second / first)) of the first) |")
    print("")
}

// MARK: LeNet-BN training and inference throughput

print("## LeNet-BN (1×28×28, 10 classes): training step (forward + backward + Nesterov update) and inference")
print("")
print("| backend | train images/s, batch 64 | inference images/s, batch 256 |")
print("|---|---|---|")
for backend in backends {
    let model = try LeNetBN()
    try model.reset(seed: 1)
    try model.move(to: backend.device)
    let optimizer = Optimizer(model: model, rule: .sgd(momentum: 0.9, nesterov: true), learningRate: 0.01)
    let trainer = Trainer(model: model, optimizer: optimizer, loss: crossEntropyLoss, seed: 1)
    let batch = Batch(inputs: try Tensor.uniform([64, 1, 28, 28], seed: 2, on: backend.device),
                      targets: try Tensor((0..<64).map { Float($0 % 10) }, shape: [64], on: backend.device),
                      labels: (0..<64).map { $0 % 10 })
    let steps = quick ? 5 : 20
    let trainTime = try median(repeats: 3, on: backend) { for _ in 0..<steps { try trainer.trainStep(batch) } }
    let images = try Tensor.uniform([256, 1, 28, 28], seed: 3, on: backend.device)
    let inferTime = try median(repeats: 3, on: backend) { for _ in 0..<steps { _ = try model.forward(images, .inference) } }
    print("| `\(backend.device)` \(backend.name) | \(String(format: "%.0f", Double(64 * steps) / trainTime)) "
          + "| \(String(format: "%.0f", Double(256 * steps) / inferTime)) |")
}
print("")
