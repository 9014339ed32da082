import Foundation

/// A training checkpoint: the model's state dict as a PyTorch-compatible safetensors file (loadable with
/// `safetensors.torch.load_file` + `load_state_dict`) whose metadata holds the training position, the fit
/// loop's state and the run's configuration.
///
/// A run resumes from a resume checkpoint (`saveResumable`): the same file with the optimiser's tensors
/// added under `optimizer.` and its step count in the metadata, written as one file so that a single rename
/// commits it. Older runs kept the optimiser beside the model in `<name>.optimizer.safetensors`
/// (`save(model:optimizer:...)`, `load`), which is still read.
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
        try modelFile(model: model, position: position, metadata: metadata, configuration: configuration).write(to: url)
    }

    /// The model's state dict with the checkpoint metadata: what last.safetensors and best.safetensors hold.
    private static func modelFile(model: any Layer, position: TrainingPosition, metadata: [String: String],
                                  configuration: String) throws -> SafeTensors {
        var file = try model.stateDict()
        file.metadata = ["format": "pt", "kiln.epoch": String(position.epoch), "kiln.batch": String(position.batch),
                         "kiln.step": String(position.step), "kiln.config": configuration].merging(metadata) { $1 }
        return file
    }

    // MARK: What the model was trained on

    /// The metadata key of the data set's class names, in label order, as a JSON array of strings.
    public static let classesKey = "kiln.classes"
    /// The metadata key of the model's input shape [C, H, W], as a JSON array of numbers.
    public static let inputShapeKey = "kiln.input"

    /// The metadata that tells a reader of a checkpoint what its labels mean and what images it takes.
    public static func dataMetadata(classNames: [String], imageShape: [Int]) throws -> [String: String] {
        [classesKey: String(decoding: try JSONEncoder.sorted.encode(classNames), as: UTF8.self),
         inputShapeKey: String(decoding: try JSONEncoder.sorted.encode(imageShape), as: UTF8.self)]
    }

    /// The class names a checkpoint records, or nil when it has none (a checkpoint from before Kiln wrote
    /// them, or a PyTorch state dict); a value that is not an array of strings is an error naming `source`.
    public static func classNames(in file: SafeTensors, source: String) throws -> [String]? {
        guard let json = file.metadata[classesKey] else { return nil }
        guard let names = try? JSONDecoder().decode([String].self, from: Data(json.utf8)), !names.isEmpty else {
            throw KilnError.corruptFile(path: source, reason: "its \(classesKey) metadata is not a non-empty JSON array of strings")
        }
        return names
    }

    /// The input shape [C, H, W] a checkpoint records, or nil when it has none.
    public static func inputShape(in file: SafeTensors, source: String) throws -> [Int]? {
        guard let json = file.metadata[inputShapeKey] else { return nil }
        guard let shape = try? JSONDecoder().decode([Int].self, from: Data(json.utf8)), shape.count == 3, shape.allSatisfy({ $0 >= 1 }) else {
            throw KilnError.corruptFile(path: source, reason: "its \(inputShapeKey) metadata is not a JSON array of three positive numbers [C, H, W]")
        }
        return shape
    }

    // MARK: Resume checkpoints: model, optimiser and fit state in one file

    /// The prefix of the optimiser's tensors in a resume checkpoint: `optimizer.<parameter>.<state>`.
    public static let optimizerPrefix = "optimizer."
    /// Resume-checkpoint metadata: the optimiser's step count, and the marker of the format.
    static let optimizerStepKey = "kiln.optimizer.step"
    static let formatKey = "kiln.checkpoint"
    static let resumeFormat = "resume-v1"

    /// Writes the model, the optimiser and `state` as ONE safetensors file, atomically (temporary file, fsync,
    /// rename, fsync of the folder): the file on disk is always either the previous whole checkpoint or the
    /// new one. Returns the model's part (`modelPart(of:)`), the file to export as last.safetensors.
    @discardableResult
    public static func saveResumable(model: any Layer, optimizer: Optimizer, state: FitState, configuration: String,
                                     metadata: [String: String] = [:], to url: URL) throws -> SafeTensors {
        let json = String(decoding: try JSONEncoder.sorted.encode(state), as: UTF8.self)
        let modelPart = try modelFile(model: model, position: state.position, metadata: metadata.merging([stateKey: json]) { $1 },
                                      configuration: configuration)
        var file = modelPart
        let optimizerState = try optimizer.state()
        for name in optimizerState.names {
            guard let entry = optimizerState[name] else { continue }
            file.set(optimizerPrefix + name, entry)
        }
        file.metadata[optimizerStepKey] = optimizerState.metadata["step"] ?? "0"
        file.metadata[formatKey] = resumeFormat
        try file.write(to: url)
        return modelPart
    }

    /// A resume checkpoint's model tensors and metadata without the optimiser's: byte for byte the model
    /// checkpoint written with it.
    public static func modelPart(of file: SafeTensors) -> SafeTensors {
        var model = SafeTensors()
        for name in file.names where !name.hasPrefix(optimizerPrefix) {
            if let entry = file[name] { model.set(name, entry) }
        }
        model.metadata = file.metadata.filter { $0.key != optimizerStepKey && $0.key != formatKey }
        return model
    }

    /// Loads the model and the optimiser from a resume checkpoint written by `saveResumable`; returns its
    /// position, fit state and model part.
    public static func loadResumable(model: any Layer, optimizer: Optimizer, from url: URL) throws
        -> (position: TrainingPosition, state: FitState?, model: SafeTensors) {
        let file = try SafeTensors.read(from: url)
        guard file.metadata[formatKey] == resumeFormat else {
            throw KilnError.corruptFile(path: url.path, reason: "is not a Kiln resume checkpoint (no \(formatKey) = \(resumeFormat) in its metadata)")
        }
        let modelPart = modelPart(of: file)
        try model.loadStateDict(modelPart, source: url.path)
        guard let position = position(in: file) else {
            throw KilnError.corruptFile(path: url.path, reason: "holds no training position")
        }
        var optimizerState = SafeTensors()
        for name in file.names where name.hasPrefix(optimizerPrefix) {
            if let entry = file[name] { optimizerState.set(String(name.dropFirst(optimizerPrefix.count)), entry) }
        }
        optimizerState.metadata["step"] = file.metadata[optimizerStepKey]
        try optimizer.loadState(optimizerState, source: url.path)
        let state = try state(in: file, source: url.path)
        if let state, state.position != position {
            throw KilnError.corruptFile(path: url.path, reason: "its fit state is at \(state.position), its position keys at \(position)")
        }
        return (position, state, modelPart)
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
        return try FitState.decode(json: json, source: source, what: "its \(stateKey) metadata")
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
                throw KilnError.corruptFile(path: optimizerFile.path, reason: "holds the optimiser state of step \(state.metadata["kiln.step"] ?? "?"), "
                    + "but \(url.lastPathComponent) is at step \(position.step): the two files were written by an older Kiln "
                    + "and it was stopped between them, so the optimiser state of step \(position.step) is lost")
            }
            try optimizer.loadState(state, source: optimizerFile.path)
        }
        return (file, position)
    }
}
