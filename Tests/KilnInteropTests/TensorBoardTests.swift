import Foundation
import XCTest
@testable import Kiln
@testable import KilnInterop

/// `kiln train`'s TensorBoard event files: what they hold, read back by Kiln and by TensorBoard's own reader.
final class TensorBoardTests: XCTestCase {
    func testEventsReadBackAsTheirRecordsAndMessages() throws {
        let folder = try temporaryFolder(self, "events")
        let writer = try TensorBoardEventWriter(folder: folder, now: Date(timeIntervalSince1970: 1_700_000_000))
        try writer.scalars(["batch/loss": 2.5, "batch/lr": 0.05], step: 7)
        let image = ImageFile(channels: 1, height: 2, width: 3, pixels: [0, 0.5, 1, 1, 0.5, 0])
        try writer.image("grid", image, step: 8)
        XCTAssertTrue(writer.url.lastPathComponent.hasPrefix("events.out.tfevents.1700000000."), writer.url.lastPathComponent)

        let records = try TFRecord.records(in: Array(try Data(contentsOf: writer.url)), source: writer.url.path)
        let events = try records.map { try Tensorboard_Event(serializedBytes: $0) }
        XCTAssertEqual(events.count, 3)
        XCTAssertEqual(events[0].fileVersion, "brain.Event:2")
        XCTAssertEqual(events[0].wallTime, 1_700_000_000)
        XCTAssertEqual(events[1].step, 7)
        XCTAssertEqual(events[1].summary.value.map(\.tag), ["batch/loss", "batch/lr"])
        XCTAssertEqual(events[1].summary.value.map(\.simpleValue), [2.5, 0.05])
        XCTAssertEqual(events[2].step, 8)
        let picture = try XCTUnwrap(events[2].summary.value.first?.image)
        XCTAssertEqual([picture.width, picture.height, picture.colorspace], [3, 2, 1])
        XCTAssertEqual(Array(picture.encodedImageString), try image.pngData())
    }

    /// A run and its resume: TensorBoard reads every step's loss and rate and every epoch's metrics as
    /// steps.csv and metrics.csv have them, and the augmentation grid.
    func testTensorBoardReadsWhatTheRunLoggedInItsCSVFiles() throws {
        let folder = try temporaryFolder(self, "run")
        let common = ["--per-class", "40", "--batch-size", "32", "--augment", "standard", "--device", "host"]
        let first = try runKiln(["train", "--epochs", "2", "--out", folder.path, "--overwrite"] + common)
        XCTAssertEqual(first.status, 0, first.output)
        let resumed = try runKiln(["train", "--resume", folder.path, "--epochs", "3"])
        XCTAssertEqual(resumed.status, 0, resumed.output)
        let files = try FileManager.default.contentsOfDirectory(atPath: folder.path).filter { $0.hasPrefix("events.out.tfevents.") }
        XCTAssertEqual(files.count, 2, "one event file per process: \(files)")

        let check = try runPythonCheck("tensorboard_check.py", [folder.path, "--image", "augmentation"],
                                       needing: ["tensorboard"])
        print(check.output, terminator: "")
        XCTAssertEqual(check.status, 0, check.output)
        XCTAssertTrue(check.output.contains("3 epochs × 6 columns, 1 image tags: all match"), check.output)
    }

    /// kiln explain puts every image it writes into an event file beside them, under the file's name.
    func testExplainWritesItsImagesIntoAnEventFile() throws {
        let folder = try temporaryFolder(self, "explain")
        let run = try runKiln(["explain", "--checkpoint", try shortRunCheckpoint.get().path, "--index", "0", "3",
                               "--method", "saliency", "gradcam", "--out", folder.path])
        XCTAssertEqual(run.status, 0, run.output)
        let files = try FileManager.default.contentsOfDirectory(atPath: folder.path)
        let pictures = files.filter { $0.hasSuffix(".png") }.sorted()
        XCTAssertEqual(pictures.count, 4, "\(files)")
        let eventFile = try XCTUnwrap(files.first { $0.hasPrefix("events.out.tfevents.") })
        let records = try TFRecord.records(in: Array(try Data(contentsOf: folder.appending(path: eventFile))), source: eventFile)
        let images = try records.dropFirst().flatMap { try Tensorboard_Event(serializedBytes: $0).summary.value }
        XCTAssertEqual(images.map(\.tag).sorted(), pictures.map { String($0.dropLast(4)) })
        for image in images {
            XCTAssertEqual(image.image.encodedImageString, try Data(contentsOf: folder.appending(path: image.tag + ".png")), image.tag)
        }
    }

    /// (The short run of shortRunCheckpoint is made with --tensorboard off, and checks that it wrote no event file.)
    func testTensorBoardTakesOnOrOff() throws {
        let wrong = try runKiln(["train", "--tensorboard", "maybe"])
        XCTAssertEqual(wrong.status, 64, wrong.output)
        XCTAssertTrue(wrong.output.contains("The value 'maybe' is invalid for '--tensorboard <on|off>'. Please provide one of 'on' and 'off'"), wrong.output)
    }
}
