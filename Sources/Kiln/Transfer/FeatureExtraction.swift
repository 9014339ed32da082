import Foundation

extension Sequential {
    /// The output of the layer at the dotted path `path` for every image of `batches`, in inference mode, one
    /// row per image: a spatial output [N, C, H, W] averaged over H and W to C values, any other flattened.
    /// Returned as a data set of [D, 1, 1] "images" with the batches' labels, so that a `DataLoader` batches
    /// it and a linear probe trains on it (`LinearProbe`).
    public func features<Batches: Sequence<Batch>>(of path: String, batches: Batches, classNames: [String]) throws -> Dataset {
        _ = try layer(named: path)
        var rows: [Float] = [], labels: [Int] = []
        var dimension: Int?
        for batch in batches {
            _ = try forward(batch.inputs, .inferenceRecordingEveryLayer)
            guard let output = output(of: path) else {
                throw KilnError.invalidArgument("the output of \(path) is not kept by its container, so it cannot be read: name a layer inside it or around it")
            }
            let count = output.shape[0], perImage = output.count / Swift.max(count, 1)
            let pooled = output.rank == 4
                ? try output.reshaped([count, output.shape[1], output.shape[2] * output.shape[3]]).mean(axis: 2)
                : try output.reshaped([count, perImage])
            dimension = pooled.shape[1]
            rows += try pooled.toArray()
            labels += batch.labels
        }
        return Dataset(imageShape: [dimension ?? 0, 1, 1], pixels: rows, labels: labels, classNames: classNames)
    }
}

/// A linear classifier trained on frozen features (`Sequential.features(of:batches:classNames:)`): the
/// standard measure of how much a representation knows about new classes. Each feature is standardised
/// with the training features' mean and standard deviation, then softmax regression is fitted with Adam
/// (and L2 weight decay) over shuffled mini-batches, as scikit-learn's LogisticRegression would be on the
/// same standardised features.
public struct LinearProbe {
    public var epochs = 100
    public var batchSize = 64
    public var learningRate: Float = 0.01
    public var weightDecay: Float = 1e-4
    public var seed: UInt64 = 1

    public init() {}

    /// What fitting gave: the classifier, its accuracies, and the standardisation it takes.
    public struct Result {
        /// Flatten → Linear(D, classes), for standardised features.
        public var model: Sequential
        public var preprocessing: Preprocessing
        public var trainAccuracy: Double
        public var testAccuracy: Double?
        public var trainLoss: Double
    }

    /// Fits on `train` and scores on `test` (both features of the same layer), on `device`.
    public func fit(train: Dataset, test: Dataset?, device: Device) throws -> Result {
        let dimension = train.imageShape[0], classes = train.classNames.count
        guard train.count > 0, dimension > 0 else { throw KilnError.invalidArgument("linear probe: no training features") }
        if let test, test.imageShape != train.imageShape {
            throw KilnError.shapeMismatch(operation: "linear probe", expected: "test features of \(dimension) values", got: describe(test.imageShape))
        }
        let statistics = train.channelStatistics()
        // A feature that never varies (a ReLU that is always off) is centred and left unscaled.
        let preprocessing = Preprocessing(mean: statistics.mean, std: statistics.std.map { $0 > 1e-6 ? $0 : 1 })
        let model = try Sequential {
            Flatten()
            try Linear(inputFeatures: dimension, outputFeatures: classes).named("fc")
        }
        try model.reset(seed: seed)
        try model.move(to: device)
        let optimizer = Optimizer(model: model, rule: .adam(decoupledWeightDecay: true), learningRate: learningRate,
                                  regularization: Regularization(weightDecay: weightDecay))
        let trainer = Trainer(model: model, optimizer: optimizer, loss: crossEntropyLoss, seed: seed)
        var loader = DataLoader(dataset: train, batchSize: Swift.min(batchSize, train.count), shuffle: true, seed: seed, device: device)
        loader.preprocessing = preprocessing
        var last: PassResult?
        for epoch in 0..<epochs { last = try trainer.trainPass(loader.batches(epoch: epoch)) }
        func accuracy(_ dataset: Dataset) throws -> Double {
            var loader = DataLoader(dataset: dataset, batchSize: 256, shuffle: false, device: device)
            loader.preprocessing = preprocessing
            return try trainer.evaluate(loader.batches(epoch: 0)).accuracy
        }
        return Result(model: model, preprocessing: preprocessing, trainAccuracy: try accuracy(train),
                      testAccuracy: try test.map(accuracy), trainLoss: last?.loss ?? .nan)
    }
}
