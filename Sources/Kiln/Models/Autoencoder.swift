/// A small convolutional autoencoder for images with values in [0, 1], trained with mean squared error
/// against its own input (`reconstructionLoss`):
///
///     encoder  conv 3×3 s2 p1 (C → 16) ReLU        [N, C, H, W]        → [N, 16, H/2, W/2]
///              conv 3×3 s2 p1 (16 → 32) ReLU                           → [N, 32, H/4, W/4]
///     decoder  transposed conv 3×3 s2 p1 op1 (32 → 16) ReLU            → [N, 16, H/2, W/2]
///              transposed conv 3×3 s2 p1 op1 (16 → C) Sigmoid          → [N, C, H, W]
///
/// Names: `encoder.0`, `encoder.2`, `decoder.0`, `decoder.2` (a PyTorch `nn.Sequential` of two
/// `nn.Sequential`s has the same state dict). The output has the input's shape only when H and W are
/// multiples of 4 (each stride-2 convolution rounds an odd size up, which the decoder cannot undo), so other
/// sizes are refused with an error naming the size.
public func ConvAutoencoder(inputChannels: Int = 1, inputSize: Int = 28) throws -> Sequential {
    try ConvAutoencoder(inputChannels: inputChannels, inputHeight: inputSize, inputWidth: inputSize)
}

/// The autoencoder above for H×W images (both multiples of 4). With `codeSparsity` λ > 0 an `ActivityL1(λ)`
/// named `sparsity` stands between encoder and decoder: a sparse autoencoder (no parameters, so the state
/// dict is the same).
public func ConvAutoencoder(inputChannels: Int, inputHeight: Int, inputWidth: Int, codeSparsity: Float? = nil) throws -> Sequential {
    guard inputHeight > 0, inputWidth > 0, inputHeight % 4 == 0, inputWidth % 4 == 0 else {
        throw KilnError.invalidArgument(
            "autoencoder: an input of \(inputHeight)×\(inputWidth) cannot be reconstructed at its own size: its two stride-2 "
                + "convolutions and two stride-2 transposed convolutions need a height and width divisible by 4 (e.g. 28×28, 32×32)")
    }
    return try Sequential {
        try Sequential {
            try Conv2D(inputChannels: inputChannels, outputChannels: 16, kernelSize: 3, stride: 2, padding: 1)
            ReLU()
            try Conv2D(inputChannels: 16, outputChannels: 32, kernelSize: 3, stride: 2, padding: 1)
            ReLU()
        }.named("encoder")
        if let codeSparsity, codeSparsity > 0 { try ActivityL1(strength: codeSparsity).named("sparsity") }
        try Sequential {
            try ConvTranspose2D(inputChannels: 32, outputChannels: 16, kernelSize: 3, stride: 2, padding: 1, outputPadding: 1)
            ReLU()
            try ConvTranspose2D(inputChannels: 16, outputChannels: inputChannels, kernelSize: 3, stride: 2, padding: 1, outputPadding: 1)
            Sigmoid()
        }.named("decoder")
    }
}
