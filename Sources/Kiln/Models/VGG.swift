/// VGG (Simonyan & Zisserman 2014) with torchvision's names: `features.N` and `classifier.N`. The first
/// classifier layer takes whatever the features leave (512·7·7 at 224×224, as torchvision, whose adaptive
/// pooling is then the identity; 512·1·1 at 32×32).
///
/// Below 32×32 the fifth pooling would get a 1×1 map, so the first convolution zero-pads the image up to
/// 32×32 (as LeNet-5 pads 28×28 digits to 32×32): the same as padding the input, with every weight's shape
/// unchanged.
public func VGG(depth: Int, batchNorm: Bool = false, inputChannels: Int = 3, inputSize: Int = 224, classes: Int = 1000) throws -> Sequential {
    let configurations: [Int: [Int]] = [  // output channels of each 3×3 convolution; 0 is a 2×2 max pooling
        11: [64, 0, 128, 0, 256, 256, 0, 512, 512, 0, 512, 512, 0],
        13: [64, 64, 0, 128, 128, 0, 256, 256, 0, 512, 512, 0, 512, 512, 0],
        16: [64, 64, 0, 128, 128, 0, 256, 256, 256, 0, 512, 512, 512, 0, 512, 512, 512, 0],
        19: [64, 64, 0, 128, 128, 0, 256, 256, 256, 256, 0, 512, 512, 512, 512, 0, 512, 512, 512, 512, 0],
    ]
    guard let configuration = configurations[depth] else {
        throw KilnError.invalidArgument("VGG-\(depth) does not exist; depths are 11, 13, 16 and 19")
    }
    guard inputSize > 0 else { throw KilnError.invalidArgument("VGG-\(depth): input size \(inputSize) is not positive") }
    let smallImagePadding = Swift.max(0, 32 - inputSize)
    var features: [NamedLayer] = []
    var channels = inputChannels, size = inputSize + smallImagePadding
    for width in configuration {
        if width == 0 {
            features.append(NamedLayer(name: nil, layer: try MaxPool2D(window: 2)))
            size /= 2
        } else {
            var geometry = try Conv2DGeometry(kernelSize: 3, padding: 1)
            if features.isEmpty {
                // An odd difference puts the extra row and column at the bottom and right.
                geometry.padTop += smallImagePadding / 2
                geometry.padLeft += smallImagePadding / 2
                geometry.padBottom += smallImagePadding - smallImagePadding / 2
                geometry.padRight += smallImagePadding - smallImagePadding / 2
            }
            features.append(NamedLayer(name: nil, layer: try Conv2D(inputChannels: channels, outputChannels: width, geometry: geometry)))
            if batchNorm { features.append(NamedLayer(name: nil, layer: try BatchNorm(features: width))) }
            features.append(NamedLayer(name: nil, layer: ReLU()))
            channels = width
        }
    }
    return try Sequential {
        Sequential(features).named("features")
        Flatten().named("flatten")
        try Sequential {
            try Linear(inputFeatures: channels * size * size, outputFeatures: 4096)
            ReLU()
            try Dropout(probability: 0.5)
            try Linear(inputFeatures: 4096, outputFeatures: 4096)
            ReLU()
            try Dropout(probability: 0.5)
            try Linear(inputFeatures: 4096, outputFeatures: classes)
        }.named("classifier")
    }
}

/// AlexNet (Krizhevsky et al. 2012) as one tower with local response normalisation, on 227×227 inputs:
/// 62,378,344 parameters for 1000 classes. Names follow torchvision's layout (`features.N`, `classifier.N`).
/// The features need at least `alexNetMinimumInputSize` pixels a side; the classifier takes what they leave.
public func AlexNet(inputChannels: Int = 3, inputSize: Int = 227, classes: Int = 1000) throws -> Sequential {
    let lrn = LRNSettings(size: 5, alpha: 1e-4, beta: 0.75, k: 2)
    let features = try Sequential {
        try Conv2D(inputChannels: inputChannels, outputChannels: 96, kernelSize: 11, stride: 4)
        ReLU()
        LocalResponseNorm(settings: lrn)
        try MaxPool2D(window: 3, stride: 2)
        try Conv2D(inputChannels: 96, outputChannels: 256, kernelSize: 5, padding: 2)
        ReLU()
        LocalResponseNorm(settings: lrn)
        try MaxPool2D(window: 3, stride: 2)
        try Conv2D(inputChannels: 256, outputChannels: 384, kernelSize: 3, padding: 1)
        ReLU()
        try Conv2D(inputChannels: 384, outputChannels: 384, kernelSize: 3, padding: 1)
        ReLU()
        try Conv2D(inputChannels: 384, outputChannels: 256, kernelSize: 3, padding: 1)
        ReLU()
        try MaxPool2D(window: 3, stride: 2)
    }
    let featureShape = try features.outputShape(for: [1, inputChannels, inputSize, inputSize])
    return try Sequential {
        features.named("features")
        Flatten().named("flatten")
        try Sequential {
            try Dropout(probability: 0.5)
            try Linear(inputFeatures: featureShape.dropFirst().reduce(1, *), outputFeatures: 4096)
            ReLU()
            try Dropout(probability: 0.5)
            try Linear(inputFeatures: 4096, outputFeatures: 4096)
            ReLU()
            try Linear(inputFeatures: 4096, outputFeatures: classes)
        }.named("classifier")
    }
}

/// The smallest input side AlexNet's features accept: the last pooling (3×3, stride 2) needs a 3×3 map, so
/// the second needs 7×7 and the first 15×15, which the 11×11 stride-4 convolution makes from 4·14 + 11 = 67.
public let alexNetMinimumInputSize = 67
