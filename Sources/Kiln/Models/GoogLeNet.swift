/// GoogLeNet / Inception v1 as in the paper (Szegedy et al. 2014): biased convolutions with ReLU, no batch
/// norm, true 5×5 branches, local response normalisation in the stem, no auxiliary heads — 6,998,552
/// parameters for 1000 classes. (torchvision's variant, with batch norm and 3×3 kernels in the "5×5"
/// branch, has 6,624,904.) Pooling uses padding 1 so the paper's sizes (112, 56, 28, 14, 7) come out of
/// floor-mode arithmetic.
public func GoogLeNet(inputChannels: Int = 3, classes: Int = 1000) throws -> Sequential {
    /// A convolution and its ReLU, named `name` and `name_relu`.
    func conv(_ input: Int, _ output: Int, _ kernel: Int, stride: Int = 1, name: String = "conv") throws -> [NamedLayer] {
        [try Conv2D(inputChannels: input, outputChannels: output, kernelSize: kernel, stride: stride, padding: kernel / 2).named(name),
         ReLU().named("\(name)_relu")]
    }
    let lrn = LRNSettings(size: 5, alpha: 1e-4, beta: 0.75, k: 2)
    return try Sequential {
        Sequential(try conv(inputChannels, 64, 7, stride: 2)).named("conv1")
        try MaxPool2D(window: 3, stride: 2, padding: 1).named("maxpool1")
        LocalResponseNorm(settings: lrn).named("lrn1")
        Sequential(try conv(64, 64, 1)).named("conv2")
        Sequential(try conv(64, 192, 3)).named("conv3")
        LocalResponseNorm(settings: lrn).named("lrn2")
        try MaxPool2D(window: 3, stride: 2, padding: 1).named("maxpool2")
        try inception(192, 64, 96, 128, 16, 32, 32).named("inception3a")
        try inception(256, 128, 128, 192, 32, 96, 64).named("inception3b")
        try MaxPool2D(window: 3, stride: 2, padding: 1).named("maxpool3")
        try inception(480, 192, 96, 208, 16, 48, 64).named("inception4a")
        try inception(512, 160, 112, 224, 24, 64, 64).named("inception4b")
        try inception(512, 128, 128, 256, 24, 64, 64).named("inception4c")
        try inception(512, 112, 144, 288, 32, 64, 64).named("inception4d")
        try inception(528, 256, 160, 320, 32, 128, 128).named("inception4e")
        try MaxPool2D(window: 3, stride: 2, padding: 1).named("maxpool4")
        try inception(832, 256, 160, 320, 32, 128, 128).named("inception5a")
        try inception(832, 384, 192, 384, 48, 128, 128).named("inception5b")
        GlobalPool2D(.average).named("avgpool")
        Flatten().named("flatten")
        try Dropout(probability: 0.4).named("dropout")
        try Linear(inputFeatures: 1024, outputFeatures: classes).named("fc")
    }

    /// Four parallel branches concatenated along channels: 1×1; 1×1 → 3×3; 1×1 → 5×5; 3×3 max pool → 1×1.
    func inception(_ input: Int, _ ones: Int, _ reduce3: Int, _ threes: Int, _ reduce5: Int, _ fives: Int, _ poolProjection: Int) throws -> Concat {
        try Concat {
            Sequential(try conv(input, ones, 1)).named("branch1")
            Sequential(try conv(input, reduce3, 1, name: "reduce") + conv(reduce3, threes, 3)).named("branch2")
            Sequential(try conv(input, reduce5, 1, name: "reduce") + conv(reduce5, fives, 5)).named("branch3")
            Sequential(try [MaxPool2D(window: 3, stride: 1, padding: 1).named("pool")] + conv(input, poolProjection, 1)).named("branch4")
        }
    }
}
