// libFuzzer targets for Kiln's file parsers, compiled together with the parsers' sources by run.sh into one
// binary that is linked under eight names: fuzz-safetensors, fuzz-idx, fuzz-cifar, fuzz-png, fuzz-pgm, fuzz-jpeg
// (through libjpeg-turbo), fuzz-config (a run's config.json) and fuzz-fitstate (the fit state JSON in a
// checkpoint's metadata).
// The name the binary runs under (or KILN_FUZZ_TARGET) picks the target. A target fails (traps) when a
// parser traps, raises anything but `KilnError.corruptFile`, or returns a value that breaks its invariants.
import CZlib
import Foundation

/// Checks that `body` either succeeds or raises `corruptFile` with a non-empty reason.
@inline(__always)
func total<T>(_ body: () throws -> T) -> T? {
    do {
        return try body()
    } catch let KilnError.corruptFile(path, reason) {
        precondition(path == "fuzz-input" && !reason.isEmpty, "corruptFile without a path or reason: \(path): \(reason)")
        return nil
    } catch {
        preconditionFailure("a parser raised \(error), not corruptFile")
    }
}

func fuzzSafeTensors(_ bytes: [UInt8]) {
    guard let file = total({ try SafeTensors.parse(bytes: bytes, path: "fuzz-input") }) else { return }
    var total = 0
    for name in file.names {
        guard let entry = file[name] else { preconditionFailure("\(name) is listed but absent") }
        let count = entry.shape.reduce(1, *)
        precondition(entry.data.count == count * entry.dtype.byteWidth, "\(name): \(entry.data.count) bytes for \(entry.shape)")
        precondition(file.floats(name)?.count == count)
        total += entry.data.count
    }
    precondition(total == bytes.count - 8 - Int(bytes.prefix(8).reversed().reduce(UInt64(0)) { $0 << 8 | UInt64($1) }),
                 "the tensors do not cover the data buffer")
    // What was read writes back to a file that reads back the same.
    guard let again = try? SafeTensors.parse(bytes: file.serialized(), path: "fuzz-input") else {
        preconditionFailure("a file that read does not read back after writing")
    }
    precondition(again.names == file.names && again.metadata == file.metadata)
    for name in file.names { precondition(again[name]?.data == file[name]?.data && again[name]?.shape == file[name]?.shape) }
}

func fuzzIDX(_ bytes: [UInt8]) {
    guard let data = total({ try decompressedIfGzip(bytes, path: "fuzz-input") }) else { return }
    for rank in [1, 3] {
        guard let file = total({ try IDXFile.parse(bytes: data, path: "fuzz-input", expectedRank: rank) }) else { continue }
        precondition(file.dimensions.count == rank && file.bytes.count == file.dimensions.reduce(1, *))
    }
}

func fuzzCIFAR(_ bytes: [UInt8]) {
    guard let data = total({ try decompressedIfGzip(bytes, path: "fuzz-input") }),
          let batch = total({ try Dataset.cifar10Batch(bytes: data, path: "fuzz-input") }) else { return }
    precondition(batch.pixels.count == batch.labels.count * 3072 && batch.labels.allSatisfy { (0..<10).contains($0) })
}

func checkImage(_ image: ImageFile) {
    precondition(image.channels >= 1 && image.width >= 1 && image.height >= 1)
    precondition(image.pixels.count == image.channels * image.width * image.height)
    precondition(image.pixels.allSatisfy { $0 >= 0 && $0 <= 1 })
    _ = image.converted(toChannels: 1)
    _ = image.converted(toChannels: 3)
}

/// `bytes` with every complete chunk's CRC recomputed, so that mutations get past the CRC check.
func repairingCRCs(_ bytes: [UInt8]) -> [UInt8] {
    var bytes = bytes, at = 8
    while bytes.count - at >= 12 {
        let length = Int((0..<4).reduce(UInt32(0)) { $0 << 8 | UInt32(bytes[at + $1]) })
        guard bytes.count - at - 12 >= length else { break }
        let crc = bytes.withUnsafeBufferPointer { UInt32(truncatingIfNeeded: crc32(0, $0.baseAddress! + at + 4, uInt(4 + length))) }
        for i in 0..<4 { bytes[at + 8 + length + i] = UInt8(truncatingIfNeeded: crc >> (24 - 8 * UInt32(i))) }
        at += 12 + length
    }
    return bytes
}

/// A well-formed PNG around the input: its first 13 bytes (width and height masked to 1...64) as IHDR, the
/// rest deflated as IDAT, so that the row filters and IHDR checks see valid zlib streams.
func synthesizedPNG(_ bytes: [UInt8]) -> [UInt8]? {
    guard bytes.count >= 13 else { return nil }
    func be32(_ v: UInt32) -> [UInt8] { (0..<4).map { UInt8(truncatingIfNeeded: v >> (24 - 8 * UInt32($0))) } }
    func chunk(_ type: String, _ data: [UInt8]) -> [UInt8] {
        let body = Array(type.utf8) + data
        let crc = body.withUnsafeBufferPointer { UInt32(truncatingIfNeeded: crc32(0, $0.baseAddress!, uInt(body.count))) }
        return be32(UInt32(data.count)) + body + be32(crc)
    }
    var header = Array(bytes[0..<13])
    header[0...2] = [0, 0, 0]; header[3] = header[3] % 64 + 1
    header[4...6] = [0, 0, 0]; header[7] = header[7] % 64 + 1
    let raw = Array(bytes[13...])
    var compressedLength = compressBound(uLong(raw.count))
    var compressed = [UInt8](repeating: 0, count: Int(compressedLength))
    guard compress2(&compressed, &compressedLength, raw, uLong(raw.count), 6) == Z_OK else { return nil }
    return [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A] + chunk("IHDR", header)
        + chunk("IDAT", Array(compressed.prefix(Int(compressedLength)))) + chunk("IEND", [])
}

func fuzzPNG(_ bytes: [UInt8]) {
    for variant in [bytes, repairingCRCs(bytes), synthesizedPNG(bytes)].compactMap({ $0 }) {
        if let image = total({ try ImageFile.png(variant, path: "fuzz-input") }) { checkImage(image) }
    }
}

func fuzzPGM(_ bytes: [UInt8]) {
    if let image = total({ try ImageFile.pgm(bytes, path: "fuzz-input") }) { checkImage(image) }
    // And through the dispatch on the magic bytes.
    if let image = total({ try ImageFile.parse(bytes: bytes, path: "fuzz-input") }) { checkImage(image) }
}

func fuzzJPEG(_ bytes: [UInt8]) {
    if let image = total({ try ImageFile.jpeg(bytes, path: "fuzz-input") }) { checkImage(image) }
}

func fuzzConfiguration(_ bytes: [UInt8]) {
    guard let configuration = total({ try TrainingConfiguration.parse(Data(bytes), path: "fuzz-input") }) else { return }
    // What was read is in range, and writes back to a config.json that reads back the same.
    guard let json = try? configuration.prettyJSON(),
          let again = try? TrainingConfiguration.parse(json, path: "fuzz-input") else {
        preconditionFailure("a configuration that read does not read back after writing")
    }
    precondition(again == configuration, "\(again) read back from \(configuration)")
}

func fuzzFitState(_ bytes: [UInt8]) {
    let json = String(decoding: bytes, as: UTF8.self)
    guard let state = total({ try FitState.decode(json: json, source: "fuzz-input", what: "the state") }) else { return }
    precondition(state.outOfRange == nil)
    // The checkpoint writer's encoding of it reads back the same (NaN is refused, so == holds).
    guard let written = try? JSONEncoder.sorted.encode(state),
          let again = try? FitState.decode(json: String(decoding: written, as: UTF8.self), source: "fuzz-input", what: "the state") else {
        preconditionFailure("a fit state that read does not read back after writing")
    }
    precondition(again == state, "\(again) read back from \(state)")
}

let targets: [String: ([UInt8]) -> Void] = [
    "safetensors": fuzzSafeTensors, "idx": fuzzIDX, "cifar": fuzzCIFAR, "png": fuzzPNG, "pgm": fuzzPGM,
    "jpeg": fuzzJPEG, "config": fuzzConfiguration, "fitstate": fuzzFitState,
]

/// The target this binary runs: KILN_FUZZ_TARGET, else its name after `fuzz-`.
let selectedTarget: ([UInt8]) -> Void = {
    let name = ProcessInfo.processInfo.environment["KILN_FUZZ_TARGET"]
        ?? String((CommandLine.arguments.first ?? "").split(separator: "/").last ?? "").replacingOccurrences(of: "fuzz-", with: "")
    guard let target = targets[name] else {
        fatalError("no fuzz target '\(name)'; run as fuzz-NAME or set KILN_FUZZ_TARGET to one of \(targets.keys.sorted())")
    }
    return target
}()

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    selectedTarget(Array(UnsafeBufferPointer(start: data, count: size)))
    return 0
}
