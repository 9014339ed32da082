import Foundation
import XCTest
@testable import Kiln

/// Image folders (`folder:DIR`), resizing, the PNG writer, the image grid and JPEG decoding.
final class ImageFolderTests: XCTestCase {
    private static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appending(path: "Fixtures")

    private func temporaryFolder() throws -> URL {
        let folder = FileManager.default.temporaryDirectory.appending(path: "kiln-image-folder-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(at: folder) }
        return folder
    }

    /// An image whose values are distinct multiples of 1/255 (so that a PNG holds them exactly), from `seed`.
    private func image(channels: Int, height: Int, width: Int, seed: Int) -> ImageFile {
        let count = channels * height * width
        return ImageFile(channels: channels, height: height, width: width,
                         pixels: (0..<count).map { Float((seed * 37 + $0 * 11) % 256) / 255 })
    }

    /// Writes `image` as a PNG at `path` under `folder`, creating the folders between.
    @discardableResult
    private func put(_ image: ImageFile, _ path: String, in folder: URL) throws -> URL {
        let url = folder.appending(path: path)
        try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        try image.write(png: url)
        return url
    }

    private func assertCorrupt(_ path: String, contains text: String, _ body: () throws -> Any,
                               file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try body(), file: file, line: line) { error in
            guard case let KilnError.corruptFile(errorPath, reason) = error else {
                return XCTFail("expected corruptFile for \(path), got \(error)", file: file, line: line)
            }
            XCTAssertEqual(errorPath, path, file: file, line: line)
            XCTAssertTrue(reason.contains(text), "'\(reason)' does not say '\(text)'", file: file, line: line)
        }
    }

    private func assertInvalid(containing texts: [String], _ body: () throws -> Any, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try body(), file: file, line: line) { error in
            let message = "\(error)"
            for text in texts { XCTAssertTrue(message.contains(text), "'\(message)' does not say '\(text)'", file: file, line: line) }
        }
    }

    // MARK: PNG writer and grid

    func testPNGWriterRoundTripsThroughTheReaderForEveryChannelCount() throws {
        let folder = try temporaryFolder()
        for channels in 1...4 {
            let original = image(channels: channels, height: 5, width: 7, seed: channels)
            let url = try put(original, "image\(channels).png", in: folder)
            // The reader checks every chunk's CRC and the zlib stream, so this also checks what was written.
            XCTAssertEqual(try ImageFile.read(url), original, "\(channels) channels")
        }
    }

    func testPNGWriterClampsAndRounds() throws {
        let written = ImageFile(channels: 1, height: 1, width: 5, pixels: [-0.5, 2, .nan, 0.5, 100.4 / 255])
        let url = try put(written, "clamped.png", in: try temporaryFolder())
        XCTAssertEqual(try ImageFile.read(url).pixels, [0, 1, 0, 128 / 255, 100 / 255])
    }

    func testPillowReadsThePNGWriterOutput() throws {
        let check = Process()
        check.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        check.arguments = ["python3", "-c", "import PIL"]
        check.standardError = FileHandle.nullDevice
        guard (try? check.run()) != nil else { throw XCTSkip("no python3") }
        check.waitUntilExit()
        guard check.terminationStatus == 0 else { throw XCTSkip("Pillow is not installed (pip install pillow)") }

        let original = image(channels: 3, height: 3, width: 4, seed: 5)
        let url = try put(original, "pil.png", in: try temporaryFolder())
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", "-c", "import sys; from PIL import Image; im = Image.open(sys.argv[1]); im.load(); "
                             + "print(im.mode, im.width, im.height, ' '.join(map(str, im.tobytes())))", url.path]
        let pipe = Pipe()
        process.standardOutput = pipe
        try process.run()
        let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        XCTAssertEqual(process.terminationStatus, 0, output)
        let fields = output.split(whereSeparator: \.isWhitespace)
        XCTAssertEqual(fields.prefix(3).map(String.init), ["RGB", "4", "3"])
        // Pillow's bytes are HWC; the original is CHW.
        let plane = 12
        let expected = (0..<plane).flatMap { p in (0..<3).map { c in String(Int((original.pixels[c * plane + p] * 255).rounded())) } }
        XCTAssertEqual(fields.dropFirst(3).map(String.init), expected)
    }

    func testImageGridTilesImagesWithBordersAndClamps() throws {
        // Three 1-channel 2×3 images (H 2, W 3), two to a row, border 1: 2·(3+1)+1 = 9 wide, 2·(2+1)+1 = 7 high.
        let images: [Float] = (0..<3).flatMap { n in (0..<6).map { Float(n * 6 + $0) / 20 } }
        var withOutliers = images
        withOutliers[0] = -1
        withOutliers[1] = 5
        let grid = try ImageGrid.tile(withOutliers, shape: [3, 1, 2, 3], columns: 2, border: 1, borderValue: 0.25)
        XCTAssertEqual([grid.channels, grid.height, grid.width], [1, 7, 9])
        func at(_ x: Int, _ y: Int) -> Float { grid.pixels[y * 9 + x] }
        XCTAssertEqual(at(1, 1), 0)   // -1 clamped
        XCTAssertEqual(at(2, 1), 1)   // 5 clamped
        for n in 0..<3 {
            let left = 1 + (n % 2) * 4, top = 1 + (n / 2) * 3
            for y in 0..<2 { for x in 0..<3 where !(n == 0 && y == 0 && x < 2) {
                XCTAssertEqual(at(left + x, top + y), images[n * 6 + y * 3 + x], "image \(n) at (\(x), \(y))")
            } }
        }
        // Borders and the empty fourth cell.
        for x in 0..<9 { XCTAssertEqual(at(x, 0), 0.25); XCTAssertEqual(at(x, 3), 0.25); XCTAssertEqual(at(x, 6), 0.25) }
        for y in 0..<7 { XCTAssertEqual(at(0, y), 0.25); XCTAssertEqual(at(4, y), 0.25); XCTAssertEqual(at(8, y), 0.25) }
        XCTAssertEqual(at(5, 4), 0.25)
        XCTAssertThrowsError(try ImageGrid.tile(images, shape: [3, 1, 2, 3], columns: 0))
        XCTAssertThrowsError(try ImageGrid.tile(images, shape: [4, 1, 2, 3], columns: 2))
    }

    // MARK: Resizing

    func testBilinearResizeMatchesHandComputedValues() {
        // 2×2 → 4×4: output x samples the input at (x + 0.5)/2 − 0.5 = −0.25 (clamped to 0), 0.25, 0.75, 1.25
        // (the last column repeated), so the weights of the second column are 0, 0.25, 0.75, 1.
        let square = ImageFile(channels: 1, height: 2, width: 2, pixels: [0, 1, 2, 3])
        XCTAssertEqual(square.resized(width: 4, height: 4).pixels,
                       [0, 0.25, 0.75, 1, 0.5, 0.75, 1.25, 1.5, 1.5, 1.75, 2.25, 2.5, 2, 2.25, 2.75, 3])
        // Shrinking 3 → 2 samples at (x + 0.5)·1.5 − 0.5 = 0.25 and 1.75, without averaging; 4 → 2 at 0.5, 2.5.
        // Two channels, each on its own: [2, 1, 3] → [2, 1, 2] (H 1).
        let row = ImageFile(channels: 2, height: 1, width: 3, pixels: [0, 10, 20, 100, 80, 40])
        let shrunk = row.resized(width: 2, height: 1)
        XCTAssertEqual(shrunk.pixels, [2.5, 17.5, 95, 50])
        XCTAssertEqual(ImageFile(channels: 1, height: 1, width: 4, pixels: [0, 1, 2, 3]).resized(width: 2, height: 1).pixels, [0.5, 2.5])
        // Height and width apart: H 2, W 1 → H 3, W 2. Rows sample at (y + 0.5)·2/3 − 0.5 = −1/6 (clamped to 0),
        // 1/2 and 7/6 (past the last row: the last row); both columns repeat the one input column.
        let column = ImageFile(channels: 1, height: 2, width: 1, pixels: [0, 6]).resized(width: 2, height: 3)
        let rows: [Float] = [0, 3, 6]
        XCTAssertEqual([column.height, column.width], [3, 2])
        for (y, value) in rows.enumerated() {
            XCTAssertEqual(column.pixels[2 * y], value, accuracy: 1e-6)
            XCTAssertEqual(column.pixels[2 * y + 1], value, accuracy: 1e-6)
        }
    }

    // MARK: JPEG

    func testJPEGDecodesAsPillowDoes() throws {
        struct Decoded: Decodable { var width: Int, height: Int, channels: Int, hwc: [Int] }
        let answers = try JSONDecoder().decode([String: Decoded].self, from: Data(contentsOf: Self.fixtures.appending(path: "jpeg_decoded.json")))
        for name in ["colour.jpg", "grey.jpg"] {
            let expected = try XCTUnwrap(answers[name])
            let image = try ImageFile.read(Self.fixtures.appending(path: name))
            XCTAssertEqual([image.channels, image.height, image.width], [expected.channels, expected.height, expected.width], name)
            let plane = image.height * image.width
            var worst = 0
            for p in 0..<plane {
                for c in 0..<image.channels {
                    worst = Swift.max(worst, abs(Int((image.pixels[c * plane + p] * 255).rounded()) - expected.hwc[p * image.channels + c]))
                }
            }
            XCTAssertLessThanOrEqual(worst, 2, "\(name): a pixel differs from Pillow's by \(worst) levels")
        }
    }

    func testDamagedJPEGIsAnErrorNamingTheFile() throws {
        let folder = try temporaryFolder()
        let bytes = try Data(contentsOf: Self.fixtures.appending(path: "colour.jpg"))
        let truncated = folder.appending(path: "truncated.jpg")
        try bytes.prefix(bytes.count / 2).write(to: truncated)
        assertCorrupt(truncated.path, contains: "JPEG: ") { try ImageFile.read(truncated) }
        let garbage = folder.appending(path: "garbage.jpg")
        try Data([0xFF, 0xD8, 0xFF, 0xE0, 0, 3, 1, 2, 3, 4]).write(to: garbage)
        assertCorrupt(garbage.path, contains: "JPEG: ") { try ImageFile.read(garbage) }
        let cmyk = Self.fixtures.appending(path: "cmyk.jpg")
        assertCorrupt(cmyk.path, contains: "JPEG: CMYK JPEGs are not read") { try ImageFile.read(cmyk) }
        // 665 bytes whose header claims 65,286 × 32,261 pixels (found by the fuzzer): refused before allocating.
        let bomb = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .appending(path: "../Fuzz/corpus/jpeg/found-before-huge-dimensions").standardized
        assertCorrupt(bomb.path, contains: "JPEG: a 65286x32261 image is larger than the 67108864 pixels Kiln decodes") {
            try ImageFile.read(bomb)
        }
    }

    // MARK: Folders

    func testLabelsFollowFolderNamesInCodePointOrder() throws {
        let folder = try temporaryFolder()
        // Python's sorted puts "C" (0x43) before "a" and "b", and "a/z" before "a/deeper/..." files in its own folder.
        try put(image(channels: 1, height: 3, width: 4, seed: 1), "b/one.png", in: folder)
        try put(image(channels: 1, height: 3, width: 4, seed: 2), "a/z.png", in: folder)
        try put(image(channels: 1, height: 3, width: 4, seed: 3), "a/deeper/y.PNG", in: folder)
        try put(image(channels: 1, height: 3, width: 4, seed: 4), "C/x.png", in: folder)
        try put(image(channels: 1, height: 3, width: 4, seed: 5), ".hidden/x.png", in: folder)
        try Data("not an image".utf8).write(to: folder.appending(path: "b/notes.txt"))
        let data = try Dataset.load("folder:\(folder.path)", split: .train)
        XCTAssertEqual(data.classNames, ["C", "a", "b"])
        XCTAssertEqual(data.labels, [0, 1, 1, 2])
        XCTAssertEqual(data.imageShape, [1, 3, 4])
        // Within class a: its own files (z.png) before those of deeper/, as os.walk sorted lists them.
        let order = [4, 2, 3, 1].map { image(channels: 1, height: 3, width: 4, seed: $0).pixels }
        XCTAssertEqual(data.pixels, order.flatMap { $0 })
        XCTAssertEqual(data.convertedImages, 0)
    }

    func testMixedGreyAndColourBecomeRGBAndAreCounted() throws {
        let folder = try temporaryFolder()
        let grey = image(channels: 1, height: 2, width: 3, seed: 1), rgb = image(channels: 3, height: 2, width: 3, seed: 2)
        let rgba = image(channels: 4, height: 2, width: 3, seed: 3), greyAlpha = image(channels: 2, height: 2, width: 3, seed: 4)
        try put(grey, "cat/1.png", in: folder)
        try put(rgb, "cat/2.png", in: folder)
        try put(rgba, "dog/3.png", in: folder)
        try put(greyAlpha, "dog/4.png", in: folder)
        let data = try Dataset.load("folder:\(folder.path)", split: .train)
        XCTAssertEqual(data.imageShape, [3, 2, 3])
        XCTAssertEqual(data.convertedImages, 2, "the two grey images (alpha dropping is not a conversion)")
        let plane = 6
        func sample(_ index: Int) -> [Float] { Array(data.pixels[(index * 3 * plane)..<((index + 1) * 3 * plane)]) }
        XCTAssertEqual(sample(0), grey.pixels + grey.pixels + grey.pixels)
        XCTAssertEqual(sample(1), rgb.pixels)
        XCTAssertEqual(sample(2), Array(rgba.pixels[0..<(3 * plane)]))
        let greyOfAlpha = Array(greyAlpha.pixels[0..<plane])
        XCTAssertEqual(sample(3), greyOfAlpha + greyOfAlpha + greyOfAlpha)

        // All grey (one with alpha): one channel, nothing converted.
        let greyFolder = try temporaryFolder()
        try put(grey, "a/1.png", in: greyFolder)
        try put(greyAlpha, "b/2.png", in: greyFolder)
        let greyData = try Dataset.load("folder:\(greyFolder.path)", split: .train)
        XCTAssertEqual(greyData.imageShape, [1, 2, 3])
        XCTAssertEqual(greyData.convertedImages, 0)
        XCTAssertEqual(greyData.pixels, grey.pixels + greyOfAlpha)
    }

    func testImagesOfDifferentSizesNeedImageSizeAndAreResizedByIt() throws {
        let folder = try temporaryFolder()
        let small = image(channels: 3, height: 3, width: 5, seed: 1), large = image(channels: 3, height: 6, width: 4, seed: 2)
        let first = try put(small, "a/small.png", in: folder)
        let second = try put(large, "b/large.png", in: folder)
        assertInvalid(containing: [first.path, "5×3", second.path, "4×6", "--image-size"]) { try Dataset.load("folder:\(folder.path)", split: .train) }
        let data = try Dataset.load("folder:\(folder.path)", split: .train, imageSize: 4)
        XCTAssertEqual(data.imageShape, [3, 4, 4])
        XCTAssertEqual(data.pixels, small.resized(width: 4, height: 4).pixels + large.resized(width: 4, height: 4).pixels)
        // The JPEG fixture in a folder of PNGs: resized and decoded like any other.
        try FileManager.default.copyItem(at: Self.fixtures.appending(path: "colour.jpg"), to: folder.appending(path: "b/photo.jpg"))
        let withJPEG = try Dataset.load("folder:\(folder.path)", split: .train, imageSize: 4)
        XCTAssertEqual(withJPEG.labels, [0, 1, 1])
        let jpeg = try ImageFile.read(Self.fixtures.appending(path: "colour.jpg")).resized(width: 4, height: 4)
        XCTAssertEqual(Array(withJPEG.pixels[(2 * 48)...]), jpeg.pixels)
        assertInvalid(containing: ["--image-size", "at least 1", "0"]) { try Dataset.load("folder:\(folder.path)", split: .train, imageSize: 0) }
    }

    func testTrainAndTestSubfoldersAreTheSplitsAndTheTestSplitTakesTheTrainingShape() throws {
        let folder = try temporaryFolder()
        try put(image(channels: 3, height: 4, width: 4, seed: 1), "train/x/1.png", in: folder)
        try put(image(channels: 1, height: 4, width: 4, seed: 2), "train/y/2.png", in: folder)
        let testGrey = image(channels: 1, height: 4, width: 4, seed: 3)
        try put(testGrey, "test/x/3.png", in: folder)
        let odd = try put(image(channels: 1, height: 5, width: 4, seed: 4), "test/y/4.png", in: folder)
        let spec = "folder:\(folder.path)"
        let train = try Dataset.load(spec, split: .train)
        XCTAssertEqual(train.classNames, ["x", "y"])
        XCTAssertEqual(train.imageShape, [3, 4, 4])
        assertInvalid(containing: [odd.path, "4×5", "training images are 4×4", "--image-size"]) {
            try Dataset.load(spec, split: .test, imageShape: train.imageShape)
        }
        try FileManager.default.removeItem(at: odd)
        try put(testGrey, "test/y/4.png", in: folder)
        let test = try Dataset.load(spec, split: .test, imageShape: train.imageShape)
        XCTAssertEqual(test.imageShape, [3, 4, 4], "the test split has the training split's channels, though all grey")
        XCTAssertEqual(test.convertedImages, 2)
        XCTAssertEqual(test.labels, [0, 1])

        var configuration = TrainingConfiguration()
        configuration.data = spec
        configuration.imageSize = 3
        let (trainSet, _, testSet) = try configuration.loadData()
        XCTAssertEqual(trainSet.imageShape, [3, 3, 3])
        XCTAssertEqual(testSet.imageShape, [3, 3, 3])
    }

    func testBadFoldersGiveErrorsNamingWhatIsWrong() throws {
        let folder = try temporaryFolder()
        assertCorrupt(folder.path, contains: "holds no class sub-folders") { try Dataset.load("folder:\(folder.path)", split: .train) }
        let missing = folder.appending(path: "missing")
        assertCorrupt(missing.path, contains: "does not exist") { try Dataset.load("folder:\(missing.path)", split: .train) }

        try put(image(channels: 1, height: 2, width: 2, seed: 1), "full/1.png", in: folder)
        try FileManager.default.createDirectory(at: folder.appending(path: "empty"), withIntermediateDirectories: true)
        try Data("a list".utf8).write(to: folder.appending(path: "empty/list.txt"))
        assertCorrupt(folder.appending(path: "empty").path, contains: "class 'empty' holds no image") {
            try Dataset.load("folder:\(folder.path)", split: .train)
        }
        try FileManager.default.removeItem(at: folder.appending(path: "empty"))

        // No train/ and test/: a training set alone, and the test split says how to give one.
        assertCorrupt(folder.path, contains: "\(folder.path)/train/CLASS") { try Dataset.load("folder:\(folder.path)", split: .test) }

        let corrupt = folder.appending(path: "full/broken.png")
        try Data([0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 0, 0]).write(to: corrupt)
        assertCorrupt(corrupt.path, contains: "PNG: truncated") { try Dataset.load("folder:\(folder.path)", split: .train) }
        try FileManager.default.removeItem(at: corrupt)
        let disguised = folder.appending(path: "full/text.png")
        try Data("hello".utf8).write(to: disguised)
        assertCorrupt(disguised.path, contains: "not a PNG, binary PGM (P5) or JPEG image") { try Dataset.load("folder:\(folder.path)", split: .train) }
        try FileManager.default.removeItem(at: disguised)

        try put(image(channels: 1, height: 2, width: 2, seed: 2), "train/a/1.png", in: folder)
        assertCorrupt(folder.path, contains: "has a train/ folder but no test/") { try Dataset.load("folder:\(folder.path)", split: .train) }
    }

    func testImageSizeIsOptionalInConfigJSONAndRangeChecked() throws {
        let json = String(decoding: try TrainingConfiguration().prettyJSON(), as: UTF8.self)
        XCTAssertFalse(json.contains("imageSize"), "an unset image size is not written, so older readers see the same file")
        XCTAssertNil(try TrainingConfiguration.parse(Data(json.utf8), path: "config.json").imageSize)
        var sized = TrainingConfiguration()
        sized.imageSize = 24
        XCTAssertEqual(try TrainingConfiguration.parse(sized.prettyJSON(), path: "config.json").imageSize, 24)
        sized.imageSize = 0
        assertInvalid(containing: ["--image-size", "at least 1", "not 0"]) { try sized.validateValues() }
    }

    // MARK: The command line

    func testTrainOnAFolderThenPredictPrintsAClassNameFromTheFolders() throws {
        let folder = try temporaryFolder()
        // Two classes told apart by brightness, in colour and grey, of odd sizes: dark "night", bright "noon".
        for split in ["train", "test"] {
            for index in 0..<(split == "train" ? 12 : 4) {
                for (name, level) in [("night", 0.1), ("noon", 0.9)] {
                    let channels = index % 3 == 0 ? 1 : 3, (height, width) = (17 + index % 3, 19 - index % 2)
                    let pixels = (0..<(channels * height * width)).map { Float(level) + Float($0 % 7) / 100 }
                    try put(ImageFile(channels: channels, height: height, width: width, pixels: pixels), "\(split)/\(name)/\(index).png", in: folder)
                }
            }
        }
        let out = folder.appending(path: "run")
        let train = try KilnCommand.run(["train", "--data", "folder:\(folder.path)", "--image-size", "16", "--epochs", "1", "--val-split", "0",
                                         "--batch-size", "8", "--device", "host", "--out", out.path])
        XCTAssertEqual(train.status, 0, train.output)
        XCTAssertTrue(train.output.contains("24 training"), train.output)
        XCTAssertTrue(train.output.contains("3×16×16"), train.output)
        XCTAssertTrue(train.output.contains("12 grey images converted to RGB"), train.output)

        let checkpoint = out.appending(path: "last.safetensors")
        let file = try SafeTensors.read(from: checkpoint)
        XCTAssertEqual(try TrainingCheckpoint.classNames(in: file, source: checkpoint.path), ["night", "noon"])
        XCTAssertEqual(try TrainingCheckpoint.inputShape(in: file, source: checkpoint.path), [3, 16, 16])

        // A grey image of another size: resized and made RGB as training made its images.
        let query = try put(ImageFile(channels: 1, height: 30, width: 25, pixels: [Float](repeating: 0.9, count: 750)), "query.png", in: folder)
        let predict = try KilnCommand.run(["predict", "--checkpoint", checkpoint.path, "--device", "host", "--top", "2", query.path])
        XCTAssertEqual(predict.status, 0, predict.output)
        let lines = predict.output.split(separator: "\n").map(String.init)
        let heading = try XCTUnwrap(lines.firstIndex(of: query.path), predict.output)
        let named = lines[(heading + 1)...].prefix(2).compactMap { $0.split(separator: " ").last.map(String.init) }
        XCTAssertEqual(Set(named), ["night", "noon"], predict.output)

        let eval = try KilnCommand.run(["eval", "--checkpoint", checkpoint.path, "--device", "host"])
        XCTAssertEqual(eval.status, 0, eval.output)
        XCTAssertTrue(eval.output.contains("on 8 test images"), eval.output)
        XCTAssertTrue(eval.output.contains("  night ") && eval.output.contains("  noon "), eval.output)
    }
}
