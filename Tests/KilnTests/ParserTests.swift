import Foundation
import XCTest
@testable import Kiln

// Malformed inputs for every file parser: each must raise `KilnError.corruptFile` naming the file and the
// problem, never trap. RELIABILITY.md lists them with the messages.

/// CRC-32 (ISO 3309, as PNG and gzip use it).
func crc32Checksum(_ bytes: [UInt8]) -> UInt32 {
    var crc: UInt32 = 0xFFFF_FFFF
    for byte in bytes {
        crc ^= UInt32(byte)
        for _ in 0..<8 { crc = crc & 1 != 0 ? (crc >> 1) ^ 0xEDB8_8320 : crc >> 1 }
    }
    return ~crc
}

func bigEndian32(_ value: Int) -> [UInt8] { withUnsafeBytes(of: UInt32(truncatingIfNeeded: value).bigEndian, Array.init) }
func littleEndian32(_ value: Int) -> [UInt8] { withUnsafeBytes(of: UInt32(truncatingIfNeeded: value).littleEndian, Array.init) }

/// A PNG chunk with its CRC (or `crc` in its place).
func pngChunk(_ type: String, _ data: [UInt8], crc: UInt32? = nil) -> [UInt8] {
    bigEndian32(data.count) + Array(type.utf8) + data + bigEndian32(Int(crc ?? crc32Checksum(Array(type.utf8) + data)))
}

/// Stored (uncompressed) deflate blocks of `raw`.
func storedDeflate(_ raw: [UInt8]) -> [UInt8] {
    var out: [UInt8] = [], at = 0
    repeat {
        let length = min(65535, raw.count - at), last: UInt8 = at + length == raw.count ? 1 : 0
        out += [last, UInt8(length & 0xFF), UInt8(length >> 8), UInt8(~length & 0xFF), UInt8((~length >> 8) & 0xFF)]
        out += raw[at..<(at + length)]
        at += length
    } while at < raw.count
    return out
}

/// A zlib stream (RFC 1950) of stored blocks.
func zlibStream(_ raw: [UInt8]) -> [UInt8] {
    var (a, b) = (1, 0)
    for byte in raw { a = (a + Int(byte)) % 65521; b = (b + a) % 65521 }
    return [0x78, 0x01] + storedDeflate(raw) + bigEndian32(b << 16 | a)
}

/// A gzip member (RFC 1952) of stored blocks.
func gzipMember(_ raw: [UInt8]) -> [UInt8] {
    [0x1F, 0x8B, 8, 0, 0, 0, 0, 0, 0, 0xFF] + storedDeflate(raw) + littleEndian32(Int(crc32Checksum(raw))) + littleEndian32(raw.count)
}

let pngSignature: [UInt8] = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]

func pngIHDR(width: Int, height: Int, depth: UInt8 = 8, colourType: UInt8, interlace: UInt8 = 0) -> [UInt8] {
    pngChunk("IHDR", bigEndian32(width) + bigEndian32(height) + [depth, colourType, 0, 0, interlace])
}

/// A PNG of the given filtered rows (each a filter byte and the row's bytes), CRCs computed.
func pngFile(width: Int, height: Int, colourType: UInt8, rows: [[UInt8]]) -> [UInt8] {
    pngSignature + pngIHDR(width: width, height: height, colourType: colourType)
        + pngChunk("IDAT", zlibStream(rows.flatMap { $0 })) + pngChunk("IEND", [])
}

/// A safetensors file from a header's JSON text and a data buffer.
func safetensorsFile(_ json: String, data: [UInt8]) -> [UInt8] {
    withUnsafeBytes(of: UInt64(json.utf8.count).littleEndian, Array.init) + Array(json.utf8) + data
}

final class ParserTests: XCTestCase {
    /// `body` raises `corruptFile` for `path` whose reason contains every one of `fragments`.
    private func assertCorrupt<T>(_ path: String, _ fragments: String..., file: StaticString = #filePath, line: UInt = #line,
                                  _ body: () throws -> T) {
        do {
            let value = try body()
            XCTFail("\(path): expected corruptFile containing \(fragments), got \(value)", file: file, line: line)
        } catch let KilnError.corruptFile(errorPath, reason) {
            XCTAssertEqual(errorPath, path, file: file, line: line)
            for fragment in fragments {
                XCTAssertTrue(reason.contains(fragment), "\(path): '\(reason)' lacks '\(fragment)'", file: file, line: line)
            }
        } catch {
            XCTFail("\(path): expected corruptFile, got \(error)", file: file, line: line)
        }
    }

    // MARK: safetensors

    private func tensors(_ json: String, data: [UInt8] = [], _ fragments: String..., line: UInt = #line) {
        let path = "case-\(line).safetensors"
        do {
            _ = try SafeTensors.parse(bytes: safetensorsFile(json, data: data), path: path)
            XCTFail("\(path): expected an error containing \(fragments)", line: line)
        } catch let KilnError.corruptFile(errorPath, reason) {
            XCTAssertEqual(errorPath, path, line: line)
            for fragment in fragments { XCTAssertTrue(reason.contains(fragment), "'\(reason)' lacks '\(fragment)'", line: line) }
        } catch {
            XCTFail("\(path): \(error)", line: line)
        }
    }

    func testSafeTensorsSizesThatOverflowAreErrors() {
        tensors(#"{"w":{"dtype":"F32","shape":[4294967296,4294967296,4],"data_offsets":[0,0]}}"#, "tensor w", "more bytes than an Int counts")
        tensors(#"{"w":{"dtype":"I64","shape":[9223372036854775807,2],"data_offsets":[0,0]}}"#, "more bytes than an Int counts")
        tensors(#"{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,18446744073709551615]}}"#, data: [0, 0, 0, 0],
                "18446744073709551615, not a non-negative integer")
        tensors(#"{"w":{"dtype":"F32","shape":[1],"data_offsets":[9223372036854775800,9223372036854775807]}}"#, data: [0, 0, 0, 0],
                "truncated", "[9223372036854775800, 9223372036854775807)", "4 bytes")
        tensors(#"{"w":{"dtype":"F32","shape":[100000000000000000000],"data_offsets":[0,4]}}"#, data: [0, 0, 0, 0], "shape holds 100000000000000000000")
    }

    func testSafeTensorsOverlapsHolesAndSizeMismatchesAreErrors() {
        let buffer = [UInt8](repeating: 0, count: 128)
        tensors(#"{"conv1.weight":{"dtype":"F32","shape":[24],"data_offsets":[0,96]},"fc.bias":{"dtype":"F32","shape":[16],"data_offsets":[64,128]}}"#,
                data: buffer, "tensor fc.bias: data_offsets [64, 128) overlap conv1.weight's [0, 96)")
        // Two names for the same bytes.
        tensors(#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"I64","shape":[],"data_offsets":[0,8]}}"#,
                data: [UInt8](repeating: 0, count: 8), "tensor b: data_offsets [0, 8) overlap a's [0, 8)")
        tensors(#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[16,24]}}"#,
                data: [UInt8](repeating: 0, count: 24), "bytes [8, 16) of the data buffer belong to no tensor", "before b")
        tensors(#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#, data: [UInt8](repeating: 0, count: 12),
                "bytes [8, 12) of the data buffer belong to no tensor", "4 bytes after the last one")
        tensors(#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[4,8]}}"#, data: [UInt8](repeating: 0, count: 8), "needs 8 bytes", "hold 4")
        tensors(#"{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}"#, data: [UInt8](repeating: 0, count: 8), "shape [3] of F32 needs 12 bytes")
        tensors(#"{"a":{"dtype":"F32","shape":[0],"data_offsets":[8,0]}}"#, data: [UInt8](repeating: 0, count: 8), "[8, 0) end before they begin")
        tensors(#"{}"#, data: [1, 2, 3], "bytes [0, 3) of the data buffer belong to no tensor")
    }

    func testSafeTensorsHeaderRulesAreEnforced() {
        tensors(#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#,
                data: [UInt8](repeating: 0, count: 8), "tensor a appears twice")
        tensors(#"{"a":{"dtype":"F32","dtype":"I64","shape":[1],"data_offsets":[0,4]}}"#, data: [0, 0, 0, 0], "dtype appears twice")
        tensors(#"{"a":{"dtype":"F33","shape":[1],"data_offsets":[0,4]}}"#, data: [0, 0, 0, 0], #"dtype "F33", which the format does not define"#)
        tensors(#"{"a":{"dtype":"I32","shape":[1],"data_offsets":[0,4]}}"#, data: [0, 0, 0, 0], "dtype I32; Kiln reads F32, F16, BF16, F64 and I64")
        tensors(#"{"a":{"dtype":7,"shape":[1],"data_offsets":[0,4]}}"#, data: [0, 0, 0, 0], "dtype is not a string")
        tensors(#"{"a":{"shape":[1],"data_offsets":[0,4]}}"#, data: [0, 0, 0, 0], "tensor a lacks dtype")
        tensors(#"{"a":{"dtype":"F32","data_offsets":[0,4]}}"#, data: [0, 0, 0, 0], "tensor a lacks shape")
        tensors(#"{"a":{"dtype":"F32","shape":[1]}}"#, data: [0, 0, 0, 0], "tensor a lacks data_offsets")
        tensors(#"{"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}}"#, data: [0, 0, 0, 0], "shape holds -1, not a non-negative integer")
        tensors(#"{"a":{"dtype":"F32","shape":[1.5],"data_offsets":[0,4]}}"#, data: [0, 0, 0, 0], "shape holds 1.5")
        tensors(#"{"a":{"dtype":"F32","shape":[true],"data_offsets":[0,4]}}"#, data: [0, 0, 0, 0], "shape holds true")
        tensors(#"{"a":{"dtype":"F32","shape":1,"data_offsets":[0,4]}}"#, data: [0, 0, 0, 0], "shape is not an array")
        tensors(#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4,8]}}"#, data: [0, 0, 0, 0], "data_offsets has 3 numbers, not 2")
        tensors(#"{"a":[1,2]}"#, "tensor a is an array, not an object")
        tensors(#"{"__metadata__":{"epoch":3}}"#, "__metadata__ epoch is a number, not a string")
        tensors(#"{"__metadata__":["x"]}"#, "__metadata__ is an array, not an object of strings")
        tensors(#"{"__metadata__":{"a":"1","a":"2"}}"#, "__metadata__ a appears twice")
        tensors(#"[1,2,3]"#, "the header is JSON but not a JSON object")
        tensors(#"{"a":1} x"#, "not valid JSON", "unexpected 'x' after the JSON value at header byte 8")
        tensors(#"{"a":"\x"}"#, "unknown escape")
        tensors(#"{"a":"\ud800"}"#, "lone UTF-16 high surrogate")
        tensors("{\"a\":\"\u{1}\"}", "control character")
        tensors(#"{"a":01}"#, "not valid JSON")
        tensors(#"{"a":"#, "not valid JSON", "unexpected end of the header")
        tensors(String(repeating: "[", count: 100_000), "nested deeper than 64 levels")
        let invalid = withUnsafeBytes(of: UInt64(8).littleEndian, Array.init) + [0x7B, 0x22, 0xC3, 0x28, 0x22, 0x3A, 0x31, 0x7D]
        assertCorrupt("bad-utf8.safetensors", "not UTF-8") { try SafeTensors.parse(bytes: invalid, path: "bad-utf8.safetensors") }
        let huge = withUnsafeBytes(of: UInt64(100_000_001).littleEndian, Array.init) + [0x7B, 0x7D]
        assertCorrupt("huge.safetensors", "100000001 bytes, more than the format's limit of 100000000") { try SafeTensors.parse(bytes: huge, path: "huge.safetensors") }
        let maximal = withUnsafeBytes(of: UInt64.max.littleEndian, Array.init)
        assertCorrupt("max.safetensors", "more than the format's limit") { try SafeTensors.parse(bytes: maximal, path: "max.safetensors") }
    }

    func testSafeTensorsCutShortOrGarbled() throws {
        var file = SafeTensors()
        file.set("w", floats: [Float](repeating: 1, count: 100), shape: [10, 10])
        let bytes = try file.serialized()
        let headerLength = bytes.count - 8 - 400
        assertCorrupt("cut.safetensors", "truncated: tensor w has data_offsets [0, 400) but the data buffer has 390 bytes") {
            try SafeTensors.parse(bytes: Array(bytes.dropLast(10)), path: "cut.safetensors")
        }
        assertCorrupt("short.safetensors", "3 bytes, shorter than the 8-byte header length") { try SafeTensors.parse(bytes: [1, 2, 3], path: "short.safetensors") }
        assertCorrupt("long.safetensors", "the header claims 65535 bytes but the file has \(headerLength + 400) after the length") {
            try SafeTensors.parse(bytes: [255, 255, 0, 0, 0, 0, 0, 0] + bytes.dropFirst(8), path: "long.safetensors")
        }
        assertCorrupt("garbage.safetensors", "the header is not valid JSON (unexpected 'A' at header byte 0)") {
            try SafeTensors.parse(bytes: Array(bytes.prefix(8)) + [UInt8](repeating: 0x41, count: bytes.count - 8), path: "garbage.safetensors")
        }
    }

    func testGoodSafeTensorsStillRead() throws {
        // Padding spaces, escapes, an empty tensor, tensors listed out of offset order, metadata with JSON in it.
        let json = #"{"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]},"a":{"dtype":"I64","shape":[],"data_offsets":[0,8]},"#
            + #""empty":{"dtype":"F32","shape":[0,3],"data_offsets":[12,12]},"__metadata__":{"k\u00e9y\/":"{\"x\": [1, 2]}\n","emoji":"\ud83d\ude00"}}    "#
        let data = withUnsafeBytes(of: Int64(-3).littleEndian, Array.init) + withUnsafeBytes(of: Float(2.5).bitPattern.littleEndian, Array.init)
        let file = try SafeTensors.parse(bytes: safetensorsFile(json, data: data), path: "good.safetensors")
        XCTAssertEqual(file.names, ["a", "b", "empty"])
        XCTAssertEqual(file.floats("a"), [-3])
        XCTAssertEqual(file.floats("b"), [2.5])
        XCTAssertEqual(file["empty"]?.shape, [0, 3])
        XCTAssertEqual(file.metadata, ["kéy/": "{\"x\": [1, 2]}\n", "emoji": "😀"])
        XCTAssertNoThrow(try SafeTensors.parse(bytes: safetensorsFile("{}", data: []), path: "empty.safetensors"))
        // What Kiln writes reads back.
        var written = SafeTensors()
        written.set("w", floats: [1, 2, 3], shape: [3])
        written.metadata = ["config": #"{"a": "b\"c"}"#]
        let again = try SafeTensors.parse(bytes: written.serialized(), path: "w.safetensors")
        XCTAssertEqual(again.floats("w"), [1, 2, 3])
        XCTAssertEqual(again.metadata, written.metadata)
    }

    // MARK: IDX

    private func idx(_ bytes: [UInt8], rank: Int = 3) throws -> IDXFile {
        try IDXFile.parse(bytes: decompressedIfGzip(bytes, path: "f.idx"), path: "f.idx", expectedRank: rank)
    }

    func testIDXMalformedFilesAreErrors() throws {
        let header: [UInt8] = [0, 0, 8, 3]
        assertCorrupt("f.idx", "dimensions [4294967295, 4294967295, 4294967295] multiply beyond what an Int counts") {
            try idx(header + [UInt8](repeating: 0xFF, count: 12))
        }
        assertCorrupt("f.idx", "multiply beyond") { try idx(header + bigEndian32(0x7FFF_FFFF) + bigEndian32(0x7FFF_FFFF) + bigEndian32(4)) }
        assertCorrupt("f.idx", "truncated: 3 bytes, no IDX header") { try idx([0, 0, 8]) }
        assertCorrupt("f.idx", "bad magic 0x01000803", "two zero bytes") { try idx([1, 0, 8, 3] + [UInt8](repeating: 0, count: 12)) }
        assertCorrupt("f.idx", "type code 0xd (32-bit floats); Kiln reads unsigned bytes") { try idx([0, 0, 0x0D, 3] + [UInt8](repeating: 0, count: 12)) }
        assertCorrupt("f.idx", "type code 0x42 (not an IDX type)") { try idx([0, 0, 0x42, 3]) }
        assertCorrupt("f.idx", "rank 2, expected 3") { try idx([0, 0, 8, 2] + [UInt8](repeating: 0, count: 8)) }
        assertCorrupt("f.idx", "rank 3, expected 1 (labels)") { try idx(header, rank: 1) }
        assertCorrupt("f.idx", "truncated: the header needs 16 bytes, the file has 10") { try idx(header + [0, 0, 0, 1, 0, 0]) }
        let dims = bigEndian32(2) + bigEndian32(2) + bigEndian32(2)
        assertCorrupt("f.idx", "truncated: expected 24 bytes for dimensions [2, 2, 2], got 23") { try idx(header + dims + [UInt8](repeating: 7, count: 7)) }
        assertCorrupt("f.idx", "too long: expected 24 bytes") { try idx(header + dims + [UInt8](repeating: 7, count: 9)) }
        assertCorrupt("f.idx", "images of 0×5 pixels (rows is zero)") { try idx(header + bigEndian32(0) + bigEndian32(0) + bigEndian32(5)) }
        let good = header + dims + [UInt8](repeating: 7, count: 8)
        XCTAssertEqual(try idx(good).dimensions, [2, 2, 2])
        XCTAssertEqual(try idx(gzipMember(good)).bytes, [UInt8](repeating: 7, count: 8), "gzip")
        XCTAssertEqual(try idx(gzipMember(Array(good.prefix(10))) + gzipMember(Array(good.dropFirst(10)))).dimensions, [2, 2, 2], "two gzip members")
        let gz = gzipMember(good)
        assertCorrupt("f.idx", "truncated gzip data") { try idx(Array(gz.prefix(gz.count - 6))) }
        assertCorrupt("f.idx", "truncated gzip data") { try idx([0x1F, 0x8B]) }
        var badCRC = gz
        badCRC[badCRC.count - 8] ^= 1
        assertCorrupt("f.idx", "corrupt gzip data (incorrect data check)") { try idx(badCRC) }
        var badBlock = gz
        badBlock[10] = 0x07  // reserved block type
        assertCorrupt("f.idx", "corrupt gzip data (invalid block type)") { try idx(badBlock) }
        assertCorrupt("f.idx", "3 bytes of trailing data after the end of the gzip stream") { try idx(gz + [1, 2, 3]) }
        assertCorrupt("f.idx", "corrupt gzip data (unknown compression method)") { try idx([0x1F, 0x8B, 9, 0, 0, 0, 0, 0, 0, 0xFF, 1, 2, 3, 4]) }
    }

    func testIDXFilesThroughTheURLAPI() throws {
        let directory = FileManager.default.temporaryDirectory.appending(path: "kiln-parsers-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        try Data([0, 0, 8, 3] + [UInt8](repeating: 0xFF, count: 12)).write(to: directory.appending(path: "train-images-idx3-ubyte"))
        try Data([0, 0, 8, 1] + bigEndian32(1) + [0]).write(to: directory.appending(path: "train-labels-idx1-ubyte"))
        assertCorrupt(directory.appending(path: "train-images-idx3-ubyte").path, "multiply beyond") {
            try Dataset.load("mnist:\(directory.path)", split: .train)
        }
        try Data(gzipMember([0, 0, 8, 3]).dropLast(3)).write(to: directory.appending(path: "train-images-idx3-ubyte"))
        assertCorrupt(directory.appending(path: "train-images-idx3-ubyte").path, "gzip") {
            try Dataset.load("mnist:\(directory.path)", split: .train)
        }
    }

    func testImagesAndLabelsMustAgree() throws {
        let directory = FileManager.default.temporaryDirectory.appending(path: "kiln-parsers-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let labels = directory.appending(path: "train-labels-idx1-ubyte")
        try Data([0, 0, 8, 3] + bigEndian32(2) + bigEndian32(1) + bigEndian32(1) + [0, 0]).write(to: directory.appending(path: "train-images-idx3-ubyte"))
        try Data([0, 0, 8, 1] + bigEndian32(3) + [0, 1, 2]).write(to: labels)
        assertCorrupt(labels.path, "3 labels for 2 images in train-images-idx3-ubyte") { try Dataset.load("mnist:\(directory.path)", split: .train) }
        try Data([0, 0, 8, 1] + bigEndian32(2) + [0, 10]).write(to: labels)
        assertCorrupt(labels.path, "label 10 is outside 0..<10") { try Dataset.load("mnist:\(directory.path)", split: .train) }
        try FileManager.default.removeItem(at: labels)
        assertCorrupt(labels.path, "missing (also looked for .gz)") { try Dataset.load("mnist:\(directory.path)", split: .train) }
        XCTAssertNoThrow(try { try Data([0, 0, 8, 1] + bigEndian32(2) + [0, 9]).write(to: labels) }())
        XCTAssertEqual(try Dataset.load("mnist:\(directory.path)", split: .train).labels, [0, 9])
    }

    // MARK: CIFAR-10

    func testCIFARMalformedBatchesAreErrors() throws {
        assertCorrupt("b.bin", "empty") { try Dataset.cifar10Batch(bytes: [], path: "b.bin") }
        assertCorrupt("b.bin", "3072 bytes is not a whole number of 3,073-byte records (0 records and 3072 bytes over)") {
            try Dataset.cifar10Batch(bytes: [UInt8](repeating: 0, count: 3072), path: "b.bin")
        }
        assertCorrupt("b.bin", "(1 records and 1 bytes over)") { try Dataset.cifar10Batch(bytes: [UInt8](repeating: 0, count: 3074), path: "b.bin") }
        var records = [UInt8](repeating: 1, count: 2 * 3073)
        records[3073] = 10
        assertCorrupt("b.bin", "label 10 in record 1 (at byte 3073) is outside 0..<10") { try Dataset.cifar10Batch(bytes: records, path: "b.bin") }
        records[3073] = 9
        let batch = try Dataset.cifar10Batch(bytes: records, path: "b.bin")
        XCTAssertEqual(batch.labels, [1, 9])
        XCTAssertEqual(batch.pixels.count, 2 * 3072)
        XCTAssertEqual(try Dataset.cifar10Batch(bytes: decompressedIfGzip(gzipMember(records), path: "b.bin"), path: "b.bin").labels, [1, 9])
    }

    // MARK: PNG

    private func image(_ bytes: [UInt8]) throws -> ImageFile { try ImageFile.parse(bytes: bytes, path: "i.png") }

    func testPNGSizesThatOverflowAreErrors() {
        let data = pngChunk("IDAT", zlibStream([0, 0])) + pngChunk("IEND", [])
        assertCorrupt("i.png", "a 2147483647×2147483647 image of 4 channels has more bytes than an Int counts") {
            try image(pngSignature + pngIHDR(width: 0x7FFF_FFFF, height: 0x7FFF_FFFF, colourType: 6) + data)
        }
        assertCorrupt("i.png", "IHDR gives a 2147483648×1 image") { try image(pngSignature + pngIHDR(width: 0x8000_0000, height: 1, colourType: 0) + data) }
        assertCorrupt("i.png", "IHDR gives a 0×1 image") { try image(pngSignature + pngIHDR(width: 0, height: 1, colourType: 0) + data) }
        // A huge image whose data is short: found short, nothing allocated for the size it claims.
        assertCorrupt("i.png", "image data is shorter than 100000×100000 needs: 2 of 10000100000 bytes") {
            try image(pngSignature + pngIHDR(width: 100_000, height: 100_000, colourType: 0) + data)
        }
    }

    func testPNGMalformedChunksAreErrors() {
        let ihdr = pngIHDR(width: 1, height: 1, colourType: 0)
        let idat = pngChunk("IDAT", zlibStream([0, 42])), iend = pngChunk("IEND", [])
        XCTAssertEqual(try image(pngSignature + ihdr + idat + iend).pixels, [42.0 / 255])
        assertCorrupt("i.png", "bad signature") { try image([0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x0A] + ihdr + idat + iend) }
        assertCorrupt("i.png", "IDAT chunk at byte 8 claims 4294967280 bytes, more than PNG's limit") {
            try image(pngSignature + [0xFF, 0xFF, 0xFF, 0xF0] + Array("IDAT".utf8) + [0, 0, 0, 0])
        }
        assertCorrupt("i.png", "truncated IDAT chunk at byte 33: it claims 1000 bytes") {
            try image(pngSignature + ihdr + bigEndian32(1000) + Array("IDAT".utf8) + [1, 2, 3])
        }
        assertCorrupt("i.png", "truncated: 3 bytes at byte 33, too few for a chunk header") { try image(pngSignature + ihdr + [0, 0, 0]) }
        assertCorrupt("i.png", "truncated: the file ends before the IEND chunk") { try image(pngSignature + ihdr + idat) }
        assertCorrupt("i.png", "IDAT chunk at byte 33: CRC 0x00000000 does not match its contents") {
            try image(pngSignature + ihdr + pngChunk("IDAT", zlibStream([0, 42]), crc: 0) + iend)
        }
        assertCorrupt("i.png", "type bytes 49444131, not four letters") { try image(pngSignature + ihdr + pngChunk("IDA1", []) + iend) }
        assertCorrupt("i.png", "the first chunk is IDAT, not IHDR") { try image(pngSignature + idat + iend) }
        assertCorrupt("i.png", "a second IHDR chunk at byte 33") { try image(pngSignature + ihdr + ihdr + idat + iend) }
        assertCorrupt("i.png", "IHDR has 12 bytes, not 13") { try image(pngSignature + pngChunk("IHDR", [UInt8](repeating: 1, count: 12)) + idat + iend) }
        assertCorrupt("i.png", "no IDAT chunk") { try image(pngSignature + ihdr + iend) }
        assertCorrupt("i.png", "IEND has 1 bytes, not 0") { try image(pngSignature + ihdr + idat + pngChunk("IEND", [0])) }
        assertCorrupt("i.png", "unknown critical chunk ABCD at byte 33") { try image(pngSignature + ihdr + pngChunk("ABCD", []) + idat + iend) }
        assertCorrupt("i.png", "does not follow the other IDAT chunks") {
            let stream = zlibStream([0, 42])
            return try image(pngSignature + ihdr + pngChunk("IDAT", Array(stream.prefix(4))) + pngChunk("tEXt", Array("a\u{0}b".utf8))
                             + pngChunk("IDAT", Array(stream.dropFirst(4))) + iend)
        }
        // Ancillary chunks are skipped, the stream may be split over IDAT chunks, bytes after IEND are not read.
        let stream = zlibStream([0, 42])
        XCTAssertNoThrow(try image(pngSignature + ihdr + pngChunk("tEXt", Array("a\u{0}b".utf8)) + pngChunk("IDAT", Array(stream.prefix(3)))
                                   + pngChunk("IDAT", Array(stream.dropFirst(3))) + iend + [1, 2, 3]))
    }

    func testPNGHeaderFieldsAndStreamsAreChecked() {
        let idat = pngChunk("IDAT", zlibStream([0, 42])), iend = pngChunk("IEND", [])
        func header(depth: UInt8 = 8, colour: UInt8 = 0, compression: UInt8 = 0, filter: UInt8 = 0, interlace: UInt8 = 0) -> [UInt8] {
            pngSignature + pngChunk("IHDR", bigEndian32(1) + bigEndian32(1) + [depth, colour, compression, filter, interlace])
        }
        assertCorrupt("i.png", "colour type 3 (palette) is not read") { try image(header(colour: 3) + idat + iend) }
        assertCorrupt("i.png", "bit depth 16 (RGB) is not read") { try image(header(depth: 16, colour: 2) + idat + iend) }
        assertCorrupt("i.png", "bit depth 1 (grey) is not read") { try image(header(depth: 1) + idat + iend) }
        assertCorrupt("i.png", "colour type 5, which PNG does not define") { try image(header(colour: 5) + idat + iend) }
        assertCorrupt("i.png", "bit depth 3, which PNG does not allow for colour type 0 (grey)") { try image(header(depth: 3) + idat + iend) }
        assertCorrupt("i.png", "bit depth 4, which PNG does not allow for colour type 6 (RGBA)") { try image(header(depth: 4, colour: 6) + idat + iend) }
        assertCorrupt("i.png", "compression method 1") { try image(header(compression: 1) + idat + iend) }
        assertCorrupt("i.png", "filter method 2") { try image(header(filter: 2) + idat + iend) }
        assertCorrupt("i.png", "interlace method 2") { try image(header(interlace: 2) + idat + iend) }
        assertCorrupt("i.png", "Adam7-interlaced images are not read") { try image(header(interlace: 1) + idat + iend) }
        let ok = header()
        assertCorrupt("i.png", "corrupt zlib data (incorrect header check)") { try image(ok + pngChunk("IDAT", [1, 2, 3, 4]) + iend) }
        assertCorrupt("i.png", "truncated zlib data") { try image(ok + pngChunk("IDAT", Array(zlibStream([0, 42]).dropLast(2))) + iend) }
        var badAdler = zlibStream([0, 42])
        badAdler[badAdler.count - 1] ^= 1
        assertCorrupt("i.png", "corrupt zlib data (incorrect data check)") { try image(ok + pngChunk("IDAT", badAdler) + iend) }
        assertCorrupt("i.png", "2 bytes of trailing data after the end of the zlib stream") { try image(ok + pngChunk("IDAT", zlibStream([0, 42]) + [0, 0]) + iend) }
        assertCorrupt("i.png", "corrupt zlib data (incorrect header check)") { try image(ok + pngChunk("IDAT", gzipMember([0, 42])) + iend) }
        assertCorrupt("i.png", "image data is shorter than 1×1 needs: 1 of 2 bytes") { try image(ok + pngChunk("IDAT", zlibStream([0])) + iend) }
        assertCorrupt("i.png", "the zlib data inflates to more than the expected 2 bytes") { try image(ok + pngChunk("IDAT", zlibStream([0, 42, 43])) + iend) }
        assertCorrupt("i.png", "unknown row filter 5 in row 0") { try image(ok + pngChunk("IDAT", zlibStream([5, 42])) + iend) }
    }

    // MARK: PGM

    private func pgm(_ header: String, _ pixels: [UInt8] = []) throws -> ImageFile {
        try ImageFile.parse(bytes: Array(header.utf8) + pixels, path: "i.pgm")
    }

    func testPGMMalformedFilesAreErrors() throws {
        assertCorrupt("i.pgm", "a 99999999999×99999999999 image has more bytes than an Int counts") { try pgm("P5 99999999999 99999999999 255\n", [0]) }
        assertCorrupt("i.pgm", "a 4294967296×4294967296 image has more bytes") { try pgm("P5 4294967296 4294967296 65535\n", [0]) }
        assertCorrupt("i.pgm", "the width has more digits than an Int holds") { try pgm("P5 " + String(repeating: "9", count: 40) + " 1 255\n") }
        assertCorrupt("i.pgm", "maxval 0 is outside 1...65535") { try pgm("P5 1 1 0\n", [0]) }
        assertCorrupt("i.pgm", "maxval 65536 is outside 1...65535") { try pgm("P5 1 1 65536\n", [0, 0]) }
        assertCorrupt("i.pgm", "a 0×1 image") { try pgm("P5 0 1 255\n") }
        assertCorrupt("i.pgm", "truncated header: the file ends before the maxval") { try pgm("P5 3 2") }
        assertCorrupt("i.pgm", "truncated header: the file ends before the height") { try pgm("P5 3 # a comment without an end") }
        assertCorrupt("i.pgm", "truncated header: nothing after P5") { try pgm("P5") }
        assertCorrupt("i.pgm", "'x' after P5 where whitespace belongs") { try pgm("P5x 1 1 255\n", [0]) }
        assertCorrupt("i.pgm", "'x' at byte 5 where the height belongs") { try pgm("P5 3 x 255\n") }
        assertCorrupt("i.pgm", "'-' at byte 3 where the width belongs") { try pgm("P5 -3 2 255\n") }
        assertCorrupt("i.pgm", "truncated: the file ends after the maxval") { try pgm("P5 1 1 255") }
        assertCorrupt("i.pgm", "'#' after the maxval where one whitespace byte belongs") { try pgm("P5 1 1 255#\n", [0]) }
        assertCorrupt("i.pgm", "truncated: 3×2 needs 6 pixel bytes, the file has 2 after the header") { try pgm("P5\n3 2\n255\n", [1, 2]) }
        assertCorrupt("i.pgm", "truncated: 2×1 needs 4 pixel bytes") { try pgm("P5 2 1 1000\n", [0, 1, 0]) }
        assertCorrupt("i.pgm", "pixel (1, 0) is 200, above the maxval 100") { try pgm("P5 2 1 100\n", [100, 200]) }
        assertCorrupt("i.pgm", "pixel (0, 0) is 1001, above the maxval 1000") { try pgm("P5 1 1 1000\n", [0x03, 0xE9]) }
        assertCorrupt("i.pgm", "not a PNG, binary PGM (P5) or JPEG image") { try pgm("P2 1 1 255\n0\n") }
        // Good ones: comments between tokens, 16-bit samples, bytes after the image.
        XCTAssertEqual(try pgm("P5 # c\n2 # d\n1\n# e\n100\n", [0, 100, 9, 9]).pixels, [0, 1])
        XCTAssertEqual(try pgm("P5 2 1 1000\n", [0x01, 0xF4, 0x03, 0xE8]).pixels, [0.5, 1])
    }

    func testImagesThroughTheURLAPI() throws {
        let url = FileManager.default.temporaryDirectory.appending(path: "kiln-parsers-\(UUID().uuidString)-big.pgm")
        try Data(Array("P5 99999999999 99999999999 255\n".utf8)).write(to: url)
        assertCorrupt(url.path, "more bytes than an Int counts") { try ImageFile.read(url) }
        assertCorrupt(url.deletingLastPathComponent().appending(path: "absent.png").path, "cannot be read") {
            try ImageFile.read(url.deletingLastPathComponent().appending(path: "absent.png"))
        }
    }
}
