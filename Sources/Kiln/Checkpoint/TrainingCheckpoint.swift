import Foundation

/// A training checkpoint: the model's state dict as a PyTorch-compatible safetensors file (loadable with
/// `safetensors.torch.load_file` + `load_state_dict`) whose metadata holds the training position, the fit
/// loop's state and the run's configuration, and the optimiser's state beside it in `<name>.optimizer.safetensors`.
public enum TrainingCheckpoint {
    /// The metadata key of the `FitState` JSON.
    public static let stateKey = "kiln.state"

    public static func optimizerURL(for url: URL) -> URL {
        url.deletingPathExtension().appendingPathExtension("optimizer.safetensors")
    }

    /// Writes both files atomically, the optimiser's first, so a model file always has its optimiser state.
    public static func save(model: any Layer, optimizer: Optimizer?, position: TrainingPosition, configuration: String, to url: URL) throws {
        try save(model: model, optimizer: optimizer, position: position, metadata: [:], configuration: configuration, to: url)
    }

    /// Writes a checkpoint that resumes the fit loop exactly: `state` goes into the model file's metadata as
    /// JSON, beside the position keys that older readers (and `position(in:)`) use.
    public static func save(model: any Layer, optimizer: Optimizer?, state: FitState, configuration: String, to url: URL) throws {
        let json = String(decoding: try JSONEncoder.sorted.encode(state), as: UTF8.self)
        try save(model: model, optimizer: optimizer, position: state.position, metadata: [stateKey: json],
                 configuration: configuration, to: url)
    }

    private static func save(model: any Layer, optimizer: Optimizer?, position: TrainingPosition, metadata: [String: String],
                             configuration: String, to url: URL) throws {
        if let optimizer {
            var state = try optimizer.state()
            state.metadata["kiln.step"] = String(position.step)
            try state.write(to: optimizerURL(for: url))
        }
        var file = try model.stateDict()
        file.metadata = ["format": "pt", "kiln.epoch": String(position.epoch), "kiln.batch": String(position.batch),
                         "kiln.step": String(position.step), "kiln.config": configuration].merging(metadata) { $1 }
        try file.write(to: url)
    }

    /// The training position stored in a checkpoint, or nil for a file without one (e.g. written by PyTorch).
    public static func position(in file: SafeTensors) -> TrainingPosition? {
        guard let epoch = file.metadata["kiln.epoch"].flatMap(Int.init), let batch = file.metadata["kiln.batch"].flatMap(Int.init),
              let step = file.metadata["kiln.step"].flatMap(Int.init) else { return nil }
        return TrainingPosition(epoch: epoch, batch: batch, step: step)
    }

    /// The fit loop's state stored in a checkpoint; nil for a file without one (written by PyTorch, or by a
    /// Kiln that saved only the position). `source` names the file in errors.
    public static func state(in file: SafeTensors, source: String) throws -> FitState? {
        guard let json = file.metadata[stateKey] else { return nil }
        do {
            return try JSONDecoder.nonConforming.decode(FitState.self, from: Data(json.utf8))
        } catch {
            throw KilnError.corruptFile(path: source, reason: "its \(stateKey) metadata is not a fit state (\(error))")
        }
    }

    /// Loads the model (and the optimiser, when given) from a checkpoint; returns its position.
    @discardableResult
    public static func load(model: any Layer, optimizer: Optimizer?, from url: URL) throws -> TrainingPosition? {
        try loadFile(model: model, optimizer: optimizer, from: url).position
    }

    /// Loads the model (and the optimiser, when given) from a checkpoint; returns its position and fit state.
    public static func loadState(model: any Layer, optimizer: Optimizer?, from url: URL) throws -> (position: TrainingPosition?, state: FitState?) {
        let (file, position) = try loadFile(model: model, optimizer: optimizer, from: url)
        let state = try state(in: file, source: url.path)
        if let state, state.position != position {
            throw KilnError.corruptFile(path: url.path, reason: "its fit state is at \(state.position), its position keys at \(position.map { "\($0)" } ?? "none")")
        }
        return (position, state)
    }

    private static func loadFile(model: any Layer, optimizer: Optimizer?, from url: URL) throws -> (file: SafeTensors, position: TrainingPosition?) {
        let file = try SafeTensors.read(from: url)
        try model.loadStateDict(file, source: url.path)
        let position = position(in: file)
        if let optimizer, let position {
            let optimizerFile = optimizerURL(for: url)
            let state = try SafeTensors.read(from: optimizerFile)
            guard state.metadata["kiln.step"] == String(position.step) else {
                throw KilnError.corruptFile(path: optimizerFile.path, reason: "its step \(state.metadata["kiln.step"] ?? "?") is not the model's \(position.step)")
            }
            try optimizer.loadState(state, source: optimizerFile.path)
        }
        return (file, position)
    }
}

// JSON has no NaN or infinity, and a fit state may hold them (a validation loss of NaN, say); written as strings
// they survive a checkpoint instead of failing it.
private let nonConformingFloats = (positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")

extension JSONEncoder {
    /// Sorted keys, so the same value always encodes to the same bytes, and NaN and infinities as strings.
    static var sorted: JSONEncoder {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        encoder.nonConformingFloatEncodingStrategy = .convertToString(
            positiveInfinity: nonConformingFloats.positiveInfinity, negativeInfinity: nonConformingFloats.negativeInfinity,
            nan: nonConformingFloats.nan)
        return encoder
    }
}

extension JSONDecoder {
    /// Reads what `JSONEncoder.sorted` writes.
    static var nonConforming: JSONDecoder {
        let decoder = JSONDecoder()
        decoder.nonConformingFloatDecodingStrategy = .convertFromString(
            positiveInfinity: nonConformingFloats.positiveInfinity, negativeInfinity: nonConformingFloats.negativeInfinity,
            nan: nonConformingFloats.nan)
        return decoder
    }
}
