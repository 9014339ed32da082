import Foundation

/// Runs an `AugmentationSpec` on training batches. Every random choice for a sample comes from the Philox
/// stream keyed by (seed, epoch, sample index, step), drawn on the host into per-sample parameter rows;
/// the batch's device then applies the ops of `AugmentationBackend`. So a sample is augmented the same on
/// every device, whatever the batch size, and a resumed run sees the batches an uninterrupted one would.
///
/// A mixing step needs each sample's partner: the loader appends the partners' images to the batch (the
/// rows after the first `samples`), the steps before the mixing step augment both, and the mixing step
/// leaves one image per sample.
public struct AugmentationPipeline: Sendable {
    public let spec: AugmentationSpec
    public let seed: UInt64
    /// Epochs of the whole run, for sample pairing's schedule.
    public let epochs: Int
    /// Classes, for the soft targets of mixup and cutmix.
    public let classes: Int

    /// The root of the augmentation streams; its mix keeps them apart from the loader's shuffle (mix(seed, epoch)).
    private let domain: UInt64

    public init(spec: AugmentationSpec, seed: UInt64, epochs: Int, classes: Int) {
        self.spec = spec
        self.seed = seed
        domain = Philox.mix(seed, 0x6175_676D_656E_74)  // "augment"
        self.epochs = epochs
        self.classes = classes
    }

    /// Sample pairing's schedule, after Inoue's: off in the first epoch, then on for 8 epochs and off for 2
    /// in turn, and off for the last tenth of the run (at least its last epoch) to fine-tune on real images.
    public func pairingIsOn(epoch: Int) -> Bool {
        epoch >= 1 && epoch < epochs - Swift.max(1, epochs / 10) && (epoch - 1) % 10 < 8
    }

    /// The stream of one sample's choices in one step of one epoch; its positions are the draws.
    func stream(epoch: Int, sample: Int, step: Int) -> UInt64 {
        Philox.mix(Philox.mix(Philox.mix(domain, UInt64(epoch)), UInt64(sample)), UInt64(step))
    }

    /// The partners of `samples` (indices into a data set of `datasetCount` images) for the epoch's mixing
    /// step, or nil when the pipeline mixes nothing this epoch.
    public func partners(of samples: [Int], epoch: Int, datasetCount: Int) -> [Int]? {
        guard let step = spec.steps.firstIndex(where: { if case .mix = $0 { return true } else { return false } }) else { return nil }
        if case .mix(.pairing) = spec.steps[step], !pairingIsOn(epoch: epoch) { return nil }
        return samples.map { sample in
            let u = Philox.uniform(seed: stream(epoch: epoch, sample: sample, step: step), position: 0)
            return Swift.min(Int(Double(u) * Double(datasetCount)), datasetCount - 1)
        }
    }

    /// Augments `images` [B (+ B partners), C, H, W] of `samples` (with their partners' rows after them when
    /// `partners` is given); returns the images [B, C, H, W] and the targets: the labels [B], or class
    /// probabilities [B, classes] after mixup or cutmix.
    public func apply(to images: Tensor, samples: [Int], labels: [Int], partners: [Int]?, partnerLabels: [Int]?,
                      epoch: Int) throws -> (images: Tensor, targets: Tensor) {
        let device = images.device
        let (height, width) = (images.shape[2], images.shape[3])
        let rows = samples + (partners ?? [])
        var x = images
        var softTargets: [Float]?
        for (index, step) in spec.steps.enumerated() {
            func parameters(_ width: Int, for rows: [Int], _ draw: (inout Draws) -> [Float]) throws -> Tensor {
                var values: [Float] = []
                values.reserveCapacity(rows.count * width)
                for sample in rows {
                    var draws = Draws(stream: stream(epoch: epoch, sample: sample, step: index))
                    values += draw(&draws)
                }
                return try Tensor(values, shape: [rows.count, width], on: device)
            }
            switch step {
            case let .crop(padding, border):
                x = try shiftFlip(x, params: parameters(4, for: rows) { d in
                    [Float(d.integer(in: -padding...padding)), Float(d.integer(in: -padding...padding)), 0, 0]
                }, border: border)
            case let .translate(fraction, fill):
                let (mx, my) = (Int((fraction * Double(width)).rounded()), Int((fraction * Double(height)).rounded()))
                x = try shiftFlip(x, params: parameters(4, for: rows) { d in
                    [Float(d.integer(in: -mx...mx)), Float(d.integer(in: -my...my)), 0, 0]
                }, border: .constant(fill))
            case .flip:
                x = try shiftFlip(x, params: parameters(4, for: rows) { d in [0, 0, d.uniform() < 0.5 ? 1 : 0, 0] })
            case .verticalFlip:
                x = try shiftFlip(x, params: parameters(4, for: rows) { d in [0, 0, 0, d.uniform() < 0.5 ? 1 : 0] })
            case let .affine(degrees, shear, zoom, interpolation, fill):
                x = try warpAffine(x, matrices: parameters(6, for: rows) { d in
                    let angle = d.uniform(-degrees...degrees) * .pi / 180
                    let (s, z) = (d.uniform(-shear...shear), d.uniform((1 - zoom)...(1 + zoom)))
                    return Self.inverseWarp(angle: angle, shear: s, scale: z, width: width, height: height)
                }, interpolation: interpolation, fill: fill)
            case let .resizedCrop(minimumScale, interpolation):
                x = try warpAffine(x, matrices: parameters(6, for: rows) { d in
                    let box = Self.resizedCropBox(&d, minimumScale: minimumScale, width: width, height: height)
                    // Output pixel centre u of W maps to box.x + u·w/W of the input.
                    return [Float(Double(box.width) / Double(width)), 0, Float(box.x),
                            0, Float(Double(box.height) / Double(height)), Float(box.y)]
                }, interpolation: interpolation)
            case let .jitter(brightness, contrast, saturation):
                x = try colorJitter(x, factors: parameters(3, for: rows) { d in
                    [brightness, contrast, saturation].map { Float(d.uniform(Swift.max(0, 1 - $0)...(1 + $0))) }
                })
            case let .cutout(size):
                x = try eraseBoxes(x, boxes: parameters(4, for: rows) { d in
                    let (cx, cy) = (d.integer(in: 0...(width - 1)), d.integer(in: 0...(height - 1)))
                    return [cx - size / 2, cy - size / 2, cx - size / 2 + size, cy - size / 2 + size].enumerated().map { k, v in
                        Float(Swift.min(Swift.max(v, 0), k % 2 == 0 ? width : height))
                    }
                })
            case let .erase(probability):
                x = try eraseBoxes(x, boxes: parameters(4, for: rows) { d in
                    guard d.uniform() < probability, let box = Self.erasingBox(&d, width: width, height: height) else { return [0, 0, 0, 0] }
                    return [Float(box.x), Float(box.y), Float(box.x + box.width), Float(box.y + box.height)]
                })
            case let .mix(rule):
                guard let partnerLabels else { continue }  // no partners: pairing's off epochs
                let count = samples.count
                var weights: [Float] = []
                let params = try parameters(5, for: samples) { d in
                    _ = d.uniform()  // the partner's draw (see `partners(of:epoch:datasetCount:)`)
                    let row = Self.mixParameters(&d, rule: rule, width: width, height: height)
                    weights.append(row.weight)
                    return row.params
                }
                x = try mixPairs(x.slice(0..<count), x.slice(count..<(2 * count)), params: params)
                if case .mixupCutmix = rule {
                    var targets = [Float](repeating: 0, count: count * classes)
                    for (row, weight) in weights.enumerated() {
                        targets[row * classes + labels[row]] += weight
                        targets[row * classes + partnerLabels[row]] += 1 - weight
                    }
                    softTargets = targets
                }
            }
        }
        let targets = try softTargets.map { try Tensor($0, shape: [samples.count, classes], on: device) }
            ?? Tensor(labels.map(Float.init), shape: [labels.count], on: device)
        return (x.shape[0] == samples.count ? x : try x.slice(0..<samples.count), targets)
    }

    /// The output-to-input map of a rotation by `angle` (radians), x-shear `shear` and scale `scale` about
    /// the image centre, as the kernels' (a, b, c, d, e, f): the forward map is rotation · shear · scale.
    static func inverseWarp(angle: Double, shear: Double, scale: Double, width: Int, height: Int) -> [Float] {
        let (cosine, sine) = (Foundation.cos(angle), Foundation.sin(angle))
        // Forward A = R · [[1, shear], [0, 1]] · scale.
        let (a11, a12) = (scale * cosine, scale * (cosine * shear - sine))
        let (a21, a22) = (scale * sine, scale * (sine * shear + cosine))
        let determinant = a11 * a22 - a12 * a21
        let (i11, i12, i21, i22) = (a22 / determinant, -a12 / determinant, -a21 / determinant, a11 / determinant)
        let (cx, cy) = (Double(width) / 2, Double(height) / 2)
        return [i11, i12, cx - i11 * cx - i12 * cy, i21, i22, cy - i21 * cx - i22 * cy].map { Float($0) }
    }

    /// torchvision's RandomResizedCrop.get_params: ten tries at an area of `minimumScale`…1 of the image and a
    /// log-uniform aspect ratio in ¾…4⁄3, else the largest centred crop within those ratios.
    static func resizedCropBox(_ d: inout Draws, minimumScale: Double, width: Int, height: Int) -> (x: Int, y: Int, width: Int, height: Int) {
        let area = Double(width * height)
        for _ in 0..<10 {
            let target = area * d.uniform(minimumScale...1)
            let ratio = Foundation.exp(d.uniform(Foundation.log(3.0 / 4)...Foundation.log(4.0 / 3)))
            let w = Int((target * ratio).squareRoot().rounded()), h = Int((target / ratio).squareRoot().rounded())
            if w > 0, w <= width, h > 0, h <= height {
                return (d.integer(in: 0...(width - w)), d.integer(in: 0...(height - h)), w, h)
            }
        }
        let ratio = Double(width) / Double(height)
        let (w, h) = ratio < 3.0 / 4 ? (width, Int((Double(width) / (3.0 / 4)).rounded()))
            : ratio > 4.0 / 3 ? (Int((Double(height) * 4 / 3).rounded()), height) : (width, height)
        return ((width - w) / 2, (height - h) / 2, w, h)
    }

    /// torchvision's RandomErasing.get_params with its defaults: ten tries at 2–33 % of the area and a
    /// log-uniform aspect ratio in 0.3…3.3; nil when none fits.
    static func erasingBox(_ d: inout Draws, width: Int, height: Int) -> (x: Int, y: Int, width: Int, height: Int)? {
        for _ in 0..<10 {
            let target = Double(width * height) * d.uniform(0.02...0.33)
            let ratio = Foundation.exp(d.uniform(Foundation.log(0.3)...Foundation.log(3.3)))
            let h = Int((target * ratio).squareRoot().rounded()), w = Int((target / ratio).squareRoot().rounded())
            if w < width, h < height, w > 0, h > 0 {
                return (d.integer(in: 0...(width - w)), d.integer(in: 0...(height - h)), w, h)
            }
        }
        return nil
    }

    /// One sample's mixing row (λ, x0, y0, x1, y1) and the weight of its own label in the targets.
    static func mixParameters(_ d: inout Draws, rule: MixRule, width: Int, height: Int) -> (params: [Float], weight: Float) {
        switch rule {
        case .pairing:
            return ([0.5, 0, 0, 0, 0], 1)
        case let .mixupCutmix(mixup, cutmix):
            let useCutmix = switch (mixup, cutmix) {
            case (.some, .some): d.uniform() < 0.5
            case (nil, .some): true
            default: false
            }
            if !useCutmix {
                let lambda = Float(d.beta(mixup ?? 1))
                return ([lambda, 0, 0, 0, 0], lambda)
            }
            // The box of area 1 − λ at a random centre, clipped; the label weight is what is left uncovered.
            let lambda = d.beta(cutmix ?? 1)
            let cut = (1 - lambda).squareRoot()
            let (cw, ch) = (Int(Double(width) * cut), Int(Double(height) * cut))
            let (cx, cy) = (d.integer(in: 0...(width - 1)), d.integer(in: 0...(height - 1)))
            let (x0, x1) = (Swift.max(cx - cw / 2, 0), Swift.min(cx + cw / 2, width))
            let (y0, y1) = (Swift.max(cy - ch / 2, 0), Swift.min(cy + ch / 2, height))
            let covered = Float((x1 - x0) * (y1 - y0)) / Float(width * height)
            return ([1, Float(x0), Float(y0), Float(x1), Float(y1)], 1 - covered)
        }
    }
}

/// Successive draws from one sample's stream.
struct Draws {
    let stream: UInt64
    private var position: UInt64 = 0

    init(stream: UInt64) { self.stream = stream }

    /// Uniform in [0, 1).
    mutating func uniform() -> Double {
        defer { position += 1 }
        return Double(Philox.uniform(seed: stream, position: position))
    }

    mutating func uniform(_ range: ClosedRange<Double>) -> Double {
        range.lowerBound + (range.upperBound - range.lowerBound) * uniform()
    }

    /// Uniform over the whole numbers of `range`.
    mutating func integer(in range: ClosedRange<Int>) -> Int {
        Swift.min(range.lowerBound + Int(uniform() * Double(range.count)), range.upperBound)
    }

    /// Standard normal (Box–Muller on two uniforms).
    mutating func normal() -> Double {
        let (u1, u2) = (1 - uniform(), uniform())
        return (-2 * Foundation.log(u1)).squareRoot() * Foundation.cos(2 * .pi * u2)
    }

    /// Gamma(shape, 1) by Marsaglia and Tsang's method (with the boost U^(1/shape) below shape 1).
    mutating func gamma(_ shape: Double) -> Double {
        if shape < 1 { return gamma(shape + 1) * Foundation.pow(1 - uniform(), 1 / shape) }
        let d = shape - 1.0 / 3, c = 1 / (9 * d).squareRoot()
        while true {
            let z = normal(), v = Foundation.pow(1 + c * z, 3)
            if v > 0, Foundation.log(1 - uniform()) < z * z / 2 + d - d * v + d * Foundation.log(v) { return d * v }
        }
    }

    /// Beta(alpha, alpha), as the ratio of two gamma draws.
    mutating func beta(_ alpha: Double) -> Double {
        let (a, b) = (gamma(alpha), gamma(alpha))
        return a + b > 0 ? a / (a + b) : 0.5
    }
}

extension AugmentationPipeline {
    /// What the pipeline does to `count` training images, for a person to look at: rows of `columns` images as
    /// they are, each followed by a row of the same images as `epoch` (from 0) augments them, 2-pixel borders.
    /// The images are those a loader shuffled with the pipeline's seed would put first.
    public func previewGrid(of train: Dataset, epoch: Int, count: Int, columns: Int, device: Device) throws -> ImageFile {
        let shown = Swift.min(count, train.count)
        let plain = DataLoader(dataset: train, batchSize: shown, shuffle: true, seed: seed, device: device)
        var augmented = plain
        augmented.augmentation = self
        let samples = Array(plain.order(epoch: 0).prefix(shown))
        let originals = try plain.batch(of: samples, epoch: epoch).inputs.toArray()
        let changed = try augmented.batch(of: samples, epoch: epoch).inputs.toArray()
        let size = train.imageSize
        var pixels: [Float] = [], cells = 0
        for start in stride(from: 0, to: shown, by: columns) {
            let end = Swift.min(start + columns, shown)
            for source in [originals, changed] {
                for k in start..<(start + columns) {
                    pixels += k < end ? source[(k * size)..<((k + 1) * size)] : ArraySlice(repeating: 1, count: size)
                    cells += 1
                }
            }
        }
        return try ImageGrid.tile(pixels, shape: [cells] + train.imageShape, columns: columns, border: 2)
    }
}
