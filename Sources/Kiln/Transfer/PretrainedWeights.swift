/// What loading pretrained weights into a model did, tensor by tensor: PyTorch's
/// `load_state_dict(strict=False)` result (missing and unexpected names) with the shape mismatches, and what
/// Kiln adapted — a first convolution made for other input channels, a classifier left new for other classes.
public struct WeightLoadReport: Equatable, Sendable, CustomStringConvertible {
    /// A tensor the file and the model both name, with different shapes: left as initialised.
    public struct Mismatch: Equatable, Sendable {
        public var name: String
        public var fileShape: [Int]
        public var modelShape: [Int]
    }

    /// The first convolution's weight, made for `fileChannels` input channels and adapted to `modelChannels`.
    public struct InputAdaptation: Equatable, Sendable {
        public var name: String
        public var fileChannels: Int
        public var modelChannels: Int
    }

    /// The classifier (the model's last linear layer) left as initialised, and why.
    public struct NewHead: Equatable, Sendable {
        public var path: String
        public var reason: String
    }

    /// Tensors copied from the file (an adapted first convolution included).
    public var loaded: [String] = []
    /// Tensors of the model that the file does not have: left as initialised.
    public var missing: [String] = []
    /// Tensors of the file that the model does not have: ignored.
    public var unexpected: [String] = []
    public var mismatched: [Mismatch] = []
    public var adaptedInput: InputAdaptation?
    public var newHead: NewHead?
    /// A prefix every name of the file had and the model's lack ("module." of a DataParallel checkpoint), removed.
    public var strippedPrefix: String?

    /// Whether every tensor of the model came from the file and every tensor of the file went into the model
    /// (a new head and an adapted first convolution aside, which were asked for).
    public var isComplete: Bool { missing.isEmpty && unexpected.isEmpty && mismatched.isEmpty }

    public var description: String {
        var lines = ["loaded \(loaded.count) tensor\(loaded.count == 1 ? "" : "s")"
                     + (strippedPrefix.map { " (the file's names without their prefix '\($0)')" } ?? "")]
        if let adaptedInput {
            let how = adaptedInput.modelChannels == 1 ? "summed over its \(adaptedInput.fileChannels) input channels"
                : "its \(adaptedInput.fileChannels) input channel\(adaptedInput.fileChannels == 1 ? "" : "s") repeated to "
                  + "\(adaptedInput.modelChannels) and scaled by \(adaptedInput.fileChannels)/\(adaptedInput.modelChannels)"
            lines.append("adapted \(adaptedInput.name) from \(adaptedInput.fileChannels) to \(adaptedInput.modelChannels) "
                         + "input channel\(adaptedInput.modelChannels == 1 ? "" : "s"): \(how)")
        }
        if let newHead { lines.append("new classifier \(newHead.path) (initialised, not loaded): \(newHead.reason)") }
        func list(_ label: String, _ names: [String]) {
            guard !names.isEmpty else { return }
            lines.append("\(label) (\(names.count)): \(names.joined(separator: ", "))")
        }
        list("missing in the file, left as initialised", missing)
        list("unexpected in the file, ignored", unexpected)
        list("shape mismatches, left as initialised", mismatched.map { "\($0.name) (file \(describe($0.fileShape)), model \(describe($0.modelShape)))" })
        return lines.joined(separator: "\n")
    }
}

extension Layer {
    /// The dotted path of the classifier: the last linear layer of the tree (`fc`, `classifier.6`, `fc3`).
    public var classifierPath: String? { namedLayers.last { $0.layer is Linear }?.path }

    /// The dotted path of the first convolution, the layer that sees the image.
    public var inputConvolutionPath: String? { namedLayers.first { $0.layer is Conv2D }?.path }

    /// Loads every tensor of `file` (read from `source`, named in errors) whose name and shape match the
    /// model's, as transfer learning starts, and reports what it did with the rest:
    ///
    /// - a first convolution trained for other input channels is adapted as timm's `adapt_input_conv` does:
    ///   to one channel by summing over the file's channels (a grey image then gets the response the RGB
    ///   network gives that image repeated in every channel); to C channels by repeating the file's channels
    ///   and scaling by (file channels)/C (`adaptInputChannels`);
    /// - the classifier (`classifierPath`) is left as initialised when its class count differs from the
    ///   file's, or when `newHeadReason` says why it must be (other classes of the same count);
    /// - with `strict`, a tensor missing in the file, unexpected in it, or of another shape is an error
    ///   listing them all, and nothing is loaded.
    ///
    /// A file none of whose tensors match is an error, whatever `strict` says: it is not a checkpoint of
    /// this model. Names that all carry a prefix the model's lack ("module.") are matched without it.
    @discardableResult
    public func loadPretrained(_ file: SafeTensors, source: String, strict: Bool = false,
                               newHeadReason: String? = nil) throws -> WeightLoadReport {
        let parameters = namedParameters
        var report = WeightLoadReport()
        var names = file.names
        let modelNames = Set(parameters.map(\.name))
        if let prefix = ["module.", "model."].first(where: { prefix in
            !names.isEmpty && names.allSatisfy { $0.hasPrefix(prefix) } && !modelNames.contains { $0.hasPrefix(prefix) }
        }) {
            names = names.map { String($0.dropFirst(prefix.count)) }
            report.strippedPrefix = prefix
        }
        let fileName = Dictionary(uniqueKeysWithValues: zip(names, file.names))
        let head = classifierPath.map { path in ["\(path).weight", "\(path).bias"] } ?? []
        let inputWeight = inputConvolutionPath.map { "\($0).weight" }

        // A head whose class count differs, or whose classes are others: left new, weight and bias together.
        if let headPath = classifierPath, let weight = parameters.first(where: { $0.name == head[0] })?.parameter {
            let fileClasses = fileName[head[0]].flatMap { file[$0]?.shape.first }
            if let fileClasses, fileClasses != weight.value.shape[0] {
                report.newHead = .init(path: headPath, reason: "the file's has \(fileClasses) classes, the model \(weight.value.shape[0])")
            } else if let newHeadReason, fileClasses != nil {
                report.newHead = .init(path: headPath, reason: newHeadReason)
            }
        }

        var values: [(Parameter, [Float])] = []
        for (name, parameter) in parameters {
            guard let stored = fileName[name], let entry = file[stored], let floats = file.floats(stored) else {
                report.missing.append(name)
                continue
            }
            if report.newHead != nil, head.contains(name) { continue }
            let shape = parameter.value.shape
            if entry.shape == shape {
                values.append((parameter, floats))
                report.loaded.append(name)
            } else if name == inputWeight, entry.shape.count == 4, shape.count == 4, entry.shape[1] != shape[1],
                      entry.shape[0] == shape[0], entry.shape[2...] == shape[2...] {
                values.append((parameter, adaptInputChannels(floats, shape: entry.shape, to: shape[1])))
                report.loaded.append(name)
                report.adaptedInput = .init(name: name, fileChannels: entry.shape[1], modelChannels: shape[1])
            } else {
                report.mismatched.append(.init(name: name, fileShape: entry.shape, modelShape: shape))
            }
        }
        report.unexpected = names.filter { !modelNames.contains($0) }

        guard !report.loaded.isEmpty else {
            let sample = { (names: [String]) in names.prefix(4).joined(separator: ", ") + (names.count > 4 ? ", ..." : "") }
            throw KilnError.corruptFile(path: source, reason: "has no tensor that fits the model: its \(names.count) tensors are named "
                                        + "like \(sample(names)); the model's like \(sample(parameters.map(\.name)))")
        }
        if strict, !report.isComplete {
            throw KilnError.corruptFile(path: source, reason: "does not fit the model exactly (strict loading):\n\(report)")
        }
        for (parameter, floats) in values {
            try parameter.value.assign(try Tensor(floats, shape: parameter.value.shape))
            parameter.markModified()
        }
        return report
    }
}

/// A convolution weight [O, C, kh, kw] for `channels` input channels instead of C: summed over C for one
/// channel; otherwise channel c takes the file's channel c mod C, scaled by C / channels. An image whose
/// channels are all equal gets the same response as before when `channels` is 1 or a multiple of C (grey to
/// RGB); otherwise the rule is timm's approximation.
func adaptInputChannels(_ weight: [Float], shape: [Int], to channels: Int) -> [Float] {
    let (outputs, fileChannels) = (shape[0], shape[1])
    let plane = shape.dropFirst(2).reduce(1, *)
    var adapted = [Float](repeating: 0, count: outputs * channels * plane)
    let scale = Float(fileChannels) / Float(channels)
    for output in 0..<outputs {
        for channel in 0..<channels {
            let target = (output * channels + channel) * plane
            let sources = channels == 1 ? Array(0..<fileChannels) : [channel % fileChannels]
            for source in sources {
                let from = (output * fileChannels + source) * plane
                for index in 0..<plane { adapted[target + index] += weight[from + index] }
            }
            if channels != 1 { for index in 0..<plane { adapted[target + index] *= scale } }
        }
    }
    return adapted
}
