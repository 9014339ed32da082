// Device-vs-host benchmarks: the same suite as `kiln bench`, printed as the Markdown tables of BENCHMARKS.md.
//   swift run -c release KilnBenchmarks [--quick] [--json] [--no-ops] [--models a,b] [--device D ...]
import Foundation
import Kiln

let arguments = CommandLine.arguments
var options = BenchmarkOptions()
if arguments.contains("--quick") {
    options.repeats = 3
    options.batches = ["lenet-bn": [64], "resnet18": [64]]
}
var records: [BenchmarkRecord] = []
// `--device D` (repeatable) limits the run to those devices; the default is every device.
let chosen = try arguments.indices.filter { arguments[$0] == "--device" && $0 + 1 < arguments.count }
    .map { try Device(parsing: arguments[$0 + 1]) }
if arguments.contains("--no-ops") { options.ops = false }
if let index = arguments.firstIndex(of: "--models"), index + 1 < arguments.count {
    options.models = arguments[index + 1].split(separator: ",").map(String.init)
}
for device in chosen.isEmpty ? Device.available : chosen {
    var suite = BenchmarkSuite(backend: try device.backend(), options: options)
    records += try suite.run { FileHandle.standardError.write(Data("\(device): \($0)\n".utf8)) }
}
records = BenchmarkSuite.compare(records)
if arguments.contains("--json") {
    print(try BenchmarkTable.json(records))
} else {
    print(BenchmarkTable.markdown(records))
}
