/// A small VGG-style network with batch norm for 28×28 and 32×32 images, Kiln's choice for reaching high
/// accuracy on Fashion-MNIST or CIFAR-10 on a CPU in minutes:
/// two blocks of (conv 3×3 → BN → ReLU) ×2 → maxpool 2, with 32 then 64 channels, then flatten → dropout 0.25 →
/// 256 → BN → ReLU → dropout 0.5 → classes. 0.87 M parameters at 28×28.
public func SmallCNN(inputChannels: Int = 1, inputSize: Int = 28, classes: Int = 10) throws -> Sequential {
    let after = inputSize / 4
    guard after > 0 else { throw KilnError.invalidArgument("smallcnn: input \(inputSize)×\(inputSize) is too small (two 2× poolings need 4×4)") }
    return try Sequential {
        for (index, (input, output)) in [(inputChannels, 32), (32, 32), (32, 64), (64, 64)].enumerated() {
            try Conv2D(inputChannels: input, outputChannels: output, kernelSize: 3, padding: 1).named("conv\(index + 1)")
            try BatchNorm(features: output).named("bn\(index + 1)")
            ReLU()
            if index % 2 == 1 { try MaxPool2D(window: 2) }
        }
        Flatten()
        try Dropout(probability: 0.25)
        try Linear(inputFeatures: 64 * after * after, outputFeatures: 256).named("fc1")
        try BatchNorm(features: 256).named("bn5")
        ReLU()
        try Dropout(probability: 0.5)
        try Linear(inputFeatures: 256, outputFeatures: classes).named("fc2")
    }
}
