import ArgumentParser
import Foundation
import Kiln

/// Writes what an augmentation pipeline does to some training images, for a person to look at.
struct AugmentCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "augment",
        abstract: "Write a PNG grid of training images and their augmented versions.",
        discussion: """
            Rows alternate: a row of original images, then the same images as the given epoch of a run with \
            --augment SPEC and --seed S would train on them (on the chosen device).
            """)

    @Option(help: "Data set (as kiln train's --data).")
    var data = TrainingConfiguration().data
    @Option(help: "Side every image is resized to (as kiln train's --image-size).")
    var imageSize: Int?
    @Option(help: ArgumentHelp("The augmentation (as kiln train's --augment).", valueName: "spec"))
    var augment = "standard"
    @Option(help: "Images to show, 1 to 1024.")
    var count = 32
    @Option(help: "Images per row.")
    var columns = 8
    @Option(help: "Seed of the run whose augmentation to show (it also picks the images).")
    var seed: UInt64 = TrainingConfiguration().seed
    @Option(help: "Epoch (1-based) whose augmentation to show.")
    var epoch = 1
    @Option(help: "auto, host, or cl:P:D.")
    var device = "host"
    @Option(help: "The PNG file to write.")
    var out = "augment.png"

    func validate() throws {
        guard (1...1024).contains(count) else { throw ValidationError("--count must be from 1 to 1024, not \(count)") }
        guard columns >= 1 else { throw ValidationError("--columns must be at least 1, not \(columns)") }
        guard epoch >= 1 else { throw ValidationError("--epoch must be at least 1, not \(epoch)") }
        if let imageSize, imageSize < 1 { throw ValidationError("--image-size must be at least 1, not \(imageSize)") }
        do { _ = try AugmentationSpec(augment) } catch { throw ValidationError("\(error)") }
    }

    func run() throws {
        try reportingErrors(Self.self) {
            let device = try DeviceOption.parse(device)
            let train = try Dataset.load(data, split: .train, imageSize: imageSize)
            let spec = try AugmentationSpec(augment)
            let shown = Swift.min(count, train.count)
            let pipeline = AugmentationPipeline(spec: spec, seed: seed, epochs: Swift.max(epoch, 10), classes: train.classNames.count)
            let grid = try pipeline.previewGrid(of: train, epoch: epoch - 1, count: shown, columns: columns, device: device)
            try grid.write(png: URL(fileURLWithPath: out))
            print("augmentation \(spec.text): \(spec.steps.count) step\(spec.steps.count == 1 ? "" : "s")")
            print("wrote \(out): \(shown) images of \(data), epoch \(epoch), seed \(seed) (\(grid.width)×\(grid.height) pixels)")
        }
    }
}
