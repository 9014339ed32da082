import Foundation

/// One row of a run's metrics: written to metrics.csv after every epoch.
public struct EpochMetrics: Codable, Equatable, Sendable {
    public var epoch: Int
    public var step: Int
    public var trainLoss: Double
    public var trainAccuracy: Double
    public var validationLoss: Double?
    public var validationAccuracy: Double?
    public var learningRate: Double
    public var imagesPerSecond: Double
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

    static let csvHeader = "epoch,step,train_loss,train_acc,val_loss,val_acc,lr,images_per_s,seconds"

    var csvRow: String {
        func number(_ value: Double?) -> String { value.map { String(format: "%.6g", $0) } ?? "" }
        return "\(epoch),\(step),\(number(trainLoss)),\(number(trainAccuracy)),\(number(validationLoss)),"
            + "\(number(validationAccuracy)),\(number(learningRate)),\(number(imagesPerSecond)),\(number(seconds))"
    }
}

/// The metrics of a run as `metrics.csv`, rewritten atomically after every epoch so the file is always whole.
public struct MetricsLog {
    public let url: URL
    public private(set) var rows: [EpochMetrics]

    public init(url: URL, rows: [EpochMetrics] = []) {
        self.url = url
        self.rows = rows
    }

    public mutating func append(_ row: EpochMetrics) throws {
        rows.append(row)
        let text = ([EpochMetrics.csvHeader] + rows.map(\.csvRow)).joined(separator: "\n") + "\n"
        try writeAtomically(Array(text.utf8), to: url)
    }
}
