import Foundation

/// A training checkpoint: the model's state dict as a PyTorch-compatible safetensors file (loadable with
/// `safetensors.torch.load_file` + `load_state_dict`) whose metadata holds the training position and the run's
/// configuration, and the optimiser's state beside it in `<name>.optimizer.safetensors`.
public enum TrainingCheckpoint {
    public static func optimizerURL(for url: URL) -> URL {
        url.deletingPathExtension().appendingPathExtension("optimizer.safetensors")
    }

    /// Writes both files atomically, the optimiser's first, so a model file always has its optimiser state.
    public static func save(model: any Layer, optimizer: Optimizer?, position: TrainingPosition, configuration: String, to url: URL) throws {
        if let optimizer {
            var state = try optimizer.state()
            state.metadata["kiln.step"] = String(position.step)
            try state.write(to: optimizerURL(for: url))
        }
        var file = try model.stateDict()
        file.metadata = ["format": "pt", "kiln.epoch": String(position.epoch), "kiln.batch": String(position.batch),
                         "kiln.step": String(position.step), "kiln.config": configuration]
        try file.write(to: url)
    }

    /// The training position stored in a checkpoint, or nil for a file without one (e.g. written by PyTorch).
    public static func position(in file: SafeTensors) -> TrainingPosition? {
        guard let epoch = file.metadata["kiln.epoch"].flatMap(Int.init), let batch = file.metadata["kiln.batch"].flatMap(Int.init),
              let step = file.metadata["kiln.step"].flatMap(Int.init) else { return nil }
        return TrainingPosition(epoch: epoch, batch: batch, step: step)
    }

    /// Loads the model (and the optimiser, when given) from a checkpoint; returns its position.
    @discardableResult
    public static func load(model: any Layer, optimizer: Optimizer?, from url: URL) throws -> TrainingPosition? {
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
        return position
    }
}
