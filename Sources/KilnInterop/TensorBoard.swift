import Foundation
import Kiln

/// A TensorBoard event file, `events.out.tfevents.<seconds>.<host>.kiln` in a folder: TFRecords (length,
/// masked CRC-32C of the length, an `Event`, masked CRC-32C of the event) of scalar and image summaries, as
/// TensorFlow's and PyTorch's SummaryWriter write them. Every event is written through at once, so a run
/// that is killed leaves whole records (TensorBoard's reader also skips a torn last one).
///
///     let events = try TensorBoardEventWriter(folder: runFolder)
///     try events.scalars(["batch/loss": 2.3], step: 1)
public final class TensorBoardEventWriter {
    /// The event file.
    public let url: URL
    private let handle: FileHandle

    /// Starts a new event file in `folder` (which must exist) with its file-version event.
    public init(folder: URL, now: Date = Date()) throws {
        let seconds = Int(now.timeIntervalSince1970)
        let host = ProcessInfo.processInfo.hostName.split(separator: ".").first.map(String.init) ?? "localhost"
        url = folder.appending(path: "events.out.tfevents.\(seconds).\(host).\(getpid()).kiln")
        guard FileManager.default.createFile(atPath: url.path, contents: nil) else {
            throw KilnError.corruptFile(path: url.path, reason: "cannot be created (\(String(cString: strerror(errno)).lowercased()))")
        }
        handle = try FileHandle(forWritingTo: url)
        var event = Tensorboard_Event()
        event.wallTime = now.timeIntervalSince1970
        event.fileVersion = "brain.Event:2"
        try write(event)
    }

    deinit { try? handle.close() }

    /// One event at `step` with a scalar summary per tag (in the tags' order).
    public func scalars(_ values: KeyValuePairs<String, Double>, step: Int) throws {
        try scalars(values.map { ($0.key, $0.value) }, step: step)
    }

    public func scalars(_ values: [(tag: String, value: Double)], step: Int) throws {
        var summary = Tensorboard_Summary()
        summary.value = values.map { tag, value in
            var entry = Tensorboard_Summary.Value()
            entry.tag = tag
            entry.simpleValue = Float(value)
            return entry
        }
        try write(summary, step: step)
    }

    /// An image summary: `image` as PNG under `tag`.
    public func image(_ tag: String, _ image: ImageFile, step: Int) throws {
        var picture = Tensorboard_Summary.Image()
        picture.height = Int32(image.height)
        picture.width = Int32(image.width)
        picture.colorspace = Int32(image.channels)
        picture.encodedImageString = Data(try image.pngData())
        var entry = Tensorboard_Summary.Value()
        entry.tag = tag
        entry.image = picture
        var summary = Tensorboard_Summary()
        summary.value = [entry]
        try write(summary, step: step)
    }

    private func write(_ summary: Tensorboard_Summary, step: Int) throws {
        var event = Tensorboard_Event()
        event.wallTime = Date().timeIntervalSince1970
        event.step = Int64(step)
        event.summary = summary
        try write(event)
    }

    private func write(_ event: Tensorboard_Event) throws {
        let record = TFRecord.frame(Array(try event.serializedData()))
        do { try handle.write(contentsOf: record) } catch {
            throw KilnError.corruptFile(path: url.path, reason: "cannot be written (\(error.localizedDescription))")
        }
    }
}

/// TFRecord framing: each record is its length (UInt64, little-endian), the masked CRC-32C of those 8
/// bytes, the data, and the masked CRC-32C of the data.
enum TFRecord {
    static func frame(_ data: [UInt8]) -> [UInt8] {
        let length = withUnsafeBytes(of: UInt64(data.count).littleEndian, Array.init)
        return length + littleEndian(maskedCRC(length)) + data + littleEndian(maskedCRC(data))
    }

    /// The records of `bytes`, each checked against its CRCs; an error names `source` and the record.
    static func records(in bytes: [UInt8], source: String) throws -> [[UInt8]] {
        var records: [[UInt8]] = [], offset = 0
        func word(_ at: Int) -> UInt32 { (0..<4).reduce(0) { $0 | UInt32(bytes[at + $1]) << (8 * $1) } }
        while offset < bytes.count {
            guard offset + 12 <= bytes.count else { throw KilnError.corruptFile(path: source, reason: "ends inside record \(records.count)'s header") }
            let header = Array(bytes[offset..<(offset + 8)])
            let length = header.enumerated().reduce(UInt64(0)) { $0 | UInt64($1.element) << (8 * $1.offset) }
            guard word(offset + 8) == maskedCRC(header) else {
                throw KilnError.corruptFile(path: source, reason: "record \(records.count)'s length fails its checksum")
            }
            let start = offset + 12
            guard length <= UInt64(bytes.count - start), bytes.count - start - Int(length) >= 4 else {
                throw KilnError.corruptFile(path: source, reason: "ends inside record \(records.count)")
            }
            let data = Array(bytes[start..<(start + Int(length))])
            guard word(start + Int(length)) == maskedCRC(data) else {
                throw KilnError.corruptFile(path: source, reason: "record \(records.count)'s data fails its checksum")
            }
            records.append(data)
            offset = start + Int(length) + 4
        }
        return records
    }

    /// TFRecord's checksum: CRC-32C rotated right by 15 bits plus a constant, so that a CRC stored in the
    /// data does not checksum to zero.
    static func maskedCRC(_ bytes: [UInt8]) -> UInt32 {
        let crc = crc32c(bytes)
        return ((crc >> 15) | (crc << 17)) &+ 0xA282_EAD8
    }

    /// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), byte by byte from a table.
    static func crc32c(_ bytes: [UInt8]) -> UInt32 {
        var crc: UInt32 = 0xFFFF_FFFF
        for byte in bytes { crc = table[Int((crc ^ UInt32(byte)) & 0xFF)] ^ (crc >> 8) }
        return crc ^ 0xFFFF_FFFF
    }

    private static let table: [UInt32] = (0..<256).map { index in
        var value = UInt32(index)
        for _ in 0..<8 { value = value & 1 == 1 ? (value >> 1) ^ 0x82F6_3B78 : value >> 1 }
        return value
    }

    private static func littleEndian(_ value: UInt32) -> [UInt8] { withUnsafeBytes(of: value.littleEndian, Array.init) }
}

/// What a training run puts into TensorBoard: the loss and learning rate of every step ("batch/…", by
/// step), every metrics.csv column of every epoch ("epoch/…", by epoch, as Keras's callback), and images.
public final class TensorBoardLog {
    public let events: TensorBoardEventWriter

    public init(folder: URL) throws { events = try TensorBoardEventWriter(folder: folder) }

    /// The steps from `firstStep`, numbered as in steps.csv.
    public func stepsEnded(firstStep: Int, losses: [Float], learningRates: [Float]) throws {
        for (offset, loss) in losses.enumerated() {
            var values: [(tag: String, value: Double)] = [("batch/loss", Double(loss))]
            if learningRates.indices.contains(offset) { values.append(("batch/lr", Double(learningRates[offset]))) }
            try events.scalars(values, step: firstStep + offset)
        }
    }

    /// An epoch's row of metrics.csv; `measuresAccuracy` is false for a model scored by loss alone.
    public func epochEnded(_ metrics: EpochMetrics, scoredSet: ScoredSet, measuresAccuracy: Bool) throws {
        let scored = scoredSet.abbreviation
        var values: [(tag: String, value: Double)] = [("epoch/train_loss", metrics.trainLoss)]
        if measuresAccuracy { values.append(("epoch/train_acc", metrics.trainAccuracy)) }
        if let loss = metrics.validationLoss { values.append(("epoch/\(scored)_loss", loss)) }
        if measuresAccuracy, let accuracy = metrics.validationAccuracy { values.append(("epoch/\(scored)_acc", accuracy)) }
        values += [("epoch/lr", metrics.learningRate), ("epoch/images_per_s", metrics.imagesPerSecond)]
        try events.scalars(values, step: metrics.epoch)
    }
}
