/// MobileNet v1 (Howard et al. 2017): a 3×3 stride-2 convolution, then 13 depthwise-separable blocks
/// (3×3 depthwise + batch norm + ReLU, 1×1 pointwise + batch norm + ReLU), global average pooling and a
/// classifier. `widthMultiplier` (α) scales every layer's channels. 4,231,976 parameters at α = 1 for 1000
/// classes. Names: `features.0` … (stem, then one Sequential per block: `features.1.0` depthwise …), `fc`.
public func MobileNet(inputChannels: Int = 3, classes: Int = 1000, widthMultiplier: Float = 1) throws -> Sequential {
    func width(_ channels: Int) -> Int { Swift.max(8, Int(Float(channels) * widthMultiplier)) }
    // (output channels, stride) of each depthwise-separable block
    let blocks = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2), (512, 1), (512, 1), (512, 1), (512, 1), (512, 1),
                  (1024, 2), (1024, 1)]
    var channels = width(32)
    var features: [NamedLayer] = [
        NamedLayer(name: nil, layer: try Sequential {
            try Conv2D(inputChannels: inputChannels, outputChannels: channels, kernelSize: 3, stride: 2, padding: 1, bias: false)
            try BatchNorm(features: channels)
            ReLU()
        }),
    ]
    for (outputs, stride) in blocks {
        let output = width(outputs)
        features.append(NamedLayer(name: nil, layer: try Sequential {
            try Conv2D(inputChannels: channels, outputChannels: channels, kernelSize: 3, stride: stride, padding: 1, groups: channels, bias: false)
            try BatchNorm(features: channels)
            ReLU()
            try Conv2D(inputChannels: channels, outputChannels: output, kernelSize: 1, bias: false)
            try BatchNorm(features: output)
            ReLU()
        }))
        channels = output
    }
    return try Sequential {
        Sequential(features).named("features")
        GlobalPool2D(.average).named("avgpool")
        Flatten().named("flatten")
        try Linear(inputFeatures: channels, outputFeatures: classes).named("fc")
    }
}
