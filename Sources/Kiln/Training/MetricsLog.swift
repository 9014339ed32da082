import Foundation

/// One row of a run's metrics: written to metrics.csv after every epoch.
public struct EpochMetrics: Codable, Equatable, Sendable {
    /// The epoch this row ends (1-based).
    public var epoch: Int
    /// Training steps taken in the run by the end of the epoch.
    public var step: Int
    public var trainLoss: Double
    /// NaN for a model whose accuracy is not measured.
    public var trainAccuracy: Double
    /// The scored set's loss and accuracy (the validation set's, or the test set's with `--val-split 0`;
    /// `MetricsLog.scoredSet` says which); nil without one.
    public var validationLoss: Double?
    public var validationAccuracy: Double?
    public var learningRate: Double
    public var imagesPerSecond: Double
    /// Training time of the run up to the end of the epoch.
    public var seconds: Double

    public init(epoch: Int, step: Int, trainLoss: Double, trainAccuracy: Double, validationLoss: Double?,
                validationAccuracy: Double?, learningRate: Double, imagesPerSecond: Double, seconds: Double) {
        self.epoch = epoch
        self.step = step
        self.trainLoss = trainLoss
        self.trainAccuracy = trainAccuracy
        self.validationLoss = validationLoss
        self.validationAccuracy = validationAccuracy
        self.learningRate = learningRate
        self.imagesPerSecond = imagesPerSecond
        self.seconds = seconds
    }
}

/// The set that scores every epoch of a run: a split held out of the training set, or the test set
/// (`--val-split 0`). Each is called by its own name in metrics.csv, curves.svg and on the console.
public enum ScoredSet: String, Sendable, Equatable {
    case validation, test

    /// The short name: the prefix of its metrics.csv columns (val_loss, test_loss) and its console label.
    public var abbreviation: String { self == .validation ? "val" : "test" }
}

/// The metrics of a run as `metrics.csv`, rewritten atomically after every epoch so the file is always whole,
/// and read back (by its header's column names) when a run resumes. `columns(for:)` is the one definition of
/// the file's layout in both directions.
public struct MetricsLog {
    /// One column of metrics.csv: its header name, how a row's value is written and how it is read back.
    struct Column: Sendable {
        let name: String
        let write: @Sendable (EpochMetrics) -> String
        /// Sets the field from the text of a cell, or returns false when the text is not a valid value.
        let read: @Sendable (inout EpochMetrics, Substring) -> Bool

        static func integer(_ name: String, _ field: WritableKeyPath<EpochMetrics, Int> & Sendable) -> Column {
            Column(name: name, write: { String($0[keyPath: field]) }, read: { row, text in
                guard let value = Int(text) else { return false }
                row[keyPath: field] = value
                return true
            })
        }

        static func number(_ name: String, _ field: WritableKeyPath<EpochMetrics, Double> & Sendable) -> Column {
            Column(name: name, write: { format($0[keyPath: field]) }, read: { row, text in
                guard let value = Double(text) else { return false }
                row[keyPath: field] = value
                return true
            })
        }

        /// An empty cell is nil.
        static func optional(_ name: String, _ field: WritableKeyPath<EpochMetrics, Double?> & Sendable) -> Column {
            Column(name: name, write: { $0[keyPath: field].map(format) ?? "" }, read: { row, text in
                if text.isEmpty { row[keyPath: field] = nil; return true }
                guard let value = Double(text) else { return false }
                row[keyPath: field] = value
                return true
            })
        }

        /// Six significant digits keep the file readable; NaN and infinities come out as nan and inf, which
        /// `Double.init` reads back.
        private static func format(_ value: Double) -> String { String(format: "%.6g", value) }
    }

    /// The columns, the scored set's named by it: val_loss and val_acc, or test_loss and test_acc.
    static func columns(for scoredSet: ScoredSet) -> [Column] {
        let prefix = scoredSet.abbreviation
        return [
            .integer("epoch", \.epoch), .integer("step", \.step),
            .number("train_loss", \.trainLoss), .number("train_acc", \.trainAccuracy),
            .optional("\(prefix)_loss", \.validationLoss), .optional("\(prefix)_acc", \.validationAccuracy),
            .number("lr", \.learningRate), .number("images_per_s", \.imagesPerSecond), .number("seconds", \.seconds),
        ]
    }

    /// The header line of metrics.csv when `scoredSet` scores the epochs.
    public static func header(for scoredSet: ScoredSet = .validation) -> String {
        columns(for: scoredSet).map(\.name).joined(separator: ",")
    }

    /// Where the log is written.
    public let url: URL
    /// The rows so far, oldest first.
    public private(set) var rows: [EpochMetrics]
    /// Which set the rows' validation figures come from, which names their columns. A log read back takes
    /// it from the header; a run sets its own, so that a run from before test_loss existed (its test-set
    /// figures under val_loss) is written with the right names when it resumes.
    public var scoredSet: ScoredSet

    /// A log of `rows` that `append` will write to `url`.
    public init(url: URL, rows: [EpochMetrics] = [], scoredSet: ScoredSet = .validation) {
        self.url = url
        self.rows = rows
        self.scoredSet = scoredSet
    }

    /// Reads a metrics.csv written by `append`; a missing file is an empty log (a run stopped in its first
    /// epoch has none yet). A file that is not such a log raises `KilnError.corruptFile` naming it and the line.
    public static func read(from url: URL) throws -> MetricsLog {
        guard FileManager.default.fileExists(atPath: url.path) else { return MetricsLog(url: url) }
        let text: String
        do { text = try String(contentsOf: url, encoding: .utf8) } catch {
            throw KilnError.corruptFile(path: url.path, reason: "cannot be read (\(error.localizedDescription))")
        }
        let (rows, scoredSet) = try parse(text, source: url.path)
        return MetricsLog(url: url, rows: rows, scoredSet: scoredSet)
    }

    /// The rows of the text of a metrics.csv and the set its header names; `source` names it in errors.
    static func parse(_ text: String, source: String) throws -> (rows: [EpochMetrics], scoredSet: ScoredSet) {
        let lines = text.split(separator: "\n", omittingEmptySubsequences: true)
        guard let headerLine = lines.first else { return ([], .validation) }
        let names = headerLine.split(separator: ",", omittingEmptySubsequences: false)
        let scoredSet: ScoredSet = names.contains { $0.hasPrefix("\(ScoredSet.test.abbreviation)_") } ? .test : .validation
        let columns = Self.columns(for: scoredSet), header = Self.header(for: scoredSet)
        var order: [Column] = []
        for name in names {
            guard let column = columns.first(where: { $0.name == name }) else {
                throw KilnError.corruptFile(path: source, reason: "unknown column '\(name)' in the header (expected \(header))")
            }
            order.append(column)
        }
        if let missing = columns.first(where: { column in !names.contains { $0 == column.name } }) {
            throw KilnError.corruptFile(path: source, reason: "the header lacks the column '\(missing.name)' (expected \(header))")
        }
        let rows = try lines.dropFirst().enumerated().map { index, line in
            let cells = line.split(separator: ",", omittingEmptySubsequences: false)
            guard cells.count == order.count else {
                throw KilnError.corruptFile(path: source, reason: "line \(index + 2) has \(cells.count) fields, the header \(order.count)")
            }
            var row = EpochMetrics(epoch: 0, step: 0, trainLoss: .nan, trainAccuracy: .nan, validationLoss: nil,
                                   validationAccuracy: nil, learningRate: .nan, imagesPerSecond: .nan, seconds: 0)
            for (column, cell) in zip(order, cells) where !column.read(&row, cell) {
                throw KilnError.corruptFile(path: source, reason: "line \(index + 2): '\(cell)' is not a valid \(column.name)")
            }
            return row
        }
        return (rows, scoredSet)
    }

    /// The text of metrics.csv for these rows, the scored set's columns named by `scoredSet`.
    static func text(of rows: [EpochMetrics], scoredSet: ScoredSet = .validation) -> String {
        let columns = Self.columns(for: scoredSet)
        return ([Self.header(for: scoredSet)] + rows.map { row in columns.map { $0.write(row) }.joined(separator: ",") })
            .joined(separator: "\n") + "\n"
    }

    /// Adds a row and rewrites the file.
    public mutating func append(_ row: EpochMetrics) throws {
        rows.append(row)
        try writeAtomically(Array(Self.text(of: rows, scoredSet: scoredSet).utf8), to: url)
    }

    /// Keeps the rows of epochs up to `epoch`: what a resumed run keeps of a log that may have gone on past
    /// its checkpoint.
    public mutating func truncate(afterEpoch epoch: Int) {
        rows.removeAll { $0.epoch > epoch }
    }
}
