import Foundation
import XCTest
@testable import Kiln

/// Attribution methods against what each must satisfy, on host and POCL.
final class ExplainTests: XCTestCase {
    private var random = TestRandom(seed: 15)

    /// conv (1 → 4, 3×3) → BN → ReLU → dropout → maxpool → flatten → linear → 3 classes, with BN's running
    /// statistics moved off their defaults, so that inference mode matters.
    private func smallClassifier(seed: UInt64 = 3) throws -> Sequential {
        let model = try Sequential {
            try Conv2D(inputChannels: 1, outputChannels: 4, kernelSize: 3, padding: 1).named("conv1")
            try BatchNorm(features: 4).named("bn1")
            ReLU()
            try Dropout(probability: 0.5)
            try MaxPool2D(window: 2)
            Flatten()
            try Linear(inputFeatures: 4 * 4 * 4, outputFeatures: 3).named("fc")
        }
        try model.reset(seed: seed)
        let bn = try XCTUnwrap(model.layer(at: "bn1") as? BatchNorm)
        try bn.runningMean.value.assign(Tensor([0.1, -0.2, 0.3, 0], shape: [4]))
        try bn.runningVariance.value.assign(Tensor([0.5, 2, 1.5, 0.8], shape: [4]))
        return model
    }

    private func image(_ shape: [Int] = [1, 8, 8]) throws -> Tensor {
        try Tensor(random.floats(shape.reduce(1, *)), shape: shape)
    }

    private func logit(_ model: Sequential, _ x: Tensor, _ target: Int) throws -> Double {
        Double(try model.forward(try x.reshaped([1] + x.shape), .inference).toArray()[target])
    }

    func testSaliencyIsTheFiniteDifferenceGradientOfTheLogit() throws {
        let model = try smallClassifier(), x = try image()
        let explainer = Explainer(model: model, device: .host)
        let gradient = try explainer.inputGradients(x, target: 2)
        try assertGradient("∂logit/∂x", of: x, analytic: gradient.reshaped(x.shape), eps: 1e-2, samples: 64) { try logit(model, x, 2) }
        let saliency = try explainer.saliency(x, target: 2)
        XCTAssertEqual(saliency.values, try gradient.toArray().map(abs))
        XCTAssertEqual([saliency.height, saliency.width], [8, 8])
    }

    func testEveryMethodAgreesBetweenHostAndDevice() throws {
        let gpu = try openCLDevice()
        let (host, device) = (try smallClassifier(), try smallClassifier())
        try device.move(to: gpu)
        let x = try image()
        let (onHost, onDevice) = (Explainer(model: host, device: .host), Explainer(model: device, device: gpu))
        let methods: [(String, (Explainer) throws -> AttributionMap)] = [
            ("saliency", { try $0.saliency(x, target: 1) }),
            ("smoothgrad", { try $0.smoothGrad(x, target: 1, samples: 8, sigma: 0.2, seed: 4) }),
            ("integrated gradients", { try $0.integratedGradients(x, target: 1, steps: 16) }),
            ("grad-cam", { try $0.gradCAM(x, target: 1, layer: "conv1") }),
            ("occlusion", { try $0.occlusion(x, target: 1, patch: 3, stride: 2) }),
        ]
        for (name, method) in methods {
            assertClose(try method(onDevice).values, try method(onHost).values, atol: 1e-5, rtol: 1e-4, name)
        }
    }

    /// Completeness holds up to the quadrature's error, which is small for a smooth network (ReLU and max
    /// pooling make the path piecewise linear, with kinks the steps straddle).
    func testIntegratedGradientsAreComplete() throws {
        for device in try testDevices() {
            let model = try Sequential {
                try Conv2D(inputChannels: 1, outputChannels: 4, kernelSize: 3, padding: 1).named("conv1")
                try BatchNorm(features: 4).named("bn1")
                Softplus()
                try AvgPool2D(window: 2)
                Flatten()
                try Linear(inputFeatures: 4 * 4 * 4, outputFeatures: 3).named("fc")
            }
            try model.reset(seed: 8)
            try model.move(to: device)
            let x = try image(), explainer = Explainer(model: model, device: device)
            let attributions = try explainer.integratedGradients(x, target: 0, baseline: 0, steps: 64)
            let difference = try logit(model, x.to(device), 0) - logit(model, Tensor.zeros(x.shape, on: device), 0)
            let total = attributions.values.reduce(0) { $0 + Double($1) }
            XCTAssertEqual(total, difference, accuracy: 0.01 * abs(difference), "completeness on \(device)")
            XCTAssertGreaterThan(abs(difference), 1e-3, "a test that can fail")
        }
    }

    /// For f(x) = w·x + b, occluding a square with 0 lowers f by that square's Σ w·x: with the stride equal to the
    /// patch every pixel gets its own square's contribution.
    func testOcclusionOfALinearModelIsEachPatchsContribution() throws {
        for device in try testDevices() {
            let model = try Sequential { Flatten(); try Linear(inputFeatures: 2 * 6 * 6, outputFeatures: 2).named("fc") }
            try model.reset(seed: 2)
            try model.move(to: device)
            let x = try image([2, 6, 6])
            let map = try Explainer(model: model, device: device).occlusion(x, target: 1, patch: 3, stride: 3)
            let (w, pixels) = (Array(try model.namedParameters[0].parameter.value.toArray()[72...]), try x.toArray())
            for y in 0..<6 {
                for column in 0..<6 {
                    let (top, left) = (y / 3 * 3, column / 3 * 3)
                    var contribution: Float = 0
                    for c in 0..<2 {
                        for row in top..<(top + 3) { for col in left..<(left + 3) { contribution += w[(c * 6 + row) * 6 + col] * pixels[(c * 6 + row) * 6 + col] } }
                    }
                    XCTAssertEqual(map.values[y * 6 + column], contribution, accuracy: 1e-5, "pixel (\(y), \(column)) on \(device)")
                }
            }
        }
    }

    /// A bright square in the top-left quadrant over dim noise; feature channel 0 is 1 everywhere and unused,
    /// channel 1 fires on bright pixels (ReLU(x − 0.5)); the class-1 logit sums channel 1 over the top-left
    /// quadrant. Grad-CAM must weight the channel the logit uses and find the square: ≥ 95 % of its mass there
    /// (a map of the activations alone would spread over the whole image).
    func testGradCAMFindsTheQuadrantTheLogitDependsOn() throws {
        for device in try testDevices() {
            let conv = try Conv2D(inputChannels: 1, outputChannels: 2, kernelSize: 1)
            try conv.weight.value.assign(Tensor([0, 1], shape: [2, 1, 1, 1]))
            try conv.bias?.value.assign(Tensor([1, -0.5], shape: [2]))
            let head = try Linear(inputFeatures: 2 * 8 * 8, outputFeatures: 2)
            var weights = [Float](repeating: 0, count: 2 * 128)
            for y in 0..<4 { for x in 0..<4 { weights[128 + 64 + y * 8 + x] = 1 } }
            try head.weight.value.assign(Tensor(weights, shape: [2, 128]))
            let model = Sequential([conv.named("conv"), ReLU().named("relu"), Flatten().named("flatten"), head.named("fc")])
            try model.move(to: device)
            let pixels = (0..<64).map { index in index / 8 < 4 && index % 8 < 4 ? random.float(0.7, 1) : random.float(0, 0.3) }
            let x = try Tensor(pixels, shape: [1, 8, 8])
            let explainer = Explainer(model: model, device: device)
            XCTAssertEqual(try explainer.defaultGradCAMLayer(for: [1, 8, 8]), "relu")
            let cam = try explainer.gradCAM(x, target: 1)
            let total = cam.values.reduce(0, +)
            let quadrant = (0..<4).flatMap { y in (0..<4).map { cam.values[y * 8 + $0] } }.reduce(0, +)
            XCTAssertGreaterThan(total, 0)
            XCTAssertGreaterThanOrEqual(quadrant / total, 0.95, "on \(device)")
            XCTAssertThrowsError(try explainer.gradCAM(x, target: 1, layer: "fc")) {
                XCTAssertTrue("\($0)".contains("Grad-CAM needs a layer with a spatial output [N, C, H, W]; fc gives [1, 2]"), "\($0)")
            }
        }
    }

    /// Adebayo et al. (2018): a saliency method must depend on the model. Re-initialising a trained model's
    /// weights must change its saliency maps (Spearman rank correlation below 0.5).
    func testSaliencyFailsTheModelRandomisationCheckOfAMethodThatIgnoresTheModel() throws {
        let (data, trained) = try KilnCommand.trainedRun.get()
        let file = try SafeTensors.read(from: trained.appending(path: "best.safetensors"))
        let model = try ModelZoo.make("lenet-bn2", inputShape: [1, 28, 28], classes: 10)
        try model.loadStateDict(TrainingCheckpoint.modelPart(of: file), source: "best.safetensors")
        let randomised = try ModelZoo.make("lenet-bn2", inputShape: [1, 28, 28], classes: 10)
        try randomised.reset(seed: 99)
        let test = try Dataset.load(data.path, split: .test)
        var correlations: [Double] = []
        for index in 0..<6 {
            let x = try Tensor(test.pixels(of: [index]), shape: [1, 28, 28])
            let explainer = Explainer(model: model, device: .host)
            let target = try explainer.prediction(x)
            let a = try explainer.saliency(x, target: target).values
            let b = try Explainer(model: randomised, device: .host).saliency(x, target: target).values
            correlations.append(spearman(a, b))
            // The same model gives the same map: the check can pass.
            XCTAssertEqual(spearman(a, try explainer.saliency(x, target: target).values), 1, accuracy: 1e-9)
        }
        let mean = correlations.reduce(0, +) / Double(correlations.count)
        XCTAssertLessThan(mean, 0.5, "rank correlations \(correlations)")
    }

    /// The input found for a channel excites it more than any of 16 real images does, on host and POCL.
    func testTheMaximisingInputExcitesItsChannelMoreThanRealImages() throws {
        let (data, trained) = try KilnCommand.trainedRun.get()
        let file = TrainingCheckpoint.modelPart(of: try SafeTensors.read(from: trained.appending(path: "best.safetensors")))
        let test = try Dataset.load(data.path, split: .test)
        let real = try Tensor(test.pixels(of: Array(0..<16)), shape: [16, 1, 28, 28])
        for device in try testDevices() {
            let model = try ModelZoo.make("lenet-bn2", inputShape: [1, 28, 28], classes: 10)
            try model.loadStateDict(file, source: "best.safetensors")
            try model.move(to: device)
            let explainer = Explainer(model: model, device: device)
            // bn2, before its ReLU: a channel the ReLU turns off everywhere has no gradient to climb.
            let found = try explainer.maximizingInputs(layer: "bn2", channels: [0, 5], imageShape: [1, 28, 28], steps: 60)
            XCTAssertEqual(found.shape, [2, 1, 28, 28])
            XCTAssertTrue(found.values.allSatisfy { $0 >= 0 && $0 <= 1 }, "clipped to the images' range")
            func meanActivation(_ images: Tensor, channel: Int) throws -> [Float] {
                _ = try model.forward(images.to(device), .inference)
                let maps = try XCTUnwrap(model.output(of: "bn2")).toArray()  // [N, 16, 10, 10]
                return (0..<images.shape[0]).map { n in maps[((n * 16 + channel) * 100)..<((n * 16 + channel + 1) * 100)].reduce(0, +) / 100 }
            }
            for (copy, channel) in [0, 5].enumerated() {
                let input = try Tensor(Array(found.values[(copy * 784)..<((copy + 1) * 784)]), shape: [1, 1, 28, 28])
                let best = try meanActivation(input, channel: channel)[0]
                let realBest = try meanActivation(real, channel: channel).max() ?? 0
                XCTAssertGreaterThan(best, realBest, "channel \(channel) on \(device)")
            }
        }
        let explainer = Explainer(model: try ModelZoo.make("lenet-bn2", inputShape: [1, 28, 28], classes: 10), device: .host)
        XCTAssertThrowsError(try explainer.maximizingInputs(layer: "6", channels: [16], imageShape: [1, 28, 28], steps: 1)) {
            XCTAssertTrue("\($0)".contains("6 has 16 channels (0–15); there is no channel 16"), "\($0)")
        }
        XCTAssertThrowsError(try explainer.maximizingInputs(layer: "fc9", channels: [0], imageShape: [1, 28, 28])) {
            XCTAssertTrue("\($0)".contains("no layer 'fc9' (at 'fc9' the layers are conv1, bn1, 2"), "\($0)")
        }
        // Inside a nested sequence (VGG's features.N): the prefix stops there.
        let vgg = try ModelZoo.make("vgg11-bn", inputShape: [1, 32, 32], classes: 10)
        let inner = try Explainer(model: vgg, device: .host).maximizingInputs(layer: "features.1", channels: [3], imageShape: [1, 32, 32], steps: 3)
        XCTAssertEqual(inner.shape, [1, 1, 32, 32])
        let resnet = try ResNet18(inputChannels: 1, classes: 10, stem: .smallImage)
        XCTAssertThrowsError(try Explainer(model: resnet, device: .host).maximizingInputs(layer: "layer1.0.conv1", channels: [0], imageShape: [1, 8, 8])) {
            XCTAssertTrue("\($0)".contains("reaches into sequences only: 0 is a Residual"), "\($0)")
        }
    }

    private func spearman(_ a: [Float], _ b: [Float]) -> Double {
        func ranks(_ values: [Float]) -> [Double] {
            let order = values.indices.sorted { values[$0] < values[$1] }
            var result = [Double](repeating: 0, count: values.count)
            var start = 0
            while start < order.count {
                var end = start
                while end + 1 < order.count, values[order[end + 1]] == values[order[start]] { end += 1 }
                for k in start...end { result[order[k]] = Double(start + end) / 2 }
                start = end + 1
            }
            return result
        }
        let (x, y) = (ranks(a), ranks(b))
        let (mx, my) = (x.reduce(0, +) / Double(x.count), y.reduce(0, +) / Double(y.count))
        let covariance = zip(x, y).map { ($0 - mx) * ($1 - my) }.reduce(0, +)
        let (vx, vy) = (x.map { ($0 - mx) * ($0 - mx) }.reduce(0, +), y.map { ($0 - my) * ($0 - my) }.reduce(0, +))
        return covariance / (vx * vy).squareRoot()
    }

    func testFeatureMapsAndFiltersAreTheLayersOwnValues() throws {
        for device in try testDevices() {
            let model = try smallClassifier()
            try model.move(to: device)
            let x = try image(), explainer = Explainer(model: model, device: device)
            let (layer, maps) = try explainer.featureMaps(x)
            XCTAssertEqual(layer, "4", "the max pooling, the last spatial output")
            XCTAssertEqual(maps.shape, [4, 4, 4])
            XCTAssertEqual(maps.values, try XCTUnwrap(model.output(of: "4")).toArray())
            let grid = try maps.grid(scale: 2)
            XCTAssertEqual([grid.channels, grid.height, grid.width], [1, 2 * (8 + 1) + 1, 2 * (8 + 1) + 1], "2×2 tiles of 8×8 with borders")
            let (convolution, filters) = try explainer.filters()
            XCTAssertEqual(convolution, "conv1")
            XCTAssertEqual(filters.shape, [4, 1, 3, 3])
            XCTAssertEqual(filters.values, try model.namedParameters[0].parameter.value.toArray())
            XCTAssertThrowsError(try explainer.filters(layer: "bn1")) { XCTAssertTrue("\($0)".contains("bn1 is a BatchNorm"), "\($0)") }
            XCTAssertThrowsError(try explainer.featureMaps(x, layer: "fc")) { XCTAssertTrue("\($0)".contains("fc gives [1, 3]"), "\($0)") }
        }
        let picture = TensorPicture(shape: [2, 3], values: [1, 2, 3, 4, 5, 6]).npyData()
        XCTAssertTrue(String(decoding: picture[10..<74], as: UTF8.self).contains("'shape': (2, 3)"))
    }

    func testNpyFilesHaveNumPysHeaderAndTheValues() throws {
        let map = AttributionMap(height: 2, width: 3, values: [1, -2, 0.5, 0, 3, 1e-3])
        let bytes = map.npyData()
        XCTAssertEqual(Array(bytes.prefix(8)), [0x93] + Array("NUMPY".utf8) + [1, 0])
        let headerLength = Int(bytes[8]) | Int(bytes[9]) << 8
        XCTAssertEqual((10 + headerLength) % 64, 0)
        let header = String(decoding: bytes[10..<(10 + headerLength)], as: UTF8.self)
        XCTAssertTrue(header.hasPrefix("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }"), header)
        XCTAssertTrue(header.hasSuffix("\n"))
        let values = stride(from: 10 + headerLength, to: bytes.count, by: 4).map { at in
            Float(bitPattern: UInt32(bytes[at]) | UInt32(bytes[at + 1]) << 8 | UInt32(bytes[at + 2]) << 16 | UInt32(bytes[at + 3]) << 24)
        }
        XCTAssertEqual(values, map.values)
    }

    func testTheOverlayIsAnRGBImageOfTheScaledSize() throws {
        let map = AttributionMap(height: 2, width: 2, values: [0, 1, 2, 4])
        let image = ImageFile(channels: 1, height: 2, width: 2, pixels: [0, 0, 1, 1])
        let overlay = try map.overlay(on: image, scale: 3)
        let decoded = try ImageFile.parse(bytes: try overlay.pngData(), path: "overlay.png")
        XCTAssertEqual([decoded.channels, decoded.height, decoded.width], [3, 6, 6])
        // The largest value is viridis' yellow over white; zero its purple over black.
        let (brightest, darkest) = (viridis(1), viridis(0))
        XCTAssertEqual(overlay.pixels[5 * 6 + 5], 0.5 + 0.5 * brightest[0], accuracy: 1e-6)
        XCTAssertEqual(overlay.pixels[0], 0.5 * darkest[0], accuracy: 1e-6)
    }
}

/// `kiln explain` as a user runs it, and its errors.
final class ExplainCommandLineTests: XCTestCase {
    func testExplainWritesAPNGAndAnNpyFilePerImageAndMethod() throws {
        let (data, trained) = try KilnCommand.trainedRun.get()
        let out = FileManager.default.temporaryDirectory.appending(path: "kiln-explain-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: out) }
        let checkpoint = trained.appending(path: "best.safetensors").path
        let run = try KilnCommand.run(["explain", "--checkpoint", checkpoint, "--data", data.path, "--device", "host", "--index", "0", "3",
                                       "--method", "saliency", "gradcam", "occlusion", "feature-maps", "filters", "--out", out.path])
        XCTAssertEqual(run.status, 0, run.output)
        XCTAssertTrue(run.output.contains("wrote 18 files and explanations.csv"), run.output)
        XCTAssertEqual(try ImageFile.read(out.appending(path: "filters.png")).channels, 1)
        XCTAssertEqual(try Data(contentsOf: out.appending(path: "test-3_feature-maps.npy")).count, 128 + 16 * 5 * 5 * 4)
        for name in ["test-0_saliency", "test-3_gradcam", "test-3_occlusion"] {
            let png = try ImageFile.read(out.appending(path: "\(name).png"))
            XCTAssertEqual([png.channels, png.height, png.width], [3, 224, 224], name)
            XCTAssertEqual(try Data(contentsOf: out.appending(path: "\(name).npy")).count, 128 + 28 * 28 * 4, name)
        }
        let table = try String(contentsOf: out.appending(path: "explanations.csv"), encoding: .utf8)
        XCTAssertEqual(table.split(separator: "\n").count, 10, table)
        let overview = try KilnCommand.run(["explain", "--checkpoint", checkpoint, "--data", data.path, "--device", "host", "--index", "1",
                                            "--all", "--scale", "2", "--out", out.appending(path: "all").path])
        XCTAssertEqual(overview.status, 0, overview.output)
        XCTAssertTrue(overview.output.contains("wrote 11 files"), overview.output)
        let panels = try ImageFile.read(out.appending(path: "all/test-1_all.png"))
        XCTAssertEqual([panels.channels, panels.height, panels.width], [3, 56 + 4, 6 * (56 + 2) + 2], "the image and five maps, side by side")

        let errors: [([String], String)] = [
            (["--method", "lime"], "Error: unknown method 'lime'; use saliency, smoothgrad, integrated-gradients, gradcam, occlusion, feature-maps, filters, maximize"),
            (["--layer", "conv9"], "Error: --layer: no layer 'conv9': the model has no 'conv9'; its layers: conv1, bn1, 2, 3, conv2"),
            (["--target", "12"], "Error: --target 12 is not one of the model's 10 classes (0–9)"),
            (["--method", "maximize"], "Error: maximize needs --layer: a layer, best one before its ReLU"),
            (["--method", "maximize", "--layer", "bn2", "--channels", "16"], "error: bn2 has 16 channels (0–15); there is no channel 16"),
            (["--method", "gradcam", "--layer", "fc1"], "error: Grad-CAM needs a layer with a spatial output [N, C, H, W]; fc1 gives [1, 120]"),
        ]
        // A model without class scores: a state dict of the zoo's autoencoder.
        let autoencoder = out.appending(path: "autoencoder.safetensors")
        try FileManager.default.createDirectory(at: out, withIntermediateDirectories: true)
        try ModelZoo.make("autoencoder", inputShape: [1, 28, 28], classes: 10).stateDict().write(to: autoencoder)
        let refused = try KilnCommand.run(["explain", "--checkpoint", autoencoder.path, "--model", "autoencoder", "--data", data.path,
                                           "--device", "host", "--index", "0", "--out", out.appending(path: "bad").path])
        XCTAssertEqual(refused.status, 64, refused.output)
        XCTAssertTrue(refused.output.contains("Error: autoencoder is not a classifier: explain needs class scores"), refused.output)
        for (arguments, message) in errors {
            let folder = out.appending(path: "bad")
            let failed = try KilnCommand.run(["explain", "--checkpoint", checkpoint, "--data", data.path, "--device", "host", "--index", "0",
                                              "--out", folder.path] + arguments)
            XCTAssertNotEqual(failed.status, 0, failed.output)
            XCTAssertTrue(failed.output.contains(message), "\(arguments):\n\(failed.output)")
            XCTAssertFalse(FileManager.default.fileExists(atPath: folder.path), "\(arguments): nothing written")
        }
    }
}
