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
