import ArgumentParser
import Foundation
import Kiln

/// A model restored from a checkpoint for `eval` and `predict`, with the test split of its data set.
struct CheckpointedModel {
    var name: String
    var network: Sequential
    var test: Dataset
    var device: Device

    /// Reads `checkpoint`; the model and data set come from its Kiln configuration unless given (a PyTorch
    /// state dict carries none, so it needs `model`).
    init(checkpoint: String, model: String?, data: String?, device: String) throws {
        let url = URL(fileURLWithPath: checkpoint)
        let file = try SafeTensors.read(from: url)
        let saved = file.metadata["kiln.config"].flatMap { try? JSONDecoder().decode(TrainOptions.self, from: Data($0.utf8)) }
        guard let name = model ?? saved?.model else {
            throw ValidationError("\(checkpoint) carries no Kiln configuration: name its model with --model (\(ModelZoo.names.joined(separator: ", ")))")
        }
        self.name = name
        self.device = try DeviceOption.parse(device)
        test = try Dataset.load(data ?? saved?.data ?? "fashion-mnist", split: .test)
        network = try ModelZoo.make(name, inputShape: test.imageShape, classes: test.classNames.count)
        try network.loadStateDict(file, source: url.path, strict: false)
        try network.move(to: self.device)
    }
}
