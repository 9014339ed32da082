import Foundation

/// One step of an augmentation pipeline. Steps run in the order of the spec; each draws its own random
/// choices for each sample.
public enum AugmentationStep: Equatable, Sendable {
    /// A random H×W crop of the image padded by `padding` on every side (torchvision's RandomCrop).
    case crop(padding: Int, border: AugmentBorder)
    /// A random shift by whole pixels, up to `fraction` of the width and height, the rest filled.
    case translate(fraction: Double, fill: Float)
    /// A horizontal flip with probability ½.
    case flip
    /// A vertical flip with probability ½.
    case verticalFlip
    /// One affine warp about the centre: rotation in ±`degrees`, x-shear factor in ±`shear`, scale in 1 ± `zoom`.
    case affine(degrees: Double, shear: Double, zoom: Double, interpolation: Interpolation, fill: Float)
    /// A crop of random area (`minimumScale`…1 of the image) and aspect ratio (¾…4⁄3), resized to the
    /// image's size (torchvision's RandomResizedCrop).
    case resizedCrop(minimumScale: Double, interpolation: Interpolation)
    /// Brightness, contrast and saturation factors drawn from 1 ± each (torchvision's ColorJitter, in that
    /// fixed order).
    case jitter(brightness: Double, contrast: Double, saturation: Double)
    /// A `size`×`size` square at a random centre set to zero, clipped at the edges (DeVries and Taylor 2017).
    case cutout(size: Int)
    /// With `probability`, a random rectangle of 2–33 % of the image and aspect 0.3–3.3 set to zero (Zhong et
    /// al. 2017, torchvision's RandomErasing).
    case erase(probability: Double)
    /// Each image mixed with a random other training image; see `MixRule`.
    case mix(MixRule)
}

/// How a mixing step combines an image with its partner (another training image, drawn per sample).
public enum MixRule: Equatable, Sendable {
    /// Mixup (Zhang et al. 2018) with λ ~ Beta(`mixup`, `mixup`), cutmix (Yun et al. 2019) with a box of area
    /// 1 − λ, λ ~ Beta(`cutmix`, `cutmix`); with both, each sample takes one of the two with probability ½.
    /// The targets become λ·one-hot(label) + (1 − λ)·one-hot(partner's label).
    case mixupCutmix(mixup: Double?, cutmix: Double?)
    /// Sample pairing (Inoue 2018): the average with the partner, keeping the first image's label, in the
    /// epochs `AugmentationPipeline.pairingIsOn` names.
    case pairing
}

/// A parsed `--augment` spec: comma-separated steps `name[:value[:option]]`, or a preset name.
public struct AugmentationSpec: Equatable, Sendable, CustomStringConvertible {
    public var steps: [AugmentationStep]
    /// The spec as given (a preset's name stays its name).
    public var text: String

    /// Named pipelines.
    public static let presets: [(name: String, spec: String)] = [
        ("none", ""),
        ("standard", "crop:4,flip"),
        ("strong", "crop:4,flip,rotate:10,shear:0.1,zoom:0.1,jitter:0.2,cutout:8"),
    ]

    /// The step names with their parameter, for error messages and help.
    public static let grammar = [
        "crop:PIXELS[:reflect]", "translate:FRACTION", "flip", "vflip", "rotate:DEGREES", "shear:FACTOR", "zoom:FRACTION",
        "rrc[:MIN_SCALE]", "jitter:AMOUNT", "brightness:AMOUNT", "contrast:AMOUNT", "saturation:AMOUNT", "cutout:PIXELS",
        "erase:PROBABILITY", "mixup:ALPHA", "cutmix:ALPHA", "pairing", "nearest", "fill:VALUE",
    ]

    public var description: String { text }

    public var isEmpty: Bool { steps.isEmpty }

    /// Parses `text`; raises `KilnError.invalidArgument` naming an unknown step (with the valid ones) or a
    /// parameter out of its range. `rotate`, `shear` and `zoom` form one affine step at the first one's place;
    /// `jitter`, `brightness`, `contrast` and `saturation` one jitter step; `mixup` and `cutmix` one mixing step.
    /// `nearest` makes the affine and resized-crop steps sample the nearest pixel; `fill:V` sets what the
    /// affine warp and `translate` put outside the image.
    public init(_ text: String) throws {
        self.text = text
        let trimmed = text.trimmingCharacters(in: .whitespaces)
        let expanded = Self.presets.first { $0.name == trimmed.lowercased() }?.spec ?? trimmed
        var parsed = ParsedSteps()
        for item in expanded.isEmpty ? [] : expanded.split(separator: ",", omittingEmptySubsequences: false) {
            let fields = item.trimmingCharacters(in: .whitespaces).lowercased().split(separator: ":", omittingEmptySubsequences: false).map(String.init)
            try parsed.add(fields, in: text)
        }
        steps = parsed.steps()
    }
}

/// What the items of a spec say, gathered before the steps are built (several items make one step).
private struct ParsedSteps {
    private var order: [String] = []
    private var crop: AugmentationStep?, translate: Double?, flips: [String] = []
    private var degrees = 0.0, shear = 0.0, zoom = 0.0
    private var resizedCrop: Double?
    private var brightness = 0.0, contrast = 0.0, saturation = 0.0
    private var cutout: Int?, erase: Double?
    private var mixup: Double?, cutmix: Double?, pairing = false
    private var interpolation = Interpolation.bilinear, fill: Float = 0

    mutating func add(_ fields: [String], in text: String) throws {
        guard let name = fields.first, !name.isEmpty else {
            throw KilnError.invalidArgument("--augment '\(text)': an empty step; use \(AugmentationSpec.grammar.joined(separator: ", ")) or a preset (\(AugmentationSpec.presets.map(\.name).joined(separator: ", ")))")
        }
        func plain(_ x: Double) -> String { x == x.rounded() ? String(Int(x)) : String(x) }
        func value(_ range: ClosedRange<Double>, _ meaning: String, default fallback: Double? = nil) throws -> Double {
            guard fields.count >= 2 else {
                if let fallback { return fallback }
                throw KilnError.invalidArgument("--augment \(name) needs a value: \(name):\(meaning.uppercased().replacingOccurrences(of: " ", with: "_"))")
            }
            guard let number = Double(fields[1]), number.isFinite, range.contains(number) else {
                throw KilnError.invalidArgument("--augment \(name):\(fields[1]): the \(meaning) must be a number from \(plain(range.lowerBound)) to \(plain(range.upperBound))")
            }
            return number
        }
        func noOptions(_ allowed: Int) throws {
            guard fields.count <= allowed else {
                throw KilnError.invalidArgument("--augment \(fields.joined(separator: ":")): \(name) takes \(allowed == 1 ? "no value" : "one value")")
            }
        }
        func note(_ key: String) { if !order.contains(key) { order.append(key) } }
        switch name {
        case "crop":
            let border: AugmentBorder
            switch fields.count > 2 ? fields[2] : "zero" {
            case "zero", "constant": border = .constant(0)
            case "reflect": border = .reflect
            default: throw KilnError.invalidArgument("--augment \(fields.joined(separator: ":")): the crop's padding is zero or reflect")
            }
            try noOptions(3)
            crop = .crop(padding: Int(try value(1...64, "padding in pixels")), border: border)
            note("crop")
        case "translate": try noOptions(2); translate = try value(0...0.5, "fraction of the size"); note("translate")
        case "flip", "hflip": try noOptions(1); flips.append("flip"); note("flip")
        case "vflip": try noOptions(1); flips.append("vflip"); note("vflip")
        case "rotate": try noOptions(2); degrees = try value(0...180, "angle in degrees"); note("affine")
        case "shear": try noOptions(2); shear = try value(0...1, "shear factor"); note("affine")
        case "zoom": try noOptions(2); zoom = try value(0...0.9, "fraction of the scale"); note("affine")
        case "rrc": try noOptions(2); resizedCrop = try value(0.01...1, "smallest area fraction", default: 0.08); note("rrc")
        case "jitter":
            try noOptions(2)
            let amount = try value(0...1, "amount")
            (brightness, contrast, saturation) = (amount, amount, amount)
            note("jitter")
        case "brightness": try noOptions(2); brightness = try value(0...1, "amount"); note("jitter")
        case "contrast": try noOptions(2); contrast = try value(0...1, "amount"); note("jitter")
        case "saturation": try noOptions(2); saturation = try value(0...1, "amount"); note("jitter")
        case "cutout": try noOptions(2); cutout = Int(try value(1...1024, "square's side in pixels")); note("cutout")
        case "erase": try noOptions(2); erase = try value(0...1, "probability", default: 0.5); note("erase")
        case "mixup": try noOptions(2); mixup = try value(0.01...10, "Beta distribution's alpha", default: 0.2); note("mix")
        case "cutmix": try noOptions(2); cutmix = try value(0.01...10, "Beta distribution's alpha", default: 1); note("mix")
        case "pairing": try noOptions(1); pairing = true; note("mix")
        case "nearest": try noOptions(1); interpolation = .nearest
        case "fill": try noOptions(2); fill = Float(try value(-1000...1000, "fill value"))
        default:
            let presets = AugmentationSpec.presets.map(\.name).joined(separator: ", ")
            throw KilnError.invalidArgument("--augment: unknown step '\(name)'; use \(AugmentationSpec.grammar.joined(separator: ", ")), or a preset: \(presets)")
        }
        if pairing, mixup != nil || cutmix != nil {
            throw KilnError.invalidArgument("--augment: pairing does not combine with mixup or cutmix; choose one")
        }
    }

    func steps() -> [AugmentationStep] {
        var flipsLeft = flips[...]
        return order.compactMap { key -> AugmentationStep? in
            switch key {
            case "crop": return crop
            case "translate": return translate.map { .translate(fraction: $0, fill: fill) }
            case "flip", "vflip":
                guard let next = flipsLeft.popFirst() else { return nil }
                return next == "flip" ? .flip : .verticalFlip
            case "affine": return .affine(degrees: degrees, shear: shear, zoom: zoom, interpolation: interpolation, fill: fill)
            case "rrc": return resizedCrop.map { .resizedCrop(minimumScale: $0, interpolation: interpolation) }
            case "jitter": return .jitter(brightness: brightness, contrast: contrast, saturation: saturation)
            case "cutout": return cutout.map { .cutout(size: $0) }
            case "erase": return erase.map { .erase(probability: $0) }
            case "mix": return .mix(pairing ? .pairing : .mixupCutmix(mixup: mixup, cutmix: cutmix))
            default: return nil
            }
        }
    }
}
