// Throughput of whole training steps and of single ops on one backend, for `kiln bench` and Benchmarks/.
// Every result is validated against the host before it is timed, one warm-up run is excluded, and the
// figure is the median of the timed repeats. Each row carries its fraction of the backend's measured GEMM
// peak, so that backends of very different speed can be read side by side.
import Foundation

/// One measurement of `kiln bench`.
public struct BenchmarkRecord: Codable, Sendable {
    /// "host" or "opencl".
    public var backend: String
    /// The device's name.
    public var device: String
    /// The model (end-to-end rows) or nil.
    public var model: String?
    /// The op (per-op rows) or nil: "conv2d", "maxpool", "batchnorm", "gemm".
    public var op: String?
    /// The op's shape, e.g. "64x32x32 -> 128 k3 s2 p1", or nil.
    public var shape: String?
    public var batch: Int
    /// "train" or "infer" for models; "forward", "backward-data", "backward-filter", "backward" for ops.
    public var mode: String
    public var imagesPerSecond: Double?
    public var gflops: Double?
    /// GFLOP/s over the backend's measured GEMM peak (models: their FLOP count per image times images/s).
    public var fractionOfPeak: Double?
    /// This row's speed over the host's speed on the same row (filled in by `BenchmarkSuite.compare`).
    public var deviceHostRatio: Double?
    /// The convolution algorithm the backend chose, where it chooses one.
    public var algorithm: String?
    /// The tuner's best time for each convolution algorithm it tried on this shape (OpenCL).
    public var algorithmSeconds: [String: Double]?
    /// Kernels enqueued per training step or inference pass (OpenCL models; each CLBlast call counts once).
    public var launchesPerStep: Double?
    /// Median seconds per timed iteration.
    public var seconds: Double

    enum CodingKeys: String, CodingKey {
        case backend, device, model, op, shape, batch, mode, algorithm, seconds, gflops
        case algorithmSeconds = "algorithm_seconds", launchesPerStep = "launches_per_step"
        case imagesPerSecond = "images_per_second", fractionOfPeak = "fraction_of_peak", deviceHostRatio = "device_host_ratio"
    }

    /// What the row measures, without the backend: rows with the same key are compared.
    public var key: String { [model ?? op ?? "", shape ?? "", "batch \(batch)", mode].joined(separator: " | ") }
}

/// What to measure.
public struct BenchmarkOptions: Sendable {
    /// Models by zoo name: "lenet-bn" (1x28x28) and "resnet18" (3x32x32, small-image stem).
    public var models = ["lenet-bn", "resnet18"]
    /// Batch sizes per model.
    public var batches: [String: [Int]] = ["lenet-bn": [64, 256], "resnet18": [64, 128]]
    /// Whether to run the per-op rows.
    public var ops = true
    /// Whether the OpenCL backend times every convolution algorithm per shape and keeps the fastest (its
    /// choice is reported); otherwise its heuristic picks.
    public var tuneConvolutions = true
    /// Timed repeats (the median is reported).
    public var repeats = 5
    /// Training steps (or inference passes) per timed repeat of a model.
    public var stepsPerRepeat = 10
    /// Whether each model row on an OpenCL device is also profiled kernel by kernel (`profiles`).
    public var profile = false

    public init() {}
}

/// Runs the benchmarks on one backend.
public struct BenchmarkSuite {
    public let backend: any Backend
    public var options: BenchmarkOptions
    /// GFLOP/s of a square GEMM on this backend, the ceiling every row is measured against.
    public private(set) var peakGflops = Double.nan
    /// With `options.profile`, the kernel profile of each model row ("lenet-bn train batch 64"), in order.
    public private(set) var profiles: [(row: String, profile: KernelProfile)] = []

    public init(backend: any Backend, options: BenchmarkOptions = BenchmarkOptions()) {
        self.backend = backend
        self.options = options
    }

    var backendKind: String { backend.device == .host ? "host" : "opencl" }

    /// Every row for this backend; `progress` is told what runs next.
    public mutating func run(progress: (String) -> Void = { _ in }) throws -> [BenchmarkRecord] {
        if let device = backend as? OpenCLBackend, options.tuneConvolutions { device.convolutionTuning = true }
        progress("GEMM peak")
        var records = [try gemm(size: 1024)]
        peakGflops = records[0].gflops ?? .nan
        records[0].fractionOfPeak = 1
        for model in options.models {
            for batch in options.batches[model] ?? [64] {
                for training in [true, false] {
                    progress("\(model) \(training ? "train" : "infer") batch \(batch)")
                    let (record, profile) = try self.model(model, batch: batch, training: training)
                    records.append(record)
                    if let profile { profiles.append(("\(model) \(training ? "train" : "infer") batch \(batch)", profile)) }
                }
            }
        }
        if options.ops {
            for (model, shapes) in Self.convolutionShapes where options.models.contains(model) {
                let batch = options.batches[model]?.first ?? 64
                for shape in shapes {
                    for pass in ["forward", "backward-data", "backward-filter"] {
                        progress("conv2d \(pass) \(shape.label)")
                        records.append(try convolution(shape, batch: batch, pass: pass))
                    }
                }
            }
            progress("pooling and batch norm")
            records += try pooling(batch: 64)
            records += try batchNorm(batch: 64)
            progress("augmentation")
            records += try augmentation(batch: 64)
        }
        return records
    }

    /// Fills in each non-host row's ratio to the host row with the same key.
    public static func compare(_ records: [BenchmarkRecord]) -> [BenchmarkRecord] {
        let host = Dictionary(records.filter { $0.backend == "host" }.map { ($0.key, $0) }, uniquingKeysWith: { a, _ in a })
        return records.map { record in
            var record = record
            if let reference = host[record.key] { record.deviceHostRatio = reference.seconds / record.seconds }
            return record
        }
    }

    // MARK: Timing

    /// Median (or with `best`, the least) seconds of `repeats` runs (default: the options') of `body` after
    /// one warm-up, each ending with a device sync.
    func median(repeats: Int? = nil, best: Bool = false, _ body: () throws -> Void) throws -> Double {
        try body()
        try backend.synchronize()
        var times: [Double] = []
        for _ in 0..<(repeats ?? options.repeats) {
            let start = ContinuousClock.now
            try body()
            try backend.synchronize()
            times.append(Self.seconds(ContinuousClock.now - start))
        }
        return times.sorted()[best ? 0 : times.count / 2]
    }

    static func seconds(_ duration: Duration) -> Double {
        Double(duration.components.seconds) + Double(duration.components.attoseconds) * 1e-18
    }

    /// Throws unless `result` matches `reference` within `|a − r| ≤ tolerance·(1 + |r|)`.
    func validate(_ result: Tensor, against reference: Tensor, tolerance: Float, _ what: String) throws {
        let (values, expected) = (try result.toArray(), try reference.toArray())
        guard result.shape == reference.shape else {
            throw KilnError.shapeMismatch(operation: "benchmark \(what) on \(backend.device)", expected: describe(reference.shape),
                                          got: describe(result.shape))
        }
        let worst = zip(values, expected).map { abs($0 - $1) / (1 + abs($1)) }.max() ?? 0
        guard worst <= tolerance, values.allSatisfy(\.isFinite) else {
            throw KilnError.invalidArgument("benchmark \(what) on \(backend.device): differs from the host by \(worst)")
        }
    }

    func record(model: String? = nil, op: String? = nil, shape: String? = nil, batch: Int, mode: String,
                seconds: Double, flops: Double, images: Int? = nil, algorithm: String? = nil) -> BenchmarkRecord {
        let gflops = flops / seconds / 1e9
        return BenchmarkRecord(backend: backendKind, device: backend.name, model: model, op: op, shape: shape, batch: batch,
                               mode: mode, imagesPerSecond: images.map { Double($0) / seconds }, gflops: gflops,
                               fractionOfPeak: peakGflops.isNaN ? nil : gflops / peakGflops, deviceHostRatio: nil,
                               algorithm: algorithm, algorithmSeconds: nil, launchesPerStep: nil, seconds: seconds)
    }

    // MARK: GEMM

    /// C = A·B for n×n matrices: 2n³ FLOP.
    func gemm(size n: Int) throws -> BenchmarkRecord {
        let a = try Tensor.uniform([n, n], low: -1, high: 1, seed: 1), b = try Tensor.uniform([n, n], low: -1, high: 1, seed: 2)
        let (x, y) = (try a.to(backend.device), try b.to(backend.device))
        try validate(try matmul(x, y), against: try matmul(a, b), tolerance: 1e-3, "gemm \(n)")
        let out = try Tensor.empty([n, n], on: backend.device)
        // The ceiling: the fastest of the repeats, not the median.
        let time = try median(best: true) {
            try backend.matmul(x, transposed: false, y, transposed: false, m: n, n: n, k: n, alpha: 1, beta: 0, into: out)
        }
        return record(op: "gemm", shape: "\(n)x\(n)x\(n)", batch: 1, mode: "forward", seconds: time, flops: 2 * pow(Double(n), 3))
    }
}
