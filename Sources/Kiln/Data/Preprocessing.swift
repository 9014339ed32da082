import Foundation

/// The deterministic preprocessing a model is trained with, applied to every batch it sees (training,
/// validation, test and `kiln predict`) after augmentation: per-image standardisation, then per-channel
/// normalisation. Histogram equalisation, a property of each stored image, is done once when the data set
/// loads (`Dataset.equalizeHistograms()`).
public struct Preprocessing: Codable, Equatable, Sendable {
    /// Per-channel means and standard deviations: x → (x − mean[c]) / std[c].
    public var mean: [Float]?
    public var std: [Float]?
    /// Each image to zero mean and unit variance over its own values (global contrast normalisation).
    public var standardize: Bool
    /// Histogram equalisation of each image's channels, on load.
    public var equalize: Bool

    public init(mean: [Float]? = nil, std: [Float]? = nil, standardize: Bool = false, equalize: Bool = false) {
        self.mean = mean
        self.std = std
        self.standardize = standardize
        self.equalize = equalize
    }

    public var isIdentity: Bool { mean == nil && !standardize && !equalize }

    /// The batch `x` [N, C, H, W] as the model sees it.
    public func apply(_ x: Tensor) throws -> Tensor {
        var y = x
        if standardize { y = try standardizeImages(y) }
        if let mean, let std { y = try normalizeChannels(y, mean: mean, std: std) }
        return y
    }

    /// Parses `--normalize`: `auto` (nil: compute from the training set), `MEAN,STD` for every channel, or C
    /// means followed by C standard deviations.
    public static func parseNormalize(_ text: String) throws -> (mean: [Float], std: [Float])? {
        if text.lowercased() == "auto" { return nil }
        let values = text.split(separator: ",").map { Float($0.trimmingCharacters(in: .whitespaces)) }
        guard values.count >= 2, values.count % 2 == 0, let numbers = values as? [Float], numbers.allSatisfy(\.isFinite) else {
            throw KilnError.invalidArgument("--normalize '\(text)': give auto, MEAN,STD, or C means then C standard deviations (e.g. 0.49,0.48,0.45,0.25,0.24,0.26)")
        }
        let half = numbers.count / 2
        let (mean, std) = (Array(numbers[..<half]), Array(numbers[half...]))
        guard std.allSatisfy({ $0 > 0 }) else {
            throw KilnError.invalidArgument("--normalize '\(text)': the standard deviations must be positive")
        }
        return (mean, std)
    }

    /// The means and standard deviations for `channels`: one pair given for all, or one per channel.
    public static func perChannel(_ values: (mean: [Float], std: [Float]), channels: Int) throws -> (mean: [Float], std: [Float]) {
        if values.mean.count == channels { return values }
        if values.mean.count == 1 { return (Array(repeating: values.mean[0], count: channels), Array(repeating: values.std[0], count: channels)) }
        throw KilnError.invalidArgument("--normalize gives \(values.mean.count) means and standard deviations for images of \(channels) channel\(channels == 1 ? "" : "s"): give one pair or one per channel")
    }
}

extension Dataset {
    /// The mean and (population) standard deviation of each channel over all images, accumulated in Double.
    public func channelStatistics() -> (mean: [Float], std: [Float]) {
        let channels = imageShape[0], plane = imageSize / Swift.max(channels, 1)
        var sums = [Double](repeating: 0, count: channels), squares = sums
        for image in 0..<count {
            for c in 0..<channels {
                let start = image * imageSize + c * plane
                for v in pixels[start..<(start + plane)] {
                    sums[c] += Double(v)
                    squares[c] += Double(v) * Double(v)
                }
            }
        }
        let n = Double(Swift.max(count * plane, 1))
        let mean = sums.map { $0 / n }
        let std = zip(squares, mean).map { Swift.max($0 / n - $1 * $1, 0).squareRoot() }
        return (mean.map(Float.init), std.map { Float(Swift.max($0, 1e-6)) })
    }

    /// Histogram equalisation of every channel of every image, as PIL's ImageOps.equalize on 8-bit levels:
    /// levels are mapped through the cumulative histogram, leaving out the last level's count, so that the
    /// result spreads over 0…255 (an image of one level is left as it is).
    public mutating func equalizeHistograms() {
        let plane = imageSize / Swift.max(imageShape[0], 1)
        pixels.withUnsafeMutableBufferPointer { pixels in
            for start in stride(from: 0, to: pixels.count, by: Swift.max(plane, 1)) {
                let channel = UnsafeMutableBufferPointer(rebasing: pixels[start..<(start + plane)])
                let levels = channel.map { Int((Swift.min(Swift.max($0, 0), 1) * 255).rounded()) }
                var histogram = [Int](repeating: 0, count: 256)
                for level in levels { histogram[level] += 1 }
                let used = histogram.filter { $0 > 0 }
                guard used.count > 1, let last = histogram.lastIndex(where: { $0 > 0 }) else { continue }
                let step = (levels.count - histogram[last]) / 255
                guard step > 0 else { continue }
                var lookup = [Int](repeating: 0, count: 256), running = step / 2
                for level in 0..<256 {
                    lookup[level] = Swift.min(running / step, 255)
                    running += histogram[level]
                }
                for (q, level) in levels.enumerated() { channel[q] = Float(lookup[level]) / 255 }
            }
        }
    }
}
