/// What a model's output is, which decides how it is trained and scored.
public enum ModelTask: Sendable, Equatable {
    /// Class scores [N, classes]: softmax cross-entropy against the labels, accuracy.
    case classification
    /// An image of the input's shape: mean squared error against the input itself, no accuracy.
    case reconstruction

    /// The training loss for this kind of model.
    public var loss: LossFunction {
        switch self {
        case .classification: return crossEntropyLoss
        case .reconstruction: return reconstructionLoss
        }
    }

    /// Whether an argmax of the output can be compared with the labels.
    public var measuresAccuracy: Bool { self == .classification }
}

/// The models `kiln train --model NAME` and `kiln summary` know.
public enum ModelZoo {
    /// One model of the zoo, as `kiln models` lists it.
    public struct Entry: Sendable {
        public var name: String
        /// One line: what the model is.
        public var description: String
        /// The input [C, H, W] the architecture was designed for.
        public var defaultInput: [Int]
        /// What the zoo does with Fashion-MNIST (1×28×28) and CIFAR-10 (3×32×32) images.
        public var smallImages: String
        public var task: ModelTask
        /// The rates of its dropout layers, as `kiln models` says them ("0.5"); nil for a model without any.
        /// `kiln train --dropout P` sets every one of them to P.
        public var dropout: String? = nil
        /// Whether the model takes a choice of stem (`ResNetStem`): the ResNets.
        public var takesStem: Bool { name.hasPrefix("resnet") }

        /// Raises an error when a stem is asked of a model that has one only.
        public func check(stem: ResNetStem?) throws {
            guard let stem, !takesStem else { return }
            throw KilnError.invalidArgument("--stem \(stem.rawValue): \(name) has one stem; only "
                                            + "\(ModelZoo.entries.filter(\.takesStem).map(\.name).joined(separator: ", ")) take a choice")
        }
    }

    public static let entries: [Entry] = [
        Entry(name: "lenet5", description: "LeNet-5 (1998) with ReLU and max pooling, 61,706 parameters at 32×32",
              defaultInput: [1, 32, 32], smallImages: "as is; a 28×28 image is padded to 32×32 by the first convolution",
              task: .classification),
        Entry(name: "lenet-bn", description: "LeNet with batch norm and dropout, Kiln's reference network",
              defaultInput: [1, 28, 28], smallImages: "as is", task: .classification, dropout: "0.5"),
        Entry(name: "lenet-bn2", description: "LeNet-BN widened to 8 and 16 channels, one hidden layer, dropout 0.25: kiln train's default",
              defaultInput: [1, 28, 28], smallImages: "as is", task: .classification, dropout: "0.25"),
        Entry(name: "smallcnn", description: "two VGG-style blocks (32, 64 channels) with batch norm and dropout, for 28–32 px images",
              defaultInput: [1, 28, 28], smallImages: "as is (made for them)", task: .classification, dropout: "0.25 and 0.5"),
        Entry(name: "alexnet", description: "AlexNet (2012), one tower with local response normalisation",
              defaultInput: [3, 227, 227],
              smallImages: "inputs under \(alexNetMinimumInputSize)×\(alexNetMinimumInputSize) are upsampled (nearest, by the smallest "
                  + "integer factor that reaches it): 28×28 → 84×84, 32×32 → 96×96",
              task: .classification, dropout: "0.5"),
    ] + [11, 13, 16, 19].flatMap { depth in
        [false, true].map { batchNorm in
            Entry(name: "vgg\(depth)\(batchNorm ? "-bn" : "")",
                  description: "VGG-\(depth) (2014)\(batchNorm ? " with batch norm" : ""), torchvision's names",
                  defaultInput: [3, 224, 224],
                  smallImages: "32×32 as is (features end at 1×1); 28×28 is zero-padded to 32×32 by the first convolution",
                  task: .classification, dropout: "0.5")
        }
    } + [
        Entry(name: "resnet18", description: "ResNet-18 (2015), basic blocks, torchvision's names", defaultInput: [3, 224, 224],
              smallImages: smallStem, task: .classification),
        Entry(name: "resnet34", description: "ResNet-34 (2015), basic blocks, torchvision's names", defaultInput: [3, 224, 224],
              smallImages: smallStem, task: .classification),
        Entry(name: "resnet50", description: "ResNet-50 (2015), bottleneck blocks, torchvision's names", defaultInput: [3, 224, 224],
              smallImages: smallStem, task: .classification),
        Entry(name: "googlenet", description: "GoogLeNet / Inception v1 (2014) as in the paper, no auxiliary heads",
              defaultInput: [3, 224, 224], smallImages: "as is; its five stride-2 stages leave 1×1 maps for inception5",
              task: .classification, dropout: "0.4"),
        Entry(name: "mobilenet", description: "MobileNet v1 (2017), depthwise-separable blocks, width 1.0",
              defaultInput: [3, 224, 224], smallImages: "as is; its five stride-2 stages leave 1×1 maps for the last blocks",
              task: .classification),
        Entry(name: "autoencoder", description: "convolutional autoencoder (2 stride-2 convolutions, 2 transposed), MSE on its input",
              defaultInput: [1, 28, 28], smallImages: "as is; height and width must be multiples of 4", task: .reconstruction),
    ]

    private static let smallStem = "small-image stem below 128×128 (3×3 stride-1 convolution, no max pooling) unless --stem imagenet"

    public static var names: [String] { entries.map(\.name) }

    /// The zoo's entry for `name` (case-insensitive; "lenet-5" and "lenetbn" are accepted too), or an error
    /// listing the zoo.
    public static func entry(_ name: String) throws -> Entry {
        var lowered = name.lowercased()
        if let alias = ["lenet-5": "lenet5", "lenetbn": "lenet-bn"][lowered] { lowered = alias }
        guard let entry = entries.first(where: { $0.name == lowered }) else {
            throw KilnError.invalidArgument("unknown model '\(name)'; the zoo has: \(names.joined(separator: ", "))")
        }
        return entry
    }

    /// Builds model `name` for images of `inputShape` ([C, H, W]) and `classes` classes, and checks that an
    /// image of that shape passes through it (an error names the layer, by its dotted path, where it does not).
    /// `stem` picks a ResNet's stem (by default `ResNetStem.standard(forInputSize:)`); other models take none.
    /// `dropout` sets the rate of every dropout layer of the model (an error for a model without one);
    /// `sparsity` puts an L1 penalty on the autoencoder's code (`ConvAutoencoder(codeSparsity:)`).
    public static func make(_ name: String, inputShape: [Int], classes: Int, stem: ResNetStem? = nil, dropout: Float? = nil,
                            sparsity: Float? = nil) throws -> Sequential {
        let entry = try entry(name)
        guard inputShape.count == 3, inputShape[1] == inputShape[2] || entry.name == "autoencoder" else {
            throw KilnError.invalidArgument("\(name): expects square [C, H, W] images, got \(describe(inputShape))")
        }
        try entry.check(stem: stem)
        let (channels, size) = (inputShape[0], inputShape[1])
        let stem = stem ?? .standard(forInputSize: size)
        let model: Sequential
        switch entry.name {
        case "lenet5": model = try LeNet5(inputChannels: channels, inputSize: size, classes: classes)
        case "lenet-bn": model = try LeNetBN(inputChannels: channels, inputSize: size, classes: classes)
        case "lenet-bn2": model = try LeNetBN2(inputChannels: channels, inputSize: size, classes: classes)
        case "smallcnn": model = try SmallCNN(inputChannels: channels, inputSize: size, classes: classes)
        case "alexnet": model = try upsampledAlexNet(inputChannels: channels, inputSize: size, classes: classes)
        case "resnet18": model = try ResNet18(inputChannels: channels, classes: classes, stem: stem)
        case "resnet34": model = try ResNet34(inputChannels: channels, classes: classes, stem: stem)
        case "resnet50": model = try ResNet50(inputChannels: channels, classes: classes, stem: stem)
        case "mobilenet": model = try MobileNet(inputChannels: channels, classes: classes)
        case "googlenet": model = try GoogLeNet(inputChannels: channels, classes: classes)
        case "autoencoder": model = try ConvAutoencoder(inputChannels: channels, inputHeight: inputShape[1], inputWidth: inputShape[2],
                                                            codeSparsity: sparsity)
        default:  // vgg11 ... vgg19-bn
            model = try VGG(depth: Int(entry.name.dropFirst(3).prefix { $0.isNumber }) ?? 0, batchNorm: entry.name.hasSuffix("-bn"),
                            inputChannels: channels, inputSize: size, classes: classes)
        }
        _ = try model.outputShape(for: [1] + inputShape)
        if let dropout, try model.setDropout(dropout) == 0 {
            let others = entries.filter { $0.dropout != nil }.map(\.name).joined(separator: ", ")
            throw KilnError.invalidArgument("--dropout \(dropout): \(entry.name) has no dropout layer; the models with dropout are \(others)")
        }
        return model
    }

    /// AlexNet behind a nearest-neighbour upsampling (named `upsample`, no parameters, so the state-dict names
    /// stay torchvision's) when the input is smaller than the features accept.
    private static func upsampledAlexNet(inputChannels: Int, inputSize: Int, classes: Int) throws -> Sequential {
        guard inputSize > 0, inputSize < alexNetMinimumInputSize else {
            return try AlexNet(inputChannels: inputChannels, inputSize: inputSize, classes: classes)
        }
        let scale = (alexNetMinimumInputSize + inputSize - 1) / inputSize
        let network = try AlexNet(inputChannels: inputChannels, inputSize: scale * inputSize, classes: classes)
        return Sequential([try Upsample2D(scale: scale).named("upsample")] + network.layers.map { NamedLayer(name: $0.name, layer: $0.layer) })
    }
}
