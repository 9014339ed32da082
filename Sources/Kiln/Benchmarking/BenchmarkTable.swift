import Foundation

/// Benchmark records side by side: one row per measurement, one column group per device.
public enum BenchmarkTable {
    /// A Markdown table (also readable in a terminal).
    public static func markdown(_ records: [BenchmarkRecord]) -> String {
        var devices: [String] = []
        for record in records where !devices.contains(record.device) { devices.append(record.device) }
        var keys: [String] = []
        for record in records where !keys.contains(record.key) { keys.append(record.key) }
        let byKey = Dictionary(grouping: records, by: \.key)

        var header = ["what", "shape", "batch", "mode"]
        for device in devices {
            header += ["\(device)", "% of peak"]
            if records.contains(where: { $0.device == device && $0.backend != "host" }) { header += ["algorithm", "launches per step", "÷ host"] }
        }
        var lines = ["| " + header.joined(separator: " | ") + " |", "|" + header.map { _ in "---|" }.joined()]
        for key in keys {
            guard let rows = byKey[key], let first = rows.first else { continue }
            var cells = [first.model ?? first.op ?? "", first.shape ?? "", "\(first.batch)", first.mode]
            for device in devices {
                let row = rows.first { $0.device == device }
                cells.append(row.map(value) ?? "")
                cells.append(row?.fractionOfPeak.map { String(format: "%.1f%%", 100 * $0) } ?? "")
                if records.contains(where: { $0.device == device && $0.backend != "host" }) {
                    cells.append(row?.algorithm ?? "")
                    cells.append(row?.launchesPerStep.map { String(format: "%.0f", $0) } ?? "")
                    cells.append(row?.deviceHostRatio.map { String(format: "%.2fx", $0) } ?? "")
                }
            }
            lines.append("| " + cells.joined(separator: " | ") + " |")
        }
        return lines.joined(separator: "\n")
    }

    /// A JSON array of the records, one object per measurement.
    public static func json(_ records: [BenchmarkRecord]) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        return String(decoding: try encoder.encode(records), as: UTF8.self)
    }

    /// Images/s for model rows, GFLOP/s for op rows.
    static func value(_ record: BenchmarkRecord) -> String {
        if let images = record.imagesPerSecond { return String(format: "%.0f img/s", images) }
        return String(format: "%.1f GFLOP/s", record.gflops ?? .nan)
    }
}
