import Foundation

/// A map of how much each pixel of an image mattered to a class score: H × W values, row by row.
public struct AttributionMap: Equatable, Sendable {
    public var height: Int
    public var width: Int
    public var values: [Float]

    public init(height: Int, width: Int, values: [Float]) {
        (self.height, self.width, self.values) = (height, width, values)
    }
}

/// Why a classifier gives an image its score for a class, by the usual attribution methods (Captum's
/// names): gradient saliency, SmoothGrad, integrated gradients, Grad-CAM and occlusion. The model runs in
/// inference mode throughout (batch norm on its running statistics, dropout off), on its device; the
/// gradients come from the layers' own backward passes.
///
///     let explainer = Explainer(model: model, device: device)
///     let map = try explainer.gradCAM(image, target: try explainer.prediction(image))
public struct Explainer {
    public let model: Sequential
    public let device: Device

    public init(model: Sequential, device: Device) {
        self.model = model
        self.device = device
    }

    /// The class scores (logits) of `images` [N, C, H, W] (or one image [C, H, W]): [N, classes].
    public func logits(_ images: Tensor) throws -> Tensor {
        try model.forward(try batched(images), .inferenceRecordingEveryLayer)
    }

    /// The class with the highest score for one image [C, H, W].
    public func prediction(_ image: Tensor) throws -> Int {
        try logits(image).argmax()
    }

    // MARK: Gradient methods

    /// ∂logit_target/∂x for every image of `images` [N, C, H, W]: one inference forward and backward.
    public func inputGradients(_ images: Tensor, target: Int) throws -> Tensor {
        let scores = try logits(images)
        let (count, classes) = (scores.shape[0], scores.shape[1])
        try checkTarget(target, classes: classes)
        var oneHot = [Float](repeating: 0, count: count * classes)
        for n in 0..<count { oneHot[n * classes + target] = 1 }
        return try model.backward(try Tensor(oneHot, shape: [count, classes], on: device))
    }

    /// Gradient saliency (Simonyan et al. 2014): |∂logit_target/∂x|, the largest over channels.
    public func saliency(_ image: Tensor, target: Int) throws -> AttributionMap {
        let shape = try imageShape(image)
        return channelReduced(try inputGradients(image, target: target).toArray(), shape: shape, largestMagnitude)
    }

    /// SmoothGrad (Smilkov et al. 2017): the saliency averaged over `samples` copies of the image with
    /// Gaussian noise of standard deviation `sigma` × (the image's max − min), drawn from `seed`.
    public func smoothGrad(_ image: Tensor, target: Int, samples: Int = 25, sigma: Float = 0.15, seed: UInt64 = 0) throws -> AttributionMap {
        let shape = try imageShape(image)
        guard samples >= 1, sigma >= 0, sigma.isFinite else {
            throw KilnError.invalidArgument("SmoothGrad needs at least 1 sample and a finite σ of at least 0, not \(samples) and \(sigma)")
        }
        let pixels = try image.toArray()
        let range = (pixels.max() ?? 0) - (pixels.min() ?? 0)
        let noisy = try Tensor.empty([samples] + shape, on: device)
        try noisy.fillNormal(mean: 0, std: sigma * range, seed: seed)
        let copies = try noisy + Tensor(Array(repeating: pixels, count: samples).flatMap { $0 }, shape: [samples] + shape, on: device)
        let gradients = try inputGradients(copies, target: target).toArray()
        // The mean over copies of each copy's saliency.
        var values = [Float](repeating: 0, count: shape[1] * shape[2])
        for sample in 0..<samples {
            let copy = Array(gradients[(sample * pixels.count)..<((sample + 1) * pixels.count)])
            for (pixel, value) in channelReduced(copy, shape: shape, largestMagnitude).values.enumerated() { values[pixel] += value / Float(samples) }
        }
        return AttributionMap(height: shape[1], width: shape[2], values: values)
    }

    /// Integrated gradients (Sundararajan et al. 2017) from a constant `baseline` image: (x − x′) times the
    /// mean gradient along the straight path x′ → x, by the trapezoidal rule over `steps` intervals, summed
    /// over channels. The attributions add up to logit(x) − logit(x′) (completeness), up to the rule's error.
    public func integratedGradients(_ image: Tensor, target: Int, baseline: Float = 0, steps: Int = 64) throws -> AttributionMap {
        let shape = try imageShape(image)
        guard steps >= 1 else { throw KilnError.invalidArgument("integrated gradients need at least 1 step, not \(steps)") }
        let pixels = try image.toArray(), size = pixels.count
        // Points α = 0, 1/steps, ..., 1 on the path, weighted ½, 1, ..., 1, ½.
        var path = [Float](repeating: 0, count: (steps + 1) * size)
        for point in 0...steps {
            let alpha = Float(point) / Float(steps)
            for index in 0..<size { path[point * size + index] = baseline + alpha * (pixels[index] - baseline) }
        }
        let gradients = try inputGradients(Tensor(path, shape: [steps + 1] + shape, on: device), target: target).toArray()
        var attributions = [Float](repeating: 0, count: size)
        for point in 0...steps {
            let weight = (point == 0 || point == steps ? 0.5 : 1) / Float(steps)
            for index in 0..<size { attributions[index] += weight * gradients[point * size + index] }
        }
        for index in 0..<size { attributions[index] *= pixels[index] - baseline }
        return channelReduced(attributions, shape: shape, +)
    }

    /// Grad-CAM (Selvaraju et al. 2017) on the layer at `layer` (default `defaultGradCAMLayer`): its channels'
    /// activations weighted by the mean gradient of the target logit over each channel, summed, through a
    /// ReLU, and upsampled bilinearly to the image's size.
    public func gradCAM(_ image: Tensor, target: Int, layer: String? = nil) throws -> AttributionMap {
        let shape = try imageShape(image)
        let path = try layer ?? defaultGradCAMLayer(for: shape)
        _ = try model.layer(named: path)
        _ = try inputGradients(image, target: target)
        guard let activations = model.output(of: path), let gradients = model.outputGradient(of: path) else {
            throw KilnError.invalidArgument("Grad-CAM: the output of \(path) is not kept by its container; name a layer inside it or around it")
        }
        guard activations.rank == 4 else {
            throw KilnError.invalidArgument("Grad-CAM needs a layer with a spatial output [N, C, H, W]; \(path) gives \(describe(activations.shape))")
        }
        let (channels, height, width) = (activations.shape[1], activations.shape[2], activations.shape[3])
        let (a, g) = (try activations.toArray(), try gradients.toArray())
        let plane = height * width
        var cam = [Float](repeating: 0, count: plane)
        for channel in 0..<channels {
            let weight = g[(channel * plane)..<((channel + 1) * plane)].reduce(0, +) / Float(plane)
            for pixel in 0..<plane { cam[pixel] += weight * a[channel * plane + pixel] }
        }
        let rectified = ImageFile(channels: 1, height: height, width: width, pixels: cam.map { Swift.max($0, 0) })
        return AttributionMap(height: shape[1], width: shape[2], values: rectified.resized(width: shape[2], height: shape[1]).pixels)
    }

    /// The last layer of the model's top level whose output is spatial ([N, C, H, W]): the last
    /// convolutional block, where Grad-CAM is usually taken.
    public func defaultGradCAMLayer(for imageShape: [Int]) throws -> String {
        var shape = [1] + imageShape
        var last: String?
        for (name, layer) in model.layers {
            shape = try layer.outputShape(for: shape)
            if shape.count == 4 { last = name }
        }
        guard let last else { throw KilnError.invalidArgument("Grad-CAM: no layer of the model has a spatial output") }
        return last
    }

    // MARK: Occlusion

    /// Occlusion sensitivity (Zeiler and Fergus 2014): for every `patch` × `patch` square at `stride`, the
    /// drop of the target logit when the square is set to `baseline` in every channel; each pixel gets the mean
    /// drop of the squares that cover it (0 where none does).
    public func occlusion(_ image: Tensor, target: Int, patch: Int = 4, stride: Int = 2, baseline: Float = 0) throws -> AttributionMap {
        let shape = try imageShape(image)
        let (channels, height, width) = (shape[0], shape[1], shape[2])
        guard patch >= 1, stride >= 1, patch <= Swift.min(height, width) else {
            throw KilnError.invalidArgument("occlusion needs a patch of 1 to \(Swift.min(height, width)) pixels and a stride of at least 1, not \(patch) and \(stride)")
        }
        let scores = try logits(image)
        try checkTarget(target, classes: scores.shape[1])
        let original = try scores.toArray()[target]
        let pixels = try image.toArray()
        let origins = Swift.stride(from: 0, through: height - patch, by: stride).flatMap { y in
            Swift.stride(from: 0, through: width - patch, by: stride).map { x in (y, x) }
        }
        var sums = [Float](repeating: 0, count: height * width), counts = sums
        // Occluded copies in batches of 64.
        for first in Swift.stride(from: 0, to: origins.count, by: 64) {
            let chunk = origins[first..<Swift.min(first + 64, origins.count)]
            var copies = [Float](); copies.reserveCapacity(chunk.count * pixels.count)
            for (y, x) in chunk {
                var copy = pixels
                for channel in 0..<channels {
                    for row in y..<(y + patch) {
                        for column in x..<(x + patch) { copy[(channel * height + row) * width + column] = baseline }
                    }
                }
                copies += copy
            }
            let occluded = try logits(Tensor(copies, shape: [chunk.count] + shape, on: device)).toArray()
            for (offset, (y, x)) in chunk.enumerated() {
                let drop = original - occluded[offset * scores.shape[1] + target]
                for row in y..<(y + patch) {
                    for column in x..<(x + patch) {
                        sums[row * width + column] += drop
                        counts[row * width + column] += 1
                    }
                }
            }
        }
        return AttributionMap(height: height, width: width, values: zip(sums, counts).map { $1 > 0 ? $0 / $1 : 0 })
    }

    // MARK: Helpers

    private func batched(_ images: Tensor) throws -> Tensor {
        let onDevice = images.device == device ? images : try images.to(device)
        return images.rank == 3 ? try onDevice.reshaped([1] + images.shape) : onDevice
    }

    private func imageShape(_ image: Tensor) throws -> [Int] {
        guard image.rank == 3 else { throw layerShapeError("Explainer", expected: "one image [C, H, W]", got: image.shape) }
        return image.shape
    }

    private func checkTarget(_ target: Int, classes: Int) throws {
        guard (0..<classes).contains(target) else {
            throw KilnError.invalidArgument("the target class \(target) is not one of the model's \(classes) classes (0–\(classes - 1))")
        }
    }

    private func largestMagnitude(_ sofar: Float, _ value: Float) -> Float { Swift.max(sofar, Swift.abs(value)) }

    /// Reduces per-channel values [C, H, W] to [H, W] with `combine` (starting from 0).
    private func channelReduced(_ values: [Float], shape: [Int], _ combine: (Float, Float) -> Float) -> AttributionMap {
        let (channels, plane) = (shape[0], shape[1] * shape[2])
        var result = [Float](repeating: 0, count: plane)
        for channel in 0..<channels {
            for pixel in 0..<plane { result[pixel] = combine(result[pixel], values[channel * plane + pixel]) }
        }
        return AttributionMap(height: shape[1], width: shape[2], values: result)
    }
}
