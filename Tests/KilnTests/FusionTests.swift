import XCTest
@testable import Kiln

/// Inference-time fusion (Sources/Kiln/Layers/Fusion.swift) against the unfused layers it replaces, which
/// stay the reference: a convolution with ReLU in one pass, batch norm folded into a convolution, and the
/// cache of folded weights following every change of the tensors they come from.
final class FusionTests: XCTestCase {
    private var random = TestRandom(seed: 77)

    /// conv2d(relu: true) equals ReLU after conv2d, and conv2dMaxPooled equals 2x2 max pooling after either,
    /// on both backends, for every OpenCL algorithm, on shapes with odd sizes, stride 2, padding, groups and
    /// batch 1.
    func testConvolutionWithReLUMatchesTheSeparateOps() throws {
        let cases: [([Int], [Int], Conv2DGeometry)] = [
            ([1, 1, 11, 13], [6, 1, 5, 5], try Conv2DGeometry(kernelSize: 5, padding: 2)),
            ([3, 6, 9, 10], [16, 6, 5, 5], try Conv2DGeometry(kernelSize: 5)),
            ([2, 4, 9, 9], [6, 2, 3, 3], try Conv2DGeometry(kernelSize: 3, stride: 2, padding: 1, groups: 2)),
            ([2, 20, 7, 7], [8, 20, 3, 3], try Conv2DGeometry(kernelSize: 3, padding: 1)),
            ([2, 20, 7, 9], [18, 20, 3, 3], try Conv2DGeometry(kernelSize: 3, padding: 1)),      // the host's Winograd
            ([1, 3, 13, 30], [24, 3, 5, 5], try Conv2DGeometry(kernelSize: 5, padding: 2)),       // channel vectors of 8
            ([2, 4, 11, 9], [32, 2, 3, 3], try Conv2DGeometry(kernelSize: 3, stride: 2, padding: 1, groups: 2)),  // of 16
        ]
        let gpu = try openCLDevice()
        let backend = try XCTUnwrap(try gpu.backend() as? OpenCLBackend)
        defer { backend.forcedConvolutionAlgorithm = nil }
        let pool = try Pool2DGeometry(window: 2)
        for (input, weightShape, geometry) in cases {
            let shape = try Conv2DShape(input: input, weight: weightShape, geometry: geometry)
            let x = try Tensor(random.floats(input.reduce(1, *)), shape: input)
            let w = try Tensor(random.floats(weightShape.reduce(1, *)), shape: weightShape)
            let b = try Tensor(random.floats(weightShape[0]), shape: [weightShape[0]])
            let convolved = try conv2d(x, weight: w, bias: b, geometry: geometry)
            let reference = try convolved.map(.relu).toArray()
            XCTAssertTrue(reference.contains(0) && reference.contains { $0 > 0 }, "the case has both signs")
            // Max pooling after the convolution, with and without ReLU (odd sizes drop their last row or column).
            let pooled = try pool2d(.max, convolved, geometry: pool).output.toArray()
            let pooledReLU = try pool2d(.max, convolved.map(.relu), geometry: pool).output.toArray()
            assertClose(try conv2d(x, weight: w, bias: b, geometry: geometry, relu: true).toArray(), reference, "host \(input)")
            assertClose(try conv2dMaxPooled(x, weight: w, bias: b, geometry: geometry).toArray(), pooled, "host pooled \(input)")
            assertClose(try conv2dMaxPooled(x, weight: w, bias: b, geometry: geometry, relu: true).toArray(), pooledReLU,
                        "host pooled ReLU \(input)")
            let (gx, gw, gb) = (try x.to(gpu), try w.to(gpu), try b.to(gpu))
            let atol = 1e-5 * Float(shape.patchSize)
            for algorithm in backend.applicableConvolutionAlgorithms(for: shape, pass: .forward) {
                backend.forcedConvolutionAlgorithm = algorithm
                assertClose(try conv2d(gx, weight: gw, bias: gb, geometry: geometry, relu: true).toArray(), reference,
                            atol: atol, "\(algorithm) \(input)")
                assertClose(try conv2dMaxPooled(gx, weight: gw, bias: gb, geometry: geometry).toArray(), pooled,
                            atol: atol, "\(algorithm) pooled \(input)")
                assertClose(try conv2dMaxPooled(gx, weight: gw, bias: gb, geometry: geometry, relu: true).toArray(), pooledReLU,
                            atol: atol, "\(algorithm) pooled ReLU \(input)")
            }
        }
    }

    /// linear(relu:) against a plain loop over the products, with and without bias and ReLU, on the host
    /// and on OpenCL with every work-item block of Kernels/linear.cl: batch 1, feature counts that leave a
    /// partial vector, partial row and column blocks, LeNet's head, and a layer too large for the kernel
    /// (CLBlast's GEMM then the bias and ReLU).
    func testLinearMatchesALoopOverTheProducts() throws {
        let gpu = try openCLDevice()
        let backend = try XCTUnwrap(try gpu.backend() as? OpenCLBackend)
        for (batch, inputs, outputs) in [(1, 7, 3), (5, 84, 10), (9, 33, 13), (6, 400, 120), (3, 1100, 960)] {
            let xs = random.floats(batch * inputs), ws = random.floats(outputs * inputs), bs = random.floats(outputs)
            let x = try Tensor(xs, shape: [batch, inputs]), w = try Tensor(ws, shape: [outputs, inputs])
            let b = try Tensor(bs, shape: [outputs])
            let (gx, gw, gb) = (try x.to(gpu), try w.to(gpu), try b.to(gpu))
            let atol = 1e-6 * Float(inputs)
            for (useBias, relu) in [(false, false), (true, false), (true, true)] {
                var expected = [Float](repeating: 0, count: batch * outputs)
                for n in 0..<batch {
                    for o in 0..<outputs {
                        var sum: Double = useBias ? Double(bs[o]) : 0
                        for k in 0..<inputs { sum += Double(xs[n * inputs + k]) * Double(ws[o * inputs + k]) }
                        expected[n * outputs + o] = relu ? Float(max(sum, 0)) : Float(sum)
                    }
                }
                let label = "[\(batch), \(inputs)] -> \(outputs), bias \(useBias), relu \(relu)"
                assertClose(try linear(x, weight: w, bias: useBias ? b : nil, relu: relu).toArray(), expected, atol: atol, "host \(label)")
                assertClose(try linear(gx, weight: gw, bias: useBias ? gb : nil, relu: relu).toArray(), expected, atol: atol, "OpenCL \(label)")
                guard inputs * outputs <= 1 << 20 else { continue }
                for block in OpenCLBackend.LinearBlock.allCases {
                    let y = try Tensor.empty([batch, outputs], on: gpu)
                    try backend.fusedLinearForward(gx, weight: gw, bias: useBias ? gb : nil, relu: relu, block: block, into: y)
                    assertClose(try y.toArray(), expected, atol: atol, "OpenCL block \(block) \(label)")
                }
            }
        }
        XCTAssertThrowsError(try linear(try Tensor.zeros([2, 5]), weight: try Tensor.zeros([3, 4]))) { error in
            XCTAssertTrue("\(error)".contains("[2, 5]") && "\(error)".contains("[3, 4]"), "\(error)")
        }
    }

    /// A trained LeNet-BN and a ResNet block stack predict the same with fusion (`.prediction`) as without
    /// (`.inference`), after training steps change the weights and the running statistics, and after a
    /// checkpoint is loaded into the model: the folded weights are recomputed each time.
    func testFusedPredictionsFollowTheWeights() throws {
        for device in try testDevices() {
            for (name, inputShape) in [("lenet-bn", [1, 28, 28]), ("resnet18", [3, 8, 8])] {
                let model = try ModelZoo.make(name, inputShape: inputShape, classes: 10)
                try model.reset(seed: 3)
                try model.move(to: device)
                let x = try Tensor(random.floats(4 * inputShape.reduce(1, *)), shape: [4] + inputShape).to(device)
                let optimizer = Optimizer(model: model, rule: .sgd(momentum: 0.9, nesterov: false), learningRate: 0.05)
                let trainer = Trainer(model: model, optimizer: optimizer, loss: crossEntropyLoss, seed: 1)
                let batch = Batch(inputs: x, targets: try Tensor([1, 2, 3, 4], shape: [4], on: device), labels: [1, 2, 3, 4])
                var earlier: [Float] = []
                for round in 0..<3 {
                    try trainer.trainStep(batch)
                    let fused = try model.forward(x, .prediction).toArray()
                    let reference = try model.forward(x, .inference).toArray()
                    assertClose(fused, reference, atol: 1e-4, rtol: 1e-3, "\(name) on \(device), round \(round)")
                    XCTAssertNotEqual(fused, earlier, "training changed the predictions")
                    earlier = fused
                }
                // Loading other weights in place: the fold follows.
                let other = try ModelZoo.make(name, inputShape: inputShape, classes: 10)
                try other.reset(seed: 9)
                try model.loadStateDict(try other.stateDict(), source: "the other model")
                assertClose(try model.forward(x, .prediction).toArray(), try other.forward(try x.to(.host), .inference).toArray(),
                            atol: 1e-4, rtol: 1e-3, "\(name) on \(device) after loading")
            }
        }
    }

    /// Max pooling of ReLU(x) in one pass equals ReLU then max pooling, forward and backward, on both
    /// backends, for disjoint windows (the scatter path) and overlapping ones (the gather path), batch 1 and
    /// odd sizes.
    func testReLUFusedIntoMaxPoolingMatchesTheSeparateOps() throws {
        let geometries = [try Pool2DGeometry(window: 2), try Pool2DGeometry(window: 3, stride: 2, padding: 1),
                          try Pool2DGeometry(window: (2, 3), stride: (2, 3))]
        for device in try testDevices() {
            for (trial, geometry) in geometries.enumerated() {
                let shape = [trial == 0 ? 1 : 2, 3, 7 + trial, 9]
                let x = try Tensor(random.floats(shape.reduce(1, *)), shape: shape, on: device)
                let separate = try pool2d(.max, x.map(.relu), geometry: geometry)
                let fused = try pool2d(.max, x, geometry: geometry, relu: true)
                assertClose(try fused.output.toArray(), try separate.output.toArray(), "forward \(geometry) on \(device)")
                let dy = try Tensor(random.floats(separate.output.count), shape: separate.output.shape, on: device)
                let throughReLU = try x.activationGradient(.relu, dy: try pool2dBackward(.max, dy: dy, argmax: separate.argmax,
                                                                                         inputShape: shape, geometry: geometry))
                let dx = try pool2dBackward(.max, dy: dy, argmax: fused.argmax, inputShape: shape, geometry: geometry,
                                            reluOutput: fused.output)
                assertClose(try dx.toArray(), try throughReLU.toArray(), "backward \(geometry) on \(device)")
            }
        }
    }

    /// A training step of LeNet-BN (whose ReLUs feed max poolings) gives the same outputs and parameter
    /// gradients with its ReLUs fused into the poolings as without.
    func testFusedTrainingStepMatchesTheUnfusedOne() throws {
        for device in try testDevices() {
            let (fused, unfused) = (try ModelZoo.make("lenet-bn", inputShape: [1, 28, 28], classes: 10),
                                    try ModelZoo.make("lenet-bn", inputShape: [1, 28, 28], classes: 10))
            for model in [fused, unfused] {
                try model.reset(seed: 5)
                try model.move(to: device)
            }
            let x = try Tensor(random.floats(3 * 784), shape: [3, 1, 28, 28], on: device)
            let dy = try Tensor(random.floats(30), shape: [3, 10], on: device)
            var context = ForwardContext(training: true, step: 1, seed: 1, needsInputGradient: false)
            let fusedOutput = try fused.forward(x, context).toArray()
            _ = try fused.backward(dy)
            context.fusesLayers = false
            assertClose(fusedOutput, try unfused.forward(x, context).toArray(), "output on \(device)")
            _ = try unfused.backward(dy)
            for ((name, a), (_, b)) in zip(fused.namedParameters, unfused.namedParameters) where a.requiresGradient {
                assertClose(try XCTUnwrap(a.gradient).toArray(), try XCTUnwrap(b.gradient).toArray(), atol: 1e-5, rtol: 1e-4,
                            "gradient of \(name) on \(device)")
            }
        }
    }

    /// A fused pass records the outputs of the layers it computed; the layers it fused away report none.
    func testFusedAwayLayersRecordNoOutput() throws {
        let model = try ModelZoo.make("lenet-bn", inputShape: [1, 28, 28], classes: 10)
        let x = try Tensor(random.floats(2 * 784), shape: [2, 1, 28, 28])
        let names = model.layers.map(\.name)
        _ = try model.forward(x, .prediction)
        XCTAssertNil(model.output(of: names[0]), "the convolution was fused with its batch norm, ReLU and pooling")
        XCTAssertNil(model.output(of: names[1]))
        XCTAssertNil(model.output(of: names[2]))
        XCTAssertNotNil(model.output(of: names[3]))
        _ = try model.forward(x, .inferenceRecordingEveryLayer)
        XCTAssertNotNil(model.output(of: names[0]))
    }

    /// Fusion reaches into containers: a residual block's body, inside a stage inside the network, runs each
    /// convolution with the batch norm after it.
    func testFusionReachesIntoResidualBlocks() throws {
        let model = try ModelZoo.make("resnet18", inputShape: [3, 8, 8], classes: 10)
        let x = try Tensor(random.floats(2 * 3 * 64), shape: [2, 3, 8, 8])
        let body = try XCTUnwrap(try model.layer(named: "layer2.0") as? Residual).body
        _ = try model.forward(x, .prediction)
        XCTAssertNil(body.output(of: "conv1"), "conv1 was fused with bn1 and the ReLU")
        XCTAssertNil(body.output(of: "conv2"), "conv2 was fused with bn2")
        XCTAssertNotNil(body.output(of: "bn2"))
        _ = try model.forward(x, .inference)
        XCTAssertNotNil(body.output(of: "conv2"), "a pass that may be followed by a backward does not fuse")
    }

    /// Kiln's writers count as modifications of a parameter, which keys the cache of folded weights.
    func testWritersBumpTheParameterVersion() throws {
        let conv = try Conv2D(inputChannels: 1, outputChannels: 2, kernelSize: 3)
        let version = conv.weight.version
        try conv.weight.reset(seed: 4)
        XCTAssertGreaterThan(conv.weight.version, version)
        let afterReset = conv.weight.version
        let model = Sequential { conv }
        _ = try model.forward(try Tensor(random.floats(2 * 25), shape: [2, 1, 5, 5]), ForwardContext(training: true))
        _ = try model.backward(try Tensor(random.floats(2 * 2 * 9), shape: [2, 2, 3, 3]))
        try Optimizer(model: model, rule: .sgd(momentum: 0, nesterov: false), learningRate: 0.1).step()
        XCTAssertGreaterThan(conv.weight.version, afterReset, "an optimiser step")
    }
}
