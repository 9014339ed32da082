/// ResNets (He et al. 2015) with torchvision's module tree and state-dict names (`conv1`, `bn1`,
/// `layer1.0.conv1`, `layer2.0.downsample.1.running_var`, `fc`), so torchvision weights load.
public enum ResNetStem: String, CaseIterable, Sendable {
    /// 7×7 stride-2 convolution and 3×3 stride-2 max pooling, for 224×224 images: torchvision's module tree at
    /// any input size, so its checkpoints (ImageNet's, or one trained on 28×28 images) load.
    case imageNet = "imagenet"
    /// 3×3 stride-1 convolution and no pooling, for 32×32 images (CIFAR-10, Fashion-MNIST).
    case smallImage = "small"

    /// The stem the zoo gives an input of `size` pixels when none is asked for: the small one below 128.
    public static func standard(forInputSize size: Int) -> ResNetStem { size >= 128 ? .imageNet : .smallImage }

    /// The stem a `--stem` value names, or an error listing them.
    public init(option: String) throws {
        guard let stem = ResNetStem(rawValue: option.lowercased()) else {
            throw KilnError.invalidArgument("unknown stem '\(option)'; use \(Self.allCases.map(\.rawValue).joined(separator: " or "))")
        }
        self = stem
    }
}

public func ResNet18(inputChannels: Int = 3, classes: Int = 1000, stem: ResNetStem = .imageNet) throws -> Sequential {
    try ResNet(blocks: [2, 2, 2, 2], bottleneck: false, inputChannels: inputChannels, classes: classes, stem: stem)
}

public func ResNet34(inputChannels: Int = 3, classes: Int = 1000, stem: ResNetStem = .imageNet) throws -> Sequential {
    try ResNet(blocks: [3, 4, 6, 3], bottleneck: false, inputChannels: inputChannels, classes: classes, stem: stem)
}

public func ResNet50(inputChannels: Int = 3, classes: Int = 1000, stem: ResNetStem = .imageNet) throws -> Sequential {
    try ResNet(blocks: [3, 4, 6, 3], bottleneck: true, inputChannels: inputChannels, classes: classes, stem: stem)
}

/// A ResNet of four stages with `blocks[i]` blocks each: basic blocks (two 3×3 convolutions) or
/// bottlenecks (1×1, 3×3, 1×1 with 4× expansion).
func ResNet(blocks: [Int], bottleneck: Bool, inputChannels: Int, classes: Int, stem: ResNetStem) throws -> Sequential {
    let expansion = bottleneck ? 4 : 1
    var layers: [NamedLayer] = []
    switch stem {
    case .imageNet:
        layers.append(try Conv2D(inputChannels: inputChannels, outputChannels: 64, kernelSize: 7, stride: 2, padding: 3, bias: false).named("conv1"))
    case .smallImage:
        layers.append(try Conv2D(inputChannels: inputChannels, outputChannels: 64, kernelSize: 3, padding: 1, bias: false).named("conv1"))
    }
    layers.append(try BatchNorm(features: 64).named("bn1"))
    layers.append(ReLU().named("relu"))
    if stem == .imageNet { layers.append(try MaxPool2D(window: 3, stride: 2, padding: 1).named("maxpool")) }
    var channels = 64
    for (stage, count) in blocks.enumerated() {
        let width = 64 << stage
        var stageBlocks: [NamedLayer] = []
        for index in 0..<count {
            let stride = index == 0 && stage > 0 ? 2 : 1
            let block = try residualBlock(inputChannels: channels, width: width, stride: stride, bottleneck: bottleneck)
            stageBlocks.append(NamedLayer(name: nil, layer: block))
            channels = width * expansion
        }
        layers.append(Sequential(stageBlocks).named("layer\(stage + 1)"))
    }
    layers.append(GlobalPool2D(.average).named("avgpool"))
    layers.append(Flatten().named("flatten"))
    layers.append(try Linear(inputFeatures: channels, outputFeatures: classes).named("fc"))
    return Sequential(layers)
}

private func residualBlock(inputChannels: Int, width: Int, stride: Int, bottleneck: Bool) throws -> Residual {
    let output = bottleneck ? width * 4 : width
    let body: Sequential
    if bottleneck {
        body = try Sequential {
            try Conv2D(inputChannels: inputChannels, outputChannels: width, kernelSize: 1, bias: false).named("conv1")
            try BatchNorm(features: width).named("bn1")
            ReLU().named("relu1")
            try Conv2D(inputChannels: width, outputChannels: width, kernelSize: 3, stride: stride, padding: 1, bias: false).named("conv2")
            try BatchNorm(features: width).named("bn2")
            ReLU().named("relu2")
            try Conv2D(inputChannels: width, outputChannels: output, kernelSize: 1, bias: false).named("conv3")
            try BatchNorm(features: output).named("bn3")
        }
    } else {
        body = try Sequential {
            try Conv2D(inputChannels: inputChannels, outputChannels: width, kernelSize: 3, stride: stride, padding: 1, bias: false).named("conv1")
            try BatchNorm(features: width).named("bn1")
            ReLU().named("relu")
            try Conv2D(inputChannels: width, outputChannels: width, kernelSize: 3, padding: 1, bias: false).named("conv2")
            try BatchNorm(features: width).named("bn2")
        }
    }
    let shortcut = stride != 1 || inputChannels != output
        ? try Sequential {
            try Conv2D(inputChannels: inputChannels, outputChannels: output, kernelSize: 1, stride: stride, bias: false)
            try BatchNorm(features: output)
        }
        : nil
    return Residual(body: body, shortcut: shortcut, activation: .relu)
}
