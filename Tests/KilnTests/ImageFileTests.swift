import Foundation
import XCTest
@testable import Kiln

final class ImageFileTests: XCTestCase {
    private func write(_ bytes: [UInt8], _ name: String) throws -> URL {
        let url = FileManager.default.temporaryDirectory.appending(path: "kiln-image-\(UUID().uuidString)-\(name)")
        try Data(bytes).write(to: url)
        return url
    }

    /// A PNG built by hand: a zlib stream of stored (uncompressed) deflate blocks, CRCs computed.
    private func png(width: Int, height: Int, colourType: UInt8, rows: [[UInt8]]) -> [UInt8] {
        pngFile(width: width, height: height, colourType: colourType, rows: rows)
    }

    func testPNGFiltersAndChannelsDecode() throws {
        // 2×2 RGB. Row 0 with the Sub filter, row 1 with Paeth.
        let pixels: [[UInt8]] = [[10, 20, 30, 40, 60, 80], [50, 50, 50, 200, 100, 0]]
        let sub: [UInt8] = [1, 10, 20, 30, 30, 40, 50]  // each byte minus the one a pixel to the left
        var paeth: [UInt8] = [4]
        for i in 0..<6 {
            let a = i >= 3 ? Int(pixels[1][i - 3]) : 0, b = Int(pixels[0][i]), c = i >= 3 ? Int(pixels[0][i - 3]) : 0
            let p = a + b - c, (pa, pb, pc) = (abs(p - a), abs(p - b), abs(p - c))
            let predictor = pa <= pb && pa <= pc ? a : (pb <= pc ? b : c)
            paeth.append(UInt8((Int(pixels[1][i]) - predictor) & 0xFF))
        }
        let image = try ImageFile.read(write(png(width: 2, height: 2, colourType: 2, rows: [sub, paeth]), "rgb.png"))
        XCTAssertEqual([image.channels, image.height, image.width], [3, 2, 2])
        // Planar: red of the four pixels, then green, then blue.
        XCTAssertEqual(image.pixels.map { ($0 * 255).rounded() }, [10, 40, 50, 200, 20, 60, 50, 100, 30, 80, 50, 0])
        let grey = image.converted(toChannels: 1)
        XCTAssertEqual(grey.pixels[2], 50.0 / 255, accuracy: 1e-6)
    }

    func testPGMAndBadFiles() throws {
        let pgm = try ImageFile.read(write(Array("P5\n# a comment\n3 1\n255\n".utf8) + [0, 128, 255], "a.pgm"))
        XCTAssertEqual(pgm.pixels, [0, 128.0 / 255, 1])
        XCTAssertThrowsError(try ImageFile.read(write(Array("P5\n3 2\n255\n".utf8) + [1, 2], "short.pgm"))) { error in
            XCTAssertTrue("\(error)".contains("short.pgm") && "\(error)".contains("truncated"), "\(error)")
        }
        XCTAssertThrowsError(try ImageFile.read(write([1, 2, 3], "x.bmp"))) { error in
            XCTAssertTrue("\(error)".contains("x.bmp"), "\(error)")
        }
    }
}
