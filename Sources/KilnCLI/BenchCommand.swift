import ArgumentParser
import Foundation
import Kiln

struct BenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Benchmark training steps, inference and single ops on every backend, side by side.",
        discussion: """
            Models: LeNet-BN (1x28x28, batch 64 and 256) and ResNet-18 with its small-image stem (3x32x32, batch 64 \
            and 128). Ops: convolution forward, backward-data and backward-filter on those models' layer shapes, \
            max pooling, batch norm, augmentation pipelines (standard, strong, and crop + flip + mixup/cutmix, on \
            1x28x28 and 3x32x32 batches of 64, parameter draws included), and a 1024x1024 GEMM whose speed is the \
            ceiling each row is compared with. \
            Every result is validated against the host first; one warm-up is excluded; the median of the timed \
            repeats is reported. On OpenCL devices the convolution tuner times every algorithm per shape and keeps \
            the fastest, and the table shows its pick.
            """)

    @Option(name: .customLong("device"), help: "A device to measure (repeatable): host or cl:P:D. Default: every device.")
    var devices: [String] = []

    @Option(help: "Models, comma-separated: lenet-bn, resnet18, or none (the op rows alone).")
    var models = "lenet-bn,resnet18"

    @Option(help: "Batch sizes for every model, comma-separated (default: 64,256 for LeNet-BN, 64,128 for ResNet-18).")
    var batches: String?

    @Flag(help: "Skip the per-op rows.")
    var noOps = false

    @Flag(help: "Let the OpenCL backend's heuristic pick convolution algorithms instead of timing them.")
    var noTune = false

    @Flag(help: "Also profile each model row on OpenCL devices kernel by kernel (5 more steps, each waiting for the device) and print the tables.")
    var profile = false

    @Flag(name: .customLong("all-reduce"),
          help: "Under mpirun -np N: time the ranks' all-reduce of 4 bytes to 64 MB (data-parallel training's gradient average) instead.")
    var allReduce = false

    @Option(help: "Timed repeats per row (the median is reported).")
    var repeats = 5

    @Flag(help: "Print a JSON array of records instead of the table.")
    var json = false

    @Option(help: "Also write the JSON records to this file.")
    var save: String?

    func run() throws {
        guard repeats > 0 else { throw ValidationError("--repeats must be positive") }
        if allReduce { return try AllReduceBenchmark.run(repeats: repeats, json: json) }
        var options = BenchmarkOptions()
        options.models = models.lowercased() == "none" ? [] : models.split(separator: ",").map { String($0).lowercased() }
        for model in options.models where !["lenet-bn", "resnet18"].contains(model) {
            throw ValidationError("kiln bench measures lenet-bn and resnet18, not '\(model)'")
        }
        if let batches {
            let sizes = try batches.split(separator: ",").map { text -> Int in
                guard let size = Int(text), size > 0 else { throw ValidationError("bad batch size '\(text)'") }
                return size
            }
            for model in options.models { options.batches[model] = sizes }
        }
        options.ops = !noOps
        options.tuneConvolutions = !noTune
        options.repeats = repeats
        options.profile = profile || ProcessInfo.processInfo.environment["KILN_PROFILE"] == "1"
        let chosen = try devices.isEmpty ? Device.available : devices.map(DeviceOption.parse)

        var records: [BenchmarkRecord] = []
        var profiles: [String] = []
        for device in chosen {
            var suite = BenchmarkSuite(backend: try device.backend(), options: options)
            records += try suite.run { step in
                FileHandle.standardError.write(Data("\(device): \(step)\n".utf8))
            }
            profiles += suite.profiles.map { "\(device): kernel profile of \($0.row)\n\n\($0.profile.table)" }
        }
        records = BenchmarkSuite.compare(records)
        if let save { try BenchmarkTable.json(records).write(toFile: save, atomically: true, encoding: .utf8) }
        if json {
            print(try BenchmarkTable.json(records))
        } else {
            print(BenchmarkTable.markdown(records))
        }
        // With --json the tables go to standard error, so that standard output stays one JSON document.
        for table in profiles {
            let text = "\n" + table + "\n"
            if json { FileHandle.standardError.write(Data(text.utf8)) } else { print(text) }
        }
    }
}
