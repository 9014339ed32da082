import Foundation
import XCTest
@testable import Kiln

/// The augmentation ops against hand-worked answers and the host against the OpenCL device, and the pipeline's
/// promises: a sample's augmentation depends on (seed, epoch, sample) alone.
final class AugmentationTests: XCTestCase {
    private var random = TestRandom(seed: 29)

    /// A random batch shape with odd sizes, batch 1 now and then, 1 or 3 channels.
    private func randomShape(_ trial: Int) -> [Int] {
        [trial % 4 == 0 ? 1 : random.int(2...5), trial % 2 == 0 ? 1 : 3, random.int(1...13), random.int(1...13)]
    }

    private func images(_ shape: [Int]) throws -> Tensor {
        try Tensor(random.floats(shape.reduce(1, *), 0, 1), shape: shape)
    }

    // MARK: Hand-worked answers

    func testShiftAndFlipKnownAnswers() throws {
        // One 3x4 plane: 0 1 2 3 / 4 5 6 7 / 8 9 10 11
        let x = try Tensor((0..<12).map(Float.init), shape: [1, 1, 3, 4])
        for device in try testDevices() {
            let xd = try x.to(device)
            func run(_ p: [Float], _ border: AugmentBorder) throws -> [Float] {
                try shiftFlip(xd, params: Tensor(p, shape: [1, 4], on: device), border: border).toArray()
            }
            XCTAssertEqual(try run([1, 0, 0, 0], .constant(-1)), [1, 2, 3, -1, 5, 6, 7, -1, 9, 10, 11, -1], "\(device): shift x by 1")
            XCTAssertEqual(try run([0, -1, 0, 0], .constant(0)), [0, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7], "\(device): shift y by -1")
            XCTAssertEqual(try run([0, 0, 1, 0], .constant(0)), [3, 2, 1, 0, 7, 6, 5, 4, 11, 10, 9, 8], "\(device): flip x")
            XCTAssertEqual(try run([0, 0, 0, 1], .constant(0)), [8, 9, 10, 11, 4, 5, 6, 7, 0, 1, 2, 3], "\(device): flip y")
            // Reflect without the edge: column -2 reads 2, column -1 reads 1.
            XCTAssertEqual(try run([-2, 0, 0, 0], .reflect), [2, 1, 0, 1, 6, 5, 4, 5, 10, 9, 8, 9], "\(device): reflect")
        }
    }

    func testAffineKnownAnswers() throws {
        // A 90° rotation of a square image with nearest sampling is a transpose and a flip, exactly.
        let side = 5
        let x = try images([2, 3, side, side])
        let rotation = AugmentationPipeline.inverseWarp(angle: .pi / 2, shear: 0, scale: 1, width: side, height: side)
        let values = try x.toArray()
        for device in try testDevices() {
            let y = try warpAffine(x.to(device), matrices: Tensor(rotation + rotation, shape: [2, 6], on: device), interpolation: .nearest).toArray()
            // The forward map is counter-clockwise in image coordinates (y down): output (h, w) reads input (w, S-1-h)
            // or (S-1-w, h); find which and check every pixel against it.
            let plane = side * side
            let candidates: [(Int, Int) -> Int] = [{ h, w in w * side + (side - 1 - h) }, { h, w in (side - 1 - w) * side + h }]
            let matching = candidates.filter { source in
                (0..<6).allSatisfy { p in (0..<side).allSatisfy { h in (0..<side).allSatisfy { w in
                    y[p * plane + h * side + w] == values[p * plane + source(h, w)] } } }
            }
            XCTAssertEqual(matching.count, 1, "\(device): a 90° rotation permutes the pixels exactly")
        }
        // Bilinear at a half-pixel shift averages neighbours: (a·u + c) with c = 0.5 reads between columns.
        let row = try Tensor([0, 2, 4, 8], shape: [1, 1, 1, 4])
        for device in try testDevices() {
            let y = try warpAffine(row.to(device), matrices: Tensor([1, 0, 0.5, 0, 1, 0], shape: [1, 6], on: device),
                                   interpolation: .bilinear, fill: 0).toArray()
            XCTAssertEqual(y, [1, 3, 6, 4], "\(device): half-pixel shift (the last tap reads the fill)")
        }
    }

    func testColorJitterKnownAnswers() throws {
        // Grey 1x2 image (0.2, 0.6): brightness 2 → (0.4, 1.0 clamped from 1.2); contrast ½ blends with their
        // mean 0.7 → (0.55, 0.85).
        let x = try Tensor([0.2, 0.6], shape: [1, 1, 1, 2])
        for device in try testDevices() {
            let y = try colorJitter(x.to(device), factors: Tensor([2, 0.5, 1], shape: [1, 3], on: device)).toArray()
            assertClose(y, [0.55, 0.85], atol: 1e-6, "\(device): brightness then contrast")
        }
        // Saturation 0 turns an RGB pixel into its grey, 0.299 R + 0.587 G + 0.114 B.
        let rgb = try Tensor([1, 0, 0], shape: [1, 3, 1, 1])
        for device in try testDevices() {
            let y = try colorJitter(rgb.to(device), factors: Tensor([1, 1, 0], shape: [1, 3], on: device)).toArray()
            assertClose(y, [0.299, 0.299, 0.299], atol: 1e-6, "\(device): saturation 0")
        }
    }

    func testStandardizeAndNormalizeKnownAnswers() throws {
        let x = try Tensor([1, 3, 5, 7, 10, 10, 10, 10], shape: [2, 1, 2, 2])
        for device in try testDevices() {
            let y = try standardizeImages(x.to(device)).toArray()
            let s = Float(5).squareRoot()  // population std of 1, 3, 5, 7
            assertClose(Array(y[0..<4]), [-3 / s, -1 / s, 1 / s, 3 / s], atol: 1e-6, "\(device): standardised")
            XCTAssertEqual(Array(y[4..<8]), [0, 0, 0, 0], "\(device): a flat image stays flat (std floored at 1/√n)")
            let n = try normalizeChannels(x.reshaped([1, 2, 2, 2]).to(device), mean: [1, 10], std: [2, 4]).toArray()
            XCTAssertEqual(n, [0, 1, 2, 3, 0, 0, 0, 0], "\(device): per-channel normalisation")
        }
        XCTAssertThrowsError(try normalizeChannels(x, mean: [0, 0], std: [1, 1])) { error in
            XCTAssertTrue("\(error)".contains("1 means"), "\(error)")
        }
    }

    // MARK: Identities

    func testIdentities() throws {
        for device in try testDevices() {
            for trial in 0..<6 {
                let x = try images(randomShape(trial)).to(device)
                let original = try x.toArray()
                let n = x.shape[0]
                let flips = try Tensor([Float](repeating: 0, count: 0) + (0..<n).flatMap { _ in [Float(0), 0, 1, 1] }, shape: [n, 4], on: device)
                XCTAssertEqual(try shiftFlip(shiftFlip(x, params: flips), params: flips).toArray(), original, "\(device): flipping twice")
                let identity = try Tensor((0..<n).flatMap { _ in [Float(1), 0, 0, 0, 1, 0] }, shape: [n, 6], on: device)
                for interpolation in Interpolation.allCases {
                    XCTAssertEqual(try warpAffine(x, matrices: identity, interpolation: interpolation).toArray(), original,
                                   "\(device): the identity warp (\(interpolation))")
                }
                let (w, h) = (x.shape[3], x.shape[2])
                let still = try Tensor((0..<n).flatMap { _ in AugmentationPipeline.inverseWarp(angle: 0, shear: 0, scale: 1, width: w, height: h) },
                                       shape: [n, 6], on: device)
                XCTAssertEqual(try warpAffine(x, matrices: still, interpolation: .bilinear).toArray(), original, "\(device): rotation 0, zoom 1")
                let ones = try Tensor([Float](repeating: 1, count: 3 * n), shape: [n, 3], on: device)
                XCTAssertEqual(try colorJitter(x, factors: ones).toArray(), original, "\(device): jitter factors 1")
                let empty = try Tensor([Float](repeating: 0, count: 4 * n), shape: [n, 4], on: device)
                XCTAssertEqual(try eraseBoxes(x, boxes: empty).toArray(), original, "\(device): an empty box")
            }
        }
    }

    func testCutoutZeroesExactlyItsBox() throws {
        for device in try testDevices() {
            let x = try Tensor([Float](repeating: 0.5, count: 2 * 3 * 9 * 7), shape: [2, 3, 9, 7]).to(device)
            let boxes = try Tensor([2, 1, 5, 4, /* clipped at the edge */ 5, 6, 7, 9], shape: [2, 4], on: device)
            let y = try eraseBoxes(x, boxes: boxes).toArray()
            for n in 0..<2 {
                let (x0, y0, x1, y1) = n == 0 ? (2, 1, 5, 4) : (5, 6, 7, 9)
                for c in 0..<3 {
                    for h in 0..<9 {
                        for w in 0..<7 {
                            let inside = w >= x0 && w < x1 && h >= y0 && h < y1
                            XCTAssertEqual(y[((n * 3 + c) * 9 + h) * 7 + w], inside ? 0 : 0.5, "\(device): (\(n), \(c), \(h), \(w))")
                        }
                    }
                }
            }
        }
    }

    // MARK: Host against device

    func testTheDeviceMatchesTheHostOnRandomParameters() throws {
        let gpu = try openCLDevice()
        for trial in 0..<16 {
            let shape = randomShape(trial)
            let (n, height, width) = (shape[0], shape[2], shape[3])
            let x = try images(shape)
            let xd = try x.to(gpu)
            func both(_ rows: [Float], width: Int) throws -> (host: Tensor, device: Tensor) {
                let t = try Tensor(rows, shape: [n, width])
                return (t, try t.to(gpu))
            }
            let shifts = try both((0..<n).flatMap { _ in
                [Float(random.int(-width...width)), Float(random.int(-height...height)), Float(random.int(0...1)), Float(random.int(0...1))]
            }, width: 4)
            for border in [AugmentBorder.constant(0.25), .reflect] {
                XCTAssertEqual(try shiftFlip(xd, params: shifts.device, border: border).toArray(),
                               try shiftFlip(x, params: shifts.host, border: border).toArray(), "trial \(trial): shift/flip \(border) \(shape)")
            }
            let matrices = try both((0..<n).flatMap { _ in
                AugmentationPipeline.inverseWarp(angle: Double(random.float(-1, 1)), shear: Double(random.float(-0.3, 0.3)),
                                                 scale: Double(random.float(0.7, 1.4)), width: width, height: height)
            }, width: 6)
            let outSize = (random.int(1...15), random.int(1...15))
            XCTAssertEqual(try warpAffine(xd, matrices: matrices.device, outputSize: outSize, interpolation: .nearest, fill: 0.5).toArray(),
                           try warpAffine(x, matrices: matrices.host, outputSize: outSize, interpolation: .nearest, fill: 0.5).toArray(),
                           "trial \(trial): nearest warp \(shape)")
            assertClose(try warpAffine(xd, matrices: matrices.device, outputSize: outSize, interpolation: .bilinear, fill: 0.5).toArray(),
                        try warpAffine(x, matrices: matrices.host, outputSize: outSize, interpolation: .bilinear, fill: 0.5).toArray(),
                        atol: 1e-5, rtol: 0, "trial \(trial): bilinear warp \(shape)")
            let factors = try both((0..<(3 * n)).map { _ in random.float(0, 2) }, width: 3)
            assertClose(try colorJitter(xd, factors: factors.device).toArray(), try colorJitter(x, factors: factors.host).toArray(),
                        atol: 1e-5, rtol: 0, "trial \(trial): jitter \(shape)")
            let boxes = try both((0..<n).flatMap { _ in
                let (x0, y0) = (random.int(-2...width), random.int(-2...height))
                return [Float(x0), Float(y0), Float(x0 + random.int(0...width)), Float(y0 + random.int(0...height))]
            }, width: 4)
            XCTAssertEqual(try eraseBoxes(xd, boxes: boxes.device, value: 0.75).toArray(), try eraseBoxes(x, boxes: boxes.host, value: 0.75).toArray(),
                           "trial \(trial): erase \(shape)")
            let partner = try images(shape)
            let mix = try both((0..<n).flatMap { _ in
                [random.float(0, 1), Float(random.int(0...width)), Float(random.int(0...height)), Float(random.int(0...width)), Float(random.int(0...height))]
            }, width: 5)
            XCTAssertEqual(try mixPairs(xd, partner.to(gpu), params: mix.device).toArray(), try mixPairs(x, partner, params: mix.host).toArray(),
                           "trial \(trial): mix \(shape)")
            let (mean, std) = ((0..<shape[1]).map { _ in random.float(-1, 1) }, (0..<shape[1]).map { _ in random.float(0.1, 2) })
            XCTAssertEqual(try normalizeChannels(xd, mean: mean, std: std).toArray(), try normalizeChannels(x, mean: mean, std: std).toArray(),
                           "trial \(trial): normalize \(shape)")
            assertClose(try standardizeImages(xd).toArray(), try standardizeImages(x).toArray(), atol: 1e-5, rtol: 1e-5,
                        "trial \(trial): standardize \(shape)")
        }
    }

    // MARK: The pipeline

    private func smallDataset(count: Int = 23, channels: Int = 3, side: Int = 9) -> Dataset {
        var generator = TestRandom(seed: 3)
        return Dataset(imageShape: [channels, side, side], pixels: generator.floats(count * channels * side * side, 0, 1),
                       labels: (0..<count).map { $0 % 4 }, classNames: ["a", "b", "c", "d"])
    }

    private func augmentedSamples(_ loader: DataLoader, epoch: Int) throws -> [Int: (image: [Float], targets: [Float])] {
        var result: [Int: (image: [Float], targets: [Float])] = [:]
        let size = loader.dataset.imageSize
        for batch in loader.batches(epoch: epoch) {
            let (images, targets) = (try batch.inputs.toArray(), try batch.targets.toArray())
            let width = targets.count / batch.samples.count
            for (row, sample) in batch.samples.enumerated() {
                result[sample] = (Array(images[(row * size)..<((row + 1) * size)]), Array(targets[(row * width)..<((row + 1) * width)]))
            }
        }
        return result
    }

    func testASampleIsAugmentedAlikeWhateverTheBatchSizeAndDevice() throws {
        let dataset = smallDataset()
        let spec = try AugmentationSpec("crop:2:reflect,flip,rotate:15,zoom:0.1,jitter:0.3,cutout:3,mixup:0.4,cutmix:1")
        let pipeline = AugmentationPipeline(spec: spec, seed: 7, epochs: 3, classes: 4)
        func loader(_ batchSize: Int, on device: Device) -> DataLoader {
            var loader = DataLoader(dataset: dataset, batchSize: batchSize, shuffle: true, seed: 7, device: device)
            loader.augmentation = pipeline
            return loader
        }
        let reference = try augmentedSamples(loader(4, on: .host), epoch: 1)
        XCTAssertEqual(reference.count, dataset.count)
        for (sample, augmented) in try augmentedSamples(loader(7, on: .host), epoch: 1) {
            XCTAssertEqual(augmented.image, reference[sample]?.image, "sample \(sample): batch 7 against batch 4")
            XCTAssertEqual(augmented.targets, reference[sample]?.targets, "sample \(sample): targets")
        }
        let other = try augmentedSamples(loader(4, on: .host), epoch: 2)
        XCTAssertNotEqual(other[0]?.image, reference[0]?.image, "another epoch draws other augmentations")
        for (sample, augmented) in reference {
            XCTAssertEqual(augmented.targets.reduce(0, +), 1, accuracy: 1e-6, "sample \(sample): soft targets sum to 1")
            XCTAssertGreaterThan(augmented.targets[dataset.labels[sample]], 0, "sample \(sample): its own label keeps weight")
        }
        // On the device through `batch(of:epoch:)` on this thread: Oclgrind's queue does not take kernels from two
        // threads at once (the loader's thread is exercised on POCL by every training test).
        let gpu = try openCLDevice(), onDevice = loader(5, on: gpu)
        var deviceSamples: [Int: (image: [Float], targets: [Float])] = [:]
        let order = onDevice.order(epoch: 1), size = dataset.imageSize
        for start in stride(from: 0, to: order.count, by: 5) {
            let batch = try onDevice.batch(of: Array(order[start..<Swift.min(start + 5, order.count)]), epoch: 1)
            let (images, targets) = (try batch.inputs.toArray(), try batch.targets.toArray())
            for (row, sample) in batch.samples.enumerated() {
                deviceSamples[sample] = (Array(images[(row * size)..<((row + 1) * size)]), Array(targets[(row * 4)..<((row + 1) * 4)]))
            }
        }
        XCTAssertEqual(deviceSamples.count, dataset.count)
        for (sample, augmented) in deviceSamples {
            assertClose(augmented.image, reference[sample]?.image ?? [], atol: 1e-5, rtol: 0, "sample \(sample): device against host")
            XCTAssertEqual(augmented.targets, reference[sample]?.targets, "sample \(sample): device targets")
        }
    }

    func testAResumedEpochSeesTheSameBatches() throws {
        var loader = DataLoader(dataset: smallDataset(), batchSize: 5, shuffle: true, seed: 11, device: .host)
        loader.augmentation = AugmentationPipeline(spec: try AugmentationSpec("strong"), seed: 11, epochs: 2, classes: 4)
        let whole = try loader.batches(epoch: 1).map { try $0.inputs.toArray() }
        let resumed = try loader.batches(epoch: 1, startingAt: 2).map { try $0.inputs.toArray() }
        XCTAssertEqual(resumed, Array(whole[2...]))
    }

    func testSamplePairingFollowsItsSchedule() throws {
        let pipeline = AugmentationPipeline(spec: try AugmentationSpec("pairing"), seed: 1, epochs: 30, classes: 4)
        let on = (0..<30).filter(pipeline.pairingIsOn)
        XCTAssertEqual(on, Array(1...8) + Array(11...18) + Array(21...26), "on 8, off 2, off at the start and for the last tenth")
        var loader = DataLoader(dataset: smallDataset(), batchSize: 23, shuffle: false, device: .host)
        loader.augmentation = pipeline
        let plain = loader.dataset.pixels
        let epoch0 = try XCTUnwrap(loader.batches(epoch: 0).next())
        XCTAssertEqual(try epoch0.inputs.toArray(), plain, "off in the first epoch")
        let epoch1 = try XCTUnwrap(loader.batches(epoch: 1).next())
        let partners = try XCTUnwrap(pipeline.partners(of: Array(0..<23), epoch: 1, datasetCount: 23))
        let mixed = try epoch1.inputs.toArray(), size = loader.dataset.imageSize
        for sample in 0..<23 {
            for q in 0..<size {
                XCTAssertEqual(mixed[sample * size + q], 0.5 * plain[sample * size + q] + 0.5 * plain[partners[sample] * size + q])
            }
        }
        XCTAssertEqual(try epoch1.targets.toArray(), (0..<23).map { Float($0 % 4) }, "the first image's label")
    }

    // MARK: The spec

    func testSpecsParseAndBadOnesAreNamed() throws {
        XCTAssertEqual(try AugmentationSpec("standard").steps, [.crop(padding: 4, border: .constant(0)), .flip])
        XCTAssertEqual(try AugmentationSpec("none").steps, [])
        XCTAssertEqual(try AugmentationSpec("flip, rotate:10, crop:2:reflect, zoom:0.2, nearest").steps,
                       [.flip, .affine(degrees: 10, shear: 0, zoom: 0.2, interpolation: .nearest, fill: 0), .crop(padding: 2, border: .reflect)])
        XCTAssertEqual(try AugmentationSpec("mixup:0.2,cutmix:1").steps, [.mix(.mixupCutmix(mixup: 0.2, cutmix: 1))])
        let cases: [(String, [String])] = [
            ("flop", ["unknown step 'flop'", "crop:PIXELS", "standard"]),
            ("rotate:400", ["rotate:400", "0 to 180"]),
            ("crop", ["crop needs a value"]),
            ("crop:4:mirror", ["zero or reflect"]),
            ("mixup:0.2,pairing", ["pairing does not combine"]),
            ("flip,,crop:2", ["an empty step"]),
            ("jitter:x", ["jitter:x", "amount"]),
        ]
        for (text, fragments) in cases {
            XCTAssertThrowsError(try AugmentationSpec(text), text) { error in
                for fragment in fragments { XCTAssertTrue("\(error)".contains(fragment), "\(text): \(error)") }
            }
        }
    }

    // MARK: Preprocessing

    func testHistogramEqualizationMatchesPIL() throws {
        // Fixtures/equalize.json: 8-bit images and what PIL's ImageOps.equalize makes of them (equalize.py).
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appending(path: "Fixtures/equalize.json")
        let data = try Data(contentsOf: url)
        let cases = try JSONDecoder().decode([EqualizeCase].self, from: data)
        XCTAssertGreaterThan(cases.count, 2)
        for (index, item) in cases.enumerated() {
            var dataset = Dataset(imageShape: [item.channels, item.height, item.width], pixels: item.input.map { Float($0) / 255 },
                                  labels: [0], classNames: ["a"])
            dataset.equalizeHistograms()
            XCTAssertEqual(dataset.pixels.map { Int(($0 * 255).rounded()) }, item.expected, "case \(index)")
        }
    }

    func testChannelStatistics() throws {
        let dataset = Dataset(imageShape: [2, 1, 2], pixels: [0, 1, 4, 4, 2, 3, 4, 4], labels: [0, 0], classNames: ["a"])
        let (mean, std) = dataset.channelStatistics()
        XCTAssertEqual(mean, [1.5, 4])
        XCTAssertEqual(std[0], Float(1.25).squareRoot(), accuracy: 1e-6)
        XCTAssertEqual(std[1], 1e-6, "a constant channel's deviation is floored, so normalising by it is finite")
    }
}

private struct EqualizeCase: Decodable {
    var channels: Int, height: Int, width: Int
    var input: [Int]
    var expected: [Int]
}
