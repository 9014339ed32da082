// The rows of the benchmark suite: whole models, convolutions on the layer shapes of those models,
// pooling and batch norm. FLOP counts: convolution 2·N·C_out·OH·OW·(C_in/g·kh·kw) per pass; a model's
// training step 3× its forward (forward, backward-data, backward-filter), its forward 2 FLOP per
// multiply-accumulate of its summary; max pooling one compare per window element; batch norm 5 FLOP per
// element forward (mean, variance, normalise, scale, shift) and 8 backward.
import Foundation

/// A convolution layer shape of a benchmarked model.
public struct BenchmarkConvolution: Sendable {
    public var inputChannels: Int, size: Int, outputChannels: Int, kernel: Int, stride: Int, padding: Int

    public var label: String {
        "\(inputChannels)x\(size)x\(size) -> \(outputChannels) k\(kernel) s\(stride) p\(padding)"
    }
}

extension BenchmarkSuite {
    /// The distinct convolution shapes of LeNet-BN (1x28x28) and ResNet-18's small-image network (3x32x32).
    public static let convolutionShapes: [(model: String, shapes: [BenchmarkConvolution])] = [
        ("lenet-bn", [BenchmarkConvolution(inputChannels: 1, size: 28, outputChannels: 6, kernel: 5, stride: 1, padding: 2),
                      BenchmarkConvolution(inputChannels: 6, size: 14, outputChannels: 16, kernel: 5, stride: 1, padding: 0)]),
        ("resnet18", [BenchmarkConvolution(inputChannels: 3, size: 32, outputChannels: 64, kernel: 3, stride: 1, padding: 1),
                      BenchmarkConvolution(inputChannels: 64, size: 32, outputChannels: 64, kernel: 3, stride: 1, padding: 1),
                      BenchmarkConvolution(inputChannels: 64, size: 32, outputChannels: 128, kernel: 3, stride: 2, padding: 1),
                      BenchmarkConvolution(inputChannels: 64, size: 32, outputChannels: 128, kernel: 1, stride: 2, padding: 0),
                      BenchmarkConvolution(inputChannels: 128, size: 16, outputChannels: 128, kernel: 3, stride: 1, padding: 1),
                      BenchmarkConvolution(inputChannels: 128, size: 16, outputChannels: 256, kernel: 3, stride: 2, padding: 1),
                      BenchmarkConvolution(inputChannels: 128, size: 16, outputChannels: 256, kernel: 1, stride: 2, padding: 0),
                      BenchmarkConvolution(inputChannels: 256, size: 8, outputChannels: 256, kernel: 3, stride: 1, padding: 1),
                      BenchmarkConvolution(inputChannels: 256, size: 8, outputChannels: 512, kernel: 3, stride: 2, padding: 1),
                      BenchmarkConvolution(inputChannels: 256, size: 8, outputChannels: 512, kernel: 1, stride: 2, padding: 0),
                      BenchmarkConvolution(inputChannels: 512, size: 4, outputChannels: 512, kernel: 3, stride: 1, padding: 1)]),
    ]

    /// The input shape a benchmarked model is measured on.
    static func inputShape(of model: String) -> [Int] { model == "lenet-bn" ? [1, 28, 28] : [3, 32, 32] }

    // MARK: Models

    /// A training step (forward, cross-entropy, backward, Nesterov update) or an inference forward of `name`.
    /// A model's training step or inference pass, with the launches per step and, with `options.profile`
    /// on an OpenCL device, a kernel profile of a few more steps.
    func model(_ name: String, batch: Int, training: Bool) throws -> (BenchmarkRecord, KernelProfile?) {
        let inputShape = Self.inputShape(of: name)
        func build() throws -> Sequential {
            let model = try ModelZoo.make(name, inputShape: inputShape, classes: 10)
            try model.reset(seed: 1)
            return model
        }
        let model = try build()
        try model.move(to: backend.device)
        let hostImages = try Tensor.uniform([batch] + inputShape, seed: 2)
        let images = try hostImages.to(backend.device)
        if backend.device != .host {
            try validate(try model.forward(images, .prediction), against: try build().forward(hostImages, .inference),
                         tolerance: 1e-3, "\(name) forward")
        }
        let labels = (0..<batch).map { $0 % 10 }
        let flopsPerImage = 2 * Double(try model.summary(inputShape: inputShape).multiplyAccumulates) * (training ? 3 : 1)
        let step: () throws -> Void
        var trainer: Trainer?
        if training {
            let optimizer = Optimizer(model: model, rule: .sgd(momentum: 0.9, nesterov: true), learningRate: 0.01)
            let modelTrainer = Trainer(model: model, optimizer: optimizer, loss: crossEntropyLoss, seed: 1)
            let data = Batch(inputs: images, targets: try Tensor(labels.map(Float.init), shape: [batch], on: backend.device),
                             labels: labels)
            trainer = modelTrainer
            step = { try modelTrainer.trainStep(data) }
        } else {
            step = { _ = try model.forward(images, .prediction) }
        }
        var result = record(model: name, batch: batch, mode: training ? "train" : "infer", seconds: try perStep(step),
                            flops: flopsPerImage * Double(batch), images: batch)
        guard let device = backend as? OpenCLBackend else { return (result, nil) }
        let launchesBefore = device.context.profiler.launches
        try step()
        result.launchesPerStep = Double(device.context.profiler.launches - launchesBefore)
        guard options.profile else { return (result, nil) }
        let profile = KernelProfile(backend: device)
        for _ in 0..<5 {
            if let trainer {
                trainer.profile = profile
                try step()
                trainer.profile = nil
            } else {
                try profile.beginStep()
                try step()
                try profile.endStep()
            }
        }
        return (result, profile)
    }

    /// Median seconds per call of `step`, timing enough calls per repeat to last about half a second (at
    /// most `stepsPerRepeat`), and fewer repeats for steps that take seconds.
    func perStep(_ step: () throws -> Void) throws -> Double {
        let start = ContinuousClock.now
        try step()
        try backend.synchronize()
        let first = Self.seconds(ContinuousClock.now - start)
        let steps = Swift.max(1, Swift.min(options.stepsPerRepeat, Int(0.5 / Swift.max(first, 1e-6))))
        let repeats = first > 2 ? Swift.min(options.repeats, 3) : options.repeats
        return try median(repeats: repeats) { for _ in 0..<steps { try step() } } / Double(steps)
    }

    // MARK: Ops

    /// One pass of a convolution: "forward", "backward-data" or "backward-filter".
    func convolution(_ c: BenchmarkConvolution, batch: Int, pass: String) throws -> BenchmarkRecord {
        let geometry = try Conv2DGeometry(kernelSize: c.kernel, stride: c.stride, padding: c.padding)
        let weightShape = [c.outputChannels, c.inputChannels, c.kernel, c.kernel]
        let shape = try Conv2DShape(input: [batch, c.inputChannels, c.size, c.size], weight: weightShape, geometry: geometry)
        let hostX = try Tensor.uniform(shape.inputShape, low: -1, high: 1, seed: 3)
        let hostW = try Tensor.uniform(weightShape, low: -0.1, high: 0.1, seed: 4)
        let hostDy = try Tensor.uniform(shape.outputShape, low: -1, high: 1, seed: 5)
        let (x, w, dy) = (try hostX.to(backend.device), try hostW.to(backend.device), try hostDy.to(backend.device))
        let run: () throws -> Void
        switch pass {
        case "forward":
            if backend.device != .host {
                try validate(try conv2d(x, weight: w, geometry: geometry), against: try conv2d(hostX, weight: hostW, geometry: geometry),
                             tolerance: 1e-3, "conv2d forward \(c.label)")
            }
            let y = try Tensor.empty(shape.outputShape, on: backend.device)
            run = { try backend.conv2dForward(x, weight: w, bias: nil, shape: shape, relu: false, into: y) }
        case "backward-data":
            if backend.device != .host {
                try validate(try conv2dBackwardData(dy, weight: w, inputShape: shape.inputShape, geometry: geometry),
                             against: try conv2dBackwardData(hostDy, weight: hostW, inputShape: shape.inputShape, geometry: geometry),
                             tolerance: 1e-3, "conv2d backward-data \(c.label)")
            }
            let dx = try Tensor.empty(shape.inputShape, on: backend.device)
            run = { try backend.conv2dBackwardData(dy, weight: w, shape: shape, into: dx) }
        default:
            if backend.device != .host {
                try validate(try conv2dBackwardFilter(x, dy, weightShape: weightShape, geometry: geometry),
                             against: try conv2dBackwardFilter(hostX, hostDy, weightShape: weightShape, geometry: geometry),
                             tolerance: 1e-3, "conv2d backward-filter \(c.label)")
            }
            let dw = try Tensor.empty(weightShape, on: backend.device)
            run = { try backend.conv2dBackwardFilter(x, dy, shape: shape, into: dw, accumulate: false) }
        }
        let time = try perStep(run)
        let flops = 2 * Double(batch * shape.outputChannels * shape.outputPixels * shape.patchSize)
        let chosen = algorithm(for: shape, pass: pass)
        var row = record(op: "conv2d", shape: c.label, batch: batch, mode: pass, seconds: time, flops: flops, algorithm: chosen.name)
        row.algorithmSeconds = chosen.timings
        return row
    }

    /// The convolution algorithm the backend runs for `shape`, and on OpenCL the tuner's time for each
    /// algorithm it tried.
    func algorithm(for shape: Conv2DShape, pass: String) -> (name: String, timings: [String: Double]?) {
        guard let device = backend as? OpenCLBackend,
              let pass = ConvolutionPass.allCases.first(where: { Self.passName($0) == pass }) else {
            return (shape.isPointwise ? "pointwiseGEMM" : "im2colGEMM", nil)
        }
        let choice = device.convolutionChoices.last { $0.pass == pass && $0.shape == shape }
        return (device.currentConvolutionAlgorithm(for: shape, pass: pass).rawValue,
                choice.map { Dictionary(uniqueKeysWithValues: $0.seconds.map { ($0.key.rawValue, $0.value) }) })
    }

    static func passName(_ pass: ConvolutionPass) -> String {
        switch pass {
        case .forward: return "forward"
        case .backwardData: return "backward-data"
        case .backwardFilter: return "backward-filter"
        }
    }

    /// Max pooling 2x2/2 on LeNet-BN's first feature map, forward and backward.
    func pooling(batch: Int) throws -> [BenchmarkRecord] {
        let geometry = try Pool2DGeometry(window: 2)
        let hostX = try Tensor.uniform([batch, 6, 28, 28], low: -1, high: 1, seed: 6)
        let x = try hostX.to(backend.device)
        let result = try pool2d(.max, x, geometry: geometry)
        if backend.device != .host {
            try validate(result.output, against: try pool2d(.max, hostX, geometry: geometry).output, tolerance: 0, "maxpool")
        }
        let label = "6x28x28 k2 s2"
        let y = try Tensor.empty(result.output.shape, on: backend.device), argmax = try Tensor.empty(result.output.shape, on: backend.device)
        let forward = try perStep { try backend.pool2dForward(.max, x, geometry: geometry, relu: false, into: y, argmax: argmax) }
        let dx = try Tensor.empty(x.shape, on: backend.device)
        let backward = try perStep { try backend.pool2dBackward(.max, dy: y, argmax: argmax, geometry: geometry, reluOutput: nil, into: dx) }
        let compares = Double(x.count)
        return [record(op: "maxpool", shape: label, batch: batch, mode: "forward", seconds: forward, flops: compares),
                record(op: "maxpool", shape: label, batch: batch, mode: "backward", seconds: backward, flops: Double(y.count))]
    }

    /// Training-mode batch norm on a ResNet-18 feature map [N, 64, 32, 32], forward and backward.
    func batchNorm(batch: Int) throws -> [BenchmarkRecord] {
        let shape = [batch, 64, 32, 32]
        let hostX = try Tensor.uniform(shape, low: -1, high: 1, seed: 7)
        let x = try hostX.to(backend.device)
        let ones = try Tensor.ones([64], on: backend.device), zeros = try Tensor.zeros([64], on: backend.device)
        let (runningMean, runningVariance) = (try Tensor.zeros([64], on: backend.device), try Tensor.ones([64], on: backend.device))
        let (y, mean, inverseStd) = (try Tensor.empty(shape, on: backend.device), try Tensor.empty([64], on: backend.device),
                                     try Tensor.empty([64], on: backend.device))
        let settings = BatchNormSettings()
        let forward = try perStep {
            try backend.batchNormTrainingForward(x, gamma: ones, beta: zeros, runningMean: runningMean, runningVariance: runningVariance,
                                                 settings: settings, into: y, savedMean: mean, savedInverseStd: inverseStd)
        }
        if backend.device != .host {
            let hostY = try Tensor.empty(shape)
            try HostBackend.shared.batchNormTrainingForward(
                hostX, gamma: try Tensor.ones([64]), beta: try Tensor.zeros([64]), runningMean: try Tensor.zeros([64]),
                runningVariance: try Tensor.ones([64]), settings: settings, into: hostY, savedMean: try Tensor.empty([64]),
                savedInverseStd: try Tensor.empty([64]))
            try validate(y, against: hostY, tolerance: 1e-3, "batch norm forward")
        }
        let (dx, dgamma, dbeta) = (try Tensor.empty(shape, on: backend.device), try Tensor.empty([64], on: backend.device),
                                   try Tensor.empty([64], on: backend.device))
        let backward = try perStep {
            try backend.batchNormBackward(x, dy: y, gamma: ones, savedMean: mean, savedInverseStd: inverseStd, into: dx,
                                          gammaGradient: dgamma, betaGradient: dbeta, accumulate: false)
        }
        let (elements, label) = (Double(x.count), "64x32x32")
        return [record(op: "batchnorm", shape: label, batch: batch, mode: "forward", seconds: forward, flops: 5 * elements),
                record(op: "batchnorm", shape: label, batch: batch, mode: "backward", seconds: backward, flops: 8 * elements)]
    }

    /// Augmentation pipelines on a batch of Fashion-MNIST-sized and CIFAR-sized images: the host's parameter
    /// draws and their upload included, as the data loader runs them. A mixing pipeline gets the partners'
    /// rows too. The device's result is checked against the host's first.
    func augmentation(batch: Int) throws -> [BenchmarkRecord] {
        var records: [BenchmarkRecord] = []
        for (label, shape) in [("1x28x28", [1, 28, 28]), ("3x32x32", [3, 32, 32])] {
            for text in ["standard", "strong", "crop:4,flip,mixup:0.2,cutmix:1"] {
                let spec = try AugmentationSpec(text)
                let pipeline = AugmentationPipeline(spec: spec, seed: 9, epochs: 10, classes: 10)
                let samples = Array(0..<batch), labels = samples.map { $0 % 10 }
                let partners = pipeline.partners(of: samples, epoch: 1, datasetCount: 60000)
                let rows = samples.count + (partners?.count ?? 0)
                let hostX = try Tensor.uniform([rows] + shape, low: 0, high: 1, seed: 8)
                let x = try hostX.to(backend.device)
                func run(_ images: Tensor) throws -> Tensor {
                    try pipeline.apply(to: images, samples: samples, labels: labels, partners: partners,
                                       partnerLabels: partners?.map { $0 % 10 }, epoch: 1).images
                }
                if backend.device != .host { try validate(try run(x), against: try run(hostX), tolerance: 1e-4, "augment \(text)") }
                let seconds = try perStep { _ = try run(x) }
                var row = record(op: "augment \(text)", shape: label, batch: batch, mode: "batch", seconds: seconds, flops: 0, images: batch)
                (row.gflops, row.fractionOfPeak) = (nil, nil)  // memory-bound gathers: images/s is the measure
                records.append(row)
            }
        }
        return records
    }
}
