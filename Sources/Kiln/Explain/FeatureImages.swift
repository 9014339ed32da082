import Foundation

/// Raw values with their shape: a layer's feature maps [C, H, W] or a convolution's filters [O, I, kh, kw], as an
/// image grid for people and as .npy for NumPy.
public struct TensorPicture: Sendable {
    public var shape: [Int]
    public var values: [Float]

    /// One grey tile per feature map or per filter (a filter of 3 input channels in colour, of other counts
    /// averaged over them), each stretched to [0, 1] on its own, enlarged `scale` times (nearest neighbour).
    public func grid(scale: Int = 1) throws -> ImageFile {
        let count = shape[0], (height, width) = (shape[shape.count - 2], shape[shape.count - 1])
        let inner = shape.count == 4 ? shape[1] : 1, plane = height * width
        let channels = inner == 3 ? 3 : 1
        var tiles = [Float](repeating: 0, count: count * channels * plane * scale * scale)
        for tile in 0..<count {
            let slice = Array(values[(tile * inner * plane)..<((tile + 1) * inner * plane)])
            let merged = channels == inner ? slice
                : (0..<plane).map { pixel in (0..<inner).map { slice[$0 * plane + pixel] }.reduce(0, +) / Float(inner) }
            let (low, high) = (merged.min() ?? 0, merged.max() ?? 0)
            for channel in 0..<channels {
                for y in 0..<(height * scale) {
                    for x in 0..<(width * scale) {
                        let value = merged[channel * plane + (y / scale) * width + x / scale]
                        tiles[((tile * channels + channel) * height * scale + y) * width * scale + x] = high > low ? (value - low) / (high - low) : 0
                    }
                }
            }
        }
        let columns = Int(Double(count).squareRoot().rounded(.up))
        return try ImageGrid.tile(tiles, shape: [count, channels, height * scale, width * scale], columns: columns, border: 1, borderValue: 1)
    }

    /// NumPy's .npy format 1.0: little-endian float32 of `shape`, C order.
    public func npyData() -> [UInt8] { numpyFile(values, shape: shape) }
}

extension Explainer {
    /// The output of the layer at `layer` (default `defaultGradCAMLayer`) for one image: its feature maps [C, H, W].
    public func featureMaps(_ image: Tensor, layer: String? = nil) throws -> (layer: String, maps: TensorPicture) {
        guard image.rank == 3 else { throw layerShapeError("Explainer", expected: "one image [C, H, W]", got: image.shape) }
        let path = try layer ?? defaultGradCAMLayer(for: image.shape)
        _ = try model.layer(named: path)
        _ = try logits(image)
        guard let output = model.output(of: path) else {
            throw KilnError.invalidArgument("the output of \(path) is not kept by its container; name a layer inside it or around it")
        }
        guard output.rank == 4 else {
            throw KilnError.invalidArgument("feature maps need a layer with a spatial output [N, C, H, W]; \(path) gives \(describe(output.shape))")
        }
        return (path, TensorPicture(shape: Array(output.shape.dropFirst()), values: try output.toArray()))
    }

    /// The weights of the model's first convolution [O, I, kh, kw] (or of the convolution at `layer`).
    public func filters(layer: String? = nil) throws -> (layer: String, filters: TensorPicture) {
        guard let path = layer ?? model.inputConvolutionPath else { throw KilnError.invalidArgument("the model has no convolution") }
        guard let convolution = try model.layer(named: path) as? Conv2D else {
            throw KilnError.invalidArgument("filters are a convolution's: \(path) is a \(try model.layer(named: path).typeName)")
        }
        return (path, TensorPicture(shape: convolution.weight.value.shape, values: try convolution.weight.value.toArray()))
    }
}

extension Explainer {
    /// For each of `channels` of the layer at `layer` (a dotted path through sequences), the input that maximises the channel's mean
    /// activation (Erhan et al. 2009; Yosinski et al. 2015): gradient ascent from faint noise (seeded) for
    /// `steps` steps of size `rate` on the gradient scaled to unit mean magnitude, with the classic
    /// regularisers: L2 decay of the input towards grey (`decay`), a 3×3 Gaussian blur every fourth step,
    /// and clipping to [`low`, `high`], the range of the (preprocessed) images the model was trained on.
    /// Returns the inputs [K, C, H, W]. Take a layer before its ReLU (a batch norm, a convolution): a channel
    /// the ReLU turns off everywhere has no gradient to climb.
    public func maximizingInputs(layer: String, channels: [Int], imageShape: [Int], steps: Int = 200, rate: Float = 0.05,
                                 decay: Float = 1e-3, low: Float = 0, high: Float = 1, seed: UInt64 = 0) throws -> TensorPicture {
        guard steps >= 1, !channels.isEmpty else { throw KilnError.invalidArgument("activation maximisation needs at least 1 step and 1 channel") }
        let prefix = Sequential(try truncated(model, at: layer.split(separator: ".").map(String.init)[...], path: layer))
        let outputShape = try prefix.outputShape(for: [channels.count] + imageShape)
        guard outputShape.count == 4 || outputShape.count == 2 else {
            throw KilnError.invalidArgument("activation maximisation needs a layer with [N, C, H, W] or [N, C] output; \(layer) gives \(describe(outputShape))")
        }
        if let bad = channels.first(where: { !(0..<outputShape[1]).contains($0) }) {
            throw KilnError.invalidArgument("\(layer) has \(outputShape[1]) channels (0–\(outputShape[1] - 1)); there is no channel \(bad)")
        }
        // dy: 1/(H·W) on the chosen channel of each copy, so that backward gives ∂(mean activation)/∂x.
        let plane = outputShape.dropFirst(2).reduce(1, *), channelCount = outputShape[1]
        var upstream = [Float](repeating: 0, count: outputShape.reduce(1, *))
        for (copy, channel) in channels.enumerated() {
            for position in 0..<plane { upstream[(copy * channelCount + channel) * plane + position] = 1 / Float(plane) }
        }
        let dy = try Tensor(upstream, shape: outputShape, on: device)
        let size = imageShape.reduce(1, *), middle = (low + high) / 2
        let noise = try Tensor.empty([channels.count * size])
        try noise.fillUniform(low: -0.05, high: 0.05, seed: seed)
        var x = try noise.toArray().map { middle + $0 * (high - low) }
        for step in 0..<steps {
            _ = try prefix.forward(try Tensor(x, shape: [channels.count] + imageShape, on: device), .inferenceRecordingEveryLayer)
            let gradient = try prefix.backward(dy).toArray()
            for copy in 0..<channels.count {
                let range = (copy * size)..<((copy + 1) * size)
                let scale = rate * (high - low) / Swift.max(gradient[range].map(Swift.abs).reduce(0, +) / Float(size), 1e-12)
                for i in range { x[i] = Swift.min(high, Swift.max(low, middle + (x[i] + scale * gradient[i] - middle) * (1 - decay))) }
            }
            if step % 4 == 3 { x = blurred(x, shape: [channels.count] + imageShape) }
        }
        return TensorPicture(shape: [channels.count] + imageShape, values: x)
    }

    /// The layers of `sequential` up to and including the one at the dotted path `parts`, sharing the model's
    /// own layers; the path may go into nested sequences (`features.10`), not into residual blocks.
    private func truncated(_ sequential: Sequential, at parts: ArraySlice<String>, path: String) throws -> [NamedLayer] {
        guard let name = parts.first, let index = sequential.layers.firstIndex(where: { $0.name == name }) else {
            throw KilnError.invalidArgument("activation maximisation: no layer '\(path)' (at '\(parts.first ?? "")' the layers are "
                                            + "\(sequential.layers.map(\.name).joined(separator: ", ")))")
        }
        var layers = sequential.layers.prefix(upTo: index).map { NamedLayer(name: $0.name, layer: $0.layer) }
        let target = sequential.layers[index]
        if parts.count == 1 {
            layers.append(NamedLayer(name: target.name, layer: target.layer))
        } else {
            guard let inner = target.layer as? Sequential else {
                throw KilnError.invalidArgument("activation maximisation reaches into sequences only: \(name) is a \(target.layer.typeName); "
                                                + "take \(name) itself or a layer of a sequence")
            }
            layers.append(NamedLayer(name: target.name, layer: Sequential(try truncated(inner, at: parts.dropFirst(), path: path))))
        }
        return layers
    }

    /// Each plane of [N, C, H, W] convolved with the 3×3 Gaussian of σ ≈ 0.85 (weights 1-2-1), edges repeated.
    private func blurred(_ x: [Float], shape: [Int]) -> [Float] {
        let (height, width) = (shape[2], shape[3]), plane = height * width
        var result = x
        for start in stride(from: 0, to: x.count, by: plane) {
            for y in 0..<height {
                for column in 0..<width {
                    var sum: Float = 0
                    for dy in -1...1 {
                        for dx in -1...1 {
                            let (row, col) = (Swift.min(height - 1, Swift.max(0, y + dy)), Swift.min(width - 1, Swift.max(0, column + dx)))
                            sum += Float((2 - abs(dy)) * (2 - abs(dx))) * x[start + row * width + col]
                        }
                    }
                    result[start + y * width + column] = sum / 16
                }
            }
        }
        return result
    }
}
