import Foundation
import XCTest
@testable import KilnInterop

/// TFRecord framing and its checksum, against published values and by reading back what was written.
final class TFRecordTests: XCTestCase {
    /// CRC-32C's check value (RFC 3720, appendix B.4) and the iSCSI test vectors of 32 zeros and 32 0xFF bytes.
    func testCRC32CMatchesItsPublishedCheckValues() {
        XCTAssertEqual(TFRecord.crc32c(Array("123456789".utf8)), 0xE306_9283)
        XCTAssertEqual(TFRecord.crc32c([UInt8](repeating: 0, count: 32)), 0x8A91_36AA)
        XCTAssertEqual(TFRecord.crc32c([UInt8](repeating: 0xFF, count: 32)), 0x62A8_AB43)
    }

    func testFramedRecordsReadBackAndADamagedByteIsCaught() throws {
        let payloads: [[UInt8]] = [[], Array("brain.Event:2".utf8), (0..<300).map { UInt8($0 % 251) }]
        let file = payloads.flatMap(TFRecord.frame)
        XCTAssertEqual(file.count, payloads.map { $0.count + 16 }.reduce(0, +))
        XCTAssertEqual(try TFRecord.records(in: file, source: "events").map { $0 }, payloads)
        var damaged = file
        damaged[16 + 12 + 3] ^= 0x01
        XCTAssertThrowsError(try TFRecord.records(in: damaged, source: "events")) { error in
            XCTAssertTrue("\(error)".contains("record 1's data fails its checksum"), "\(error)")
        }
        XCTAssertThrowsError(try TFRecord.records(in: Array(file.dropLast(2)), source: "events")) { error in
            XCTAssertTrue("\(error)".contains("ends inside record 2"), "\(error)")
        }
    }
}
