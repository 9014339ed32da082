import Foundation
import XCTest
@testable import Kiln

/// Behaviour that whole-model comparisons pass over: layers adding to gradient buffers that already hold
/// values, buffers that count, optimiser state that is partly missing, the tuner's file when damaged, and
/// DropConnect's masks.
final class AccumulationAndStateTests: XCTestCase {
    private var random = TestRandom(seed: 77)

    /// Backward adds to a gradient that holds values (several losses, gradient accumulation), rather than
    /// overwriting it: the result is the earlier values plus what a fresh layer computes.
    func testBatchNormAndPReLUAddToGradientsThatHoldValues() throws {
        for device in try testDevices() {
            let x = try Tensor(random.floats(2 * 3 * 4 * 5, -2, 2).map { abs($0) < 0.05 ? $0 + 0.1 : $0 }, shape: [2, 3, 4, 5], on: device)
            let dy = try Tensor(random.floats(x.count), shape: x.shape, on: device)
            let earlier = random.floats(3)
            let pairs: [(String, (fresh: any Layer, accumulating: any Layer), [(Parameter, Parameter)])] = try {
                let (bn1, bn2) = (try BatchNorm(features: 3), try BatchNorm(features: 3))
                let (pr1, pr2) = (try PReLU(channels: 3), try PReLU(channels: 3))
                return [("BatchNorm", (bn1, bn2), [(bn1.weight, bn2.weight), (bn1.bias, bn2.bias)]),
                        ("PReLU", (pr1, pr2), [(pr1.weight, pr2.weight)])]
            }()
            for (name, layers, parameters) in pairs {
                try layers.fresh.move(to: device)
                try layers.accumulating.move(to: device)
                for (_, parameter) in parameters { parameter.gradient = try Tensor(earlier, shape: [3], on: device) }
                for layer in [layers.fresh, layers.accumulating] {
                    _ = try layer.forward(x, ForwardContext(training: true))
                    _ = try layer.backward(dy)
                }
                for (fresh, accumulating) in parameters {
                    let computed = try XCTUnwrap(fresh.gradient).toArray()
                    XCTAssertTrue(computed.contains { $0 != 0 }, "\(name): a gradient to add")
                    assertClose(try XCTUnwrap(accumulating.gradient).toArray(), zip(computed, earlier).map { $0 + $1 },
                                "\(name) accumulates on \(device)")
                }
            }
        }
    }

    /// num_batches_tracked counts training-mode forward passes only, as in PyTorch.
    func testBatchNormCountsTrainingBatches() throws {
        for device in try testDevices() {
            let layer = try BatchNorm(features: 2)
            try layer.move(to: device)
            let x = try Tensor(random.floats(4 * 2), shape: [4, 2], on: device)
            for _ in 0..<3 { _ = try layer.forward(x, ForwardContext(training: true)) }
            _ = try layer.forward(x, .inference)
            XCTAssertEqual(try layer.batchesTracked.value.item(), 3, "on \(device)")
        }
    }

    /// A state file without some parameters' state (one added to the model since, or never updated) loads
    /// the rest; those start afresh, as PyTorch creates its state on first use. A file without its step
    /// count is an error naming the file.
    func testOptimizerStateWithMissingEntries() throws {
        func make() throws -> (Optimizer, Parameter, Parameter) {
            let a = try Parameter([3], initializer: .constant(1)), b = try Parameter([2], initializer: .constant(1))
            return (Optimizer(parameters: [("a", a), ("b", b)], rule: .sgd(momentum: 0.9), learningRate: 0.1), a, b)
        }
        let (first, a, b) = try make()
        for gradient in [[1, 2, 3], [3, 2, 1]] as [[Float]] {
            a.gradient = try Tensor(gradient, shape: [3])
            b.gradient = try Tensor([1, 1], shape: [2])
            try first.step()
        }
        let saved = try first.state()
        var partial = SafeTensors()
        partial.metadata = saved.metadata
        for name in saved.names where name.hasPrefix("a.") { partial.set(name, try XCTUnwrap(saved[name])) }

        let (second, a2, b2) = try make()
        try a2.value.assign(a.value)
        try b2.value.assign(b.value)
        try second.loadState(partial, source: "partial.safetensors")
        XCTAssertEqual(second.stepCount, 2)
        a2.gradient = try Tensor([1, 1, 1], shape: [3])
        b2.gradient = try Tensor([1, 1], shape: [2])
        try second.step()
        // a continues its momentum: v = 0.9·(0.9·[1,2,3] + [3,2,1]) + 1; b starts afresh: v = g.
        let velocity = zip([Float](arrayLiteral: 1, 2, 3), [Float](arrayLiteral: 3, 2, 1)).map { 0.9 * (0.9 * $0 + $1) + 1 }
        assertClose(try a2.value.toArray(), zip(try a.value.toArray(), velocity).map { $0 - 0.1 * $1 }, "a's momentum carried over")
        assertClose(try b2.value.toArray(), try b.value.toArray().map { $0 - 0.1 }, "b's momentum started afresh")

        var withoutStep = partial
        withoutStep.metadata["step"] = nil
        XCTAssertThrowsError(try make().0.loadState(withoutStep, source: "nostep.safetensors")) { error in
            XCTAssertTrue("\(error)".contains("nostep.safetensors") && "\(error)".contains("step"), "\(error)")
        }
    }

    /// A damaged or older tuner file costs only its measurements: nothing is loaded from it, nothing
    /// crashes, and the next choice rewrites it in the current format.
    func testADamagedOrOldTunerFileIsIgnoredAndRewritten() throws {
        let gpu = try openCLDevice()
        let backend = try XCTUnwrap(try gpu.backend() as? OpenCLBackend)
        let directory = FileManager.default.temporaryDirectory.appending(path: "kiln-tuner-file-\(ProcessInfo.processInfo.processIdentifier)")
        let (wasTuning, oldDirectory) = (backend.convolutionTuning, backend.convolutionCacheDirectory)
        defer {
            backend.convolutionTuning = wasTuning
            backend.convolutionCacheDirectory = oldDirectory
            try? FileManager.default.removeItem(at: directory)
        }
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        backend.convolutionCacheDirectory = directory
        let file = try XCTUnwrap(backend.convolutionTuner.fileURL)
        let validLine = "forward 2,4,9,7,6,3,3,1,1,1,1,1,1,1,1,1 implicitGEMM implicitGEMM=0.001"
        for damaged in ["\u{00}\u{FF}garbage\nmore", "kiln-conv-algorithms 0\n" + validLine, "kiln-conv-algorithms 1\nforward 1,2,x notAnAlgorithm"] {
            try Data(damaged.utf8).write(to: file)
            backend.convolutionCacheDirectory = directory  // reloads the file
            XCTAssertTrue(backend.convolutionChoices.isEmpty, "nothing loaded from \(damaged.debugDescription)")
        }
        backend.forcedConvolutionAlgorithm = nil
        backend.convolutionTuning = true
        let geometry = try Conv2DGeometry(kernelSize: 3, padding: 1)
        _ = try conv2d(Tensor.zeros([2, 4, 9, 7], on: gpu), weight: Tensor.zeros([6, 4, 3, 3], on: gpu), geometry: geometry)
        let text = try String(contentsOf: file, encoding: .utf8)
        XCTAssertTrue(text.hasPrefix("kiln-conv-algorithms 1\nforward 2,4,9,7,6,3,3"), text)
        backend.convolutionCacheDirectory = directory
        XCTAssertEqual(backend.convolutionChoices.count, 1, "the rewritten file loads")
    }

    /// DropConnect drops each weight with probability p (within a binomial bound), scales the kept ones by
    /// 1/(1 − p), draws a new mask each step, differs from the plain layer in training only, and its bias
    /// gradient and device backward agree with their definitions.
    func testDropConnectMasksAndGradients() throws {
        let (features, p): (Int, Float) = (64, 0.3)
        let layer = try DropConnectLinear(inputFeatures: features, outputFeatures: features, probability: p)
        try layer.linear.weight.value.fill(1)
        try XCTUnwrap(layer.linear.bias).value.fill(0)
        // With x = I and W = 1, y[n, o] = M[o, n]: the output is the mask itself.
        var identity = [Float](repeating: 0, count: features * features)
        for i in 0..<features { identity[i * features + i] = 1 }
        let x = try Tensor(identity, shape: [features, features])
        let mask = try layer.forward(x, ForwardContext(training: true, step: 1, seed: 9)).toArray()
        XCTAssertEqual(Set(mask), [0, 1 / (1 - p)], "kept weights are scaled by 1/(1 − p)")
        let dropped = Double(mask.filter { $0 == 0 }.count), n = Double(mask.count)
        let sigma = (n * Double(p) * Double(1 - p)).squareRoot()
        XCTAssertEqual(dropped, n * Double(p), accuracy: 4 * sigma, "the dropped fraction")
        XCTAssertNotEqual(try layer.forward(x, ForwardContext(training: true, step: 2, seed: 9)).toArray(), mask, "a new mask each step")
        XCTAssertEqual(try layer.forward(x, .inference).toArray(), identity.map { _ in 1 }, "no mask at inference")

        // The bias gradient is the batch sum of dy; the device's backward equals the host's.
        try layer.reset(seed: 2)
        let context = ForwardContext(training: true, step: 3, seed: 9)
        let input = try Tensor(random.floats(5 * features), shape: [5, features])
        let dy = try Tensor(random.floats(5 * features), shape: [5, features])
        _ = try layer.forward(input, context)
        try layer.zeroGradients()
        let dx = try layer.backward(dy).toArray()
        let dyValues = try dy.toArray()
        let batchSum = (0..<features).map { o in (0..<5).map { dyValues[$0 * features + o] }.reduce(0, +) }
        assertClose(try XCTUnwrap(layer.linear.bias?.gradient).toArray(), batchSum, "DropConnect bias gradient")
        for device in try testDevices() where device != .host {
            let copy = try DropConnectLinear(inputFeatures: features, outputFeatures: features, probability: p)
            try copy.reset(seed: 2)
            try copy.move(to: device)
            _ = try copy.forward(input.to(device), context)
            try copy.zeroGradients()
            assertClose(try copy.backward(dy.to(device)).toArray(), dx, "DropConnect dx on \(device)")
            assertClose(try XCTUnwrap(copy.linear.weight.gradient).toArray(), try XCTUnwrap(layer.linear.weight.gradient).toArray(),
                        "DropConnect dW on \(device)")
        }
    }
}
