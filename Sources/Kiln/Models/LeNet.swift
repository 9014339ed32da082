/// Classic LeNet-5 (LeCun et al. 1998) with ReLU and max pooling: conv 6@5×5 → pool → conv 16@5×5 →
/// pool → 120 → 84 → classes. On 32×32 inputs it has 61,706 parameters; a 28×28 input is padded by 2 in
/// the first convolution so that the rest of the network sees the same sizes.
public func LeNet5(inputChannels: Int = 1, inputSize: Int = 32, classes: Int = 10) throws -> Sequential {
    let padding = inputSize < 32 ? (32 - inputSize + 1) / 2 : 0
    let afterFirst = (inputSize + 2 * padding - 4) / 2
    let afterSecond = (afterFirst - 4) / 2
    return try Sequential {
        try Conv2D(inputChannels: inputChannels, outputChannels: 6, kernelSize: 5, padding: padding).named("conv1")
        ReLU()
        try MaxPool2D(window: 2)
        try Conv2D(inputChannels: 6, outputChannels: 16, kernelSize: 5).named("conv2")
        ReLU()
        try MaxPool2D(window: 2)
        Flatten()
        try Linear(inputFeatures: 16 * afterSecond * afterSecond, outputFeatures: 120).named("fc1")
        ReLU()
        try Linear(inputFeatures: 120, outputFeatures: 84).named("fc2")
        ReLU()
        try Linear(inputFeatures: 84, outputFeatures: classes).named("fc3")
    }
}

/// LeNet with batch norm, Kiln's reference network:
/// conv 5×5 → BN → ReLU → maxpool 2 → conv 5×5 → BN → ReLU → maxpool 2 → flatten → 120 → ReLU →
/// dropout 0.5 → 84 → ReLU → classes, with PyTorch's module names conv1, bn1, conv2, bn2, fc1, fc2, fc3.
/// The first convolution pads by 2 (so 28×28 inputs keep their size).
public func LeNetBN(inputChannels: Int = 1, inputSize: Int = 28, classes: Int = 10) throws -> Sequential {
    try batchNormLeNet("lenet-bn", inputChannels: inputChannels, inputSize: inputSize, classes: classes,
                       channels: (6, 16), hidden: [120, 84], dropout: 0.5)
}

/// LeNet-BN's second version, `kiln train`'s default: the same two 5×5 convolutions with batch norm and
/// pooling, widened to 8 and 16 channels, then one hidden layer of 120 with dropout 0.25 (lenet-bn's extra
/// 84-unit layer and dropout 0.5 cost it more than they regularise in a ten-epoch run). Names conv1, bn1,
/// conv2, bn2, fc1, fc2.
public func LeNetBN2(inputChannels: Int = 1, inputSize: Int = 28, classes: Int = 10) throws -> Sequential {
    try batchNormLeNet("lenet-bn2", inputChannels: inputChannels, inputSize: inputSize, classes: classes,
                       channels: (8, 16), hidden: [120], dropout: 0.25)
}

/// conv 5×5 (padding 2) → BN → ReLU → maxpool 2 → conv 5×5 → BN → ReLU → maxpool 2 → flatten → the `hidden`
/// layers with ReLU, dropout after the first → classes; linear layers named fc1, fc2, ...
private func batchNormLeNet(_ name: String, inputChannels: Int, inputSize: Int, classes: Int, channels: (Int, Int),
                            hidden: [Int], dropout: Float) throws -> Sequential {
    let afterSecond = (inputSize / 2 - 4) / 2
    guard afterSecond > 0 else {
        throw KilnError.invalidArgument("\(name): input \(inputSize)×\(inputSize) is too small (the second pooling needs at least 12×12)")
    }
    let widths = [channels.1 * afterSecond * afterSecond] + hidden
    return try Sequential {
        try Conv2D(inputChannels: inputChannels, outputChannels: channels.0, kernelSize: 5, padding: 2).named("conv1")
        try BatchNorm(features: channels.0).named("bn1")
        ReLU()
        try MaxPool2D(window: 2)
        try Conv2D(inputChannels: channels.0, outputChannels: channels.1, kernelSize: 5).named("conv2")
        try BatchNorm(features: channels.1).named("bn2")
        ReLU()
        try MaxPool2D(window: 2)
        Flatten()
        for (index, width) in hidden.enumerated() {
            try Linear(inputFeatures: widths[index], outputFeatures: width).named("fc\(index + 1)")
            ReLU()
            if index == 0 { try Dropout(probability: dropout) }
        }
        try Linear(inputFeatures: widths[hidden.count], outputFeatures: classes).named("fc\(hidden.count + 1)")
    }
}
