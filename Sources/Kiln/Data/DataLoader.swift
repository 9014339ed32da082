import Foundation

/// Serves a data set as batches on a device: shuffled per epoch (deterministically from the seed and the
/// epoch), augmented and preprocessed on the device, prepared on a background thread a few batches ahead so
/// the model does not wait for data.
public struct DataLoader: Sendable {
    public let dataset: Dataset
    public let batchSize: Int
    public let shuffle: Bool
    public let dropLast: Bool
    public let seed: UInt64
    public let device: Device
    /// Batches prepared ahead of the consumer.
    public var prefetch = 3
    /// Random augmentation of each batch (training batches).
    public var augmentation: AugmentationPipeline?
    /// What every batch goes through last, as the model expects its input.
    public var preprocessing: Preprocessing?
    /// The standard deviation σ of Gaussian noise added to every image after augmentation (pixel values then
    /// clamped to [0, 1]) and before preprocessing; the batch keeps the clean images as `cleanInputs`. The
    /// noise of an image is a function of the seed, the epoch and its index alone. nil or 0 for none.
    public var inputNoise: Float?
    /// In data-parallel training, (rank, ranks): each batch of `batchSize` samples is then the global batch of
    /// a step, of which this loader serves rank's shard (`BatchShard`), as PyTorch's DistributedSampler
    /// with the global batch split across the ranks. A last global batch smaller than the number of ranks
    /// cannot give every rank a sample and is left out on every rank (`droppedLastBatch`).
    public var shard: (rank: Int, ranks: Int)?

    public init(dataset: Dataset, batchSize: Int, shuffle: Bool, dropLast: Bool = false, seed: UInt64 = 0, device: Device) {
        self.dataset = dataset
        self.batchSize = Swift.max(batchSize, 1)
        self.shuffle = shuffle
        self.dropLast = dropLast
        self.seed = seed
        self.device = device
    }

    /// Batches per epoch.
    public var batchCount: Int {
        dropLast || droppedLastBatch ? dataset.count / batchSize : (dataset.count + batchSize - 1) / batchSize
    }

    /// Whether the last, smaller batch of an epoch is left out because it has fewer samples than there are
    /// ranks (a data-parallel training loader only).
    public var droppedLastBatch: Bool {
        guard let shard, !dropLast else { return false }
        let last = dataset.count % batchSize
        return last > 0 && last < shard.ranks
    }

    /// The sample order of `epoch`: the shuffle of the stream mix(seed, epoch) (`Philox.shuffledIndices`), or
    /// the stored order without shuffling.
    public func order(epoch: Int) -> [Int] {
        shuffle ? Philox.shuffledIndices(dataset.count, stream: Philox.mix(seed, UInt64(epoch))) : Array(0..<dataset.count)
    }

    /// The batches of `epoch`, starting at batch `first` (to resume mid-epoch).
    public func batches(epoch: Int, startingAt first: Int = 0) -> PrefetchedBatches {
        PrefetchedBatches(loader: self, order: order(epoch: epoch), epoch: epoch, first: first)
    }

    /// Builds batch `index` of a sample order in `epoch`: the images (and, for a mixing augmentation, their
    /// partners' after them) copied to the device, augmented there, then preprocessed.
    func makeBatch(_ index: Int, order: [Int], epoch: Int) throws -> Batch? {
        let global = order[(index * batchSize)..<Swift.min((index + 1) * batchSize, order.count)]
        guard let shard else { return try batch(of: Array(global), epoch: epoch) }
        let part = BatchShard(rank: shard.rank, of: shard.ranks, globalCount: global.count)
        // Only an evaluation loader's last batch can leave a rank without a sample: that rank skips it.
        guard part.count > 0 else { return nil }
        let first = global.startIndex + part.first
        var batch = try batch(of: Array(global[first..<(first + part.count)]), epoch: epoch)
        batch.shard = part
        return batch
    }

    /// The batch of the data set's images `samples` as `epoch` presents them.
    public func batch(of samples: [Int], epoch: Int) throws -> Batch {
        let partners = augmentation?.partners(of: samples, epoch: epoch, datasetCount: dataset.count)
        let rows = samples + (partners ?? [])
        let labels = samples.map { dataset.labels[$0] }
        var inputs = try Tensor(dataset.pixels(of: rows), shape: [rows.count] + dataset.imageShape, on: device)
        var targets: Tensor
        if let augmentation {
            (inputs, targets) = try augmentation.apply(to: inputs, samples: samples, labels: labels, partners: partners,
                                                       partnerLabels: partners?.map { dataset.labels[$0] }, epoch: epoch)
        } else {
            targets = try Tensor(labels.map(Float.init), shape: [labels.count], on: device)
        }
        var clean: Tensor?
        if let inputNoise, inputNoise > 0 {
            clean = try preprocessing?.apply(inputs) ?? inputs
            inputs = try noisy(inputs, samples: samples, epoch: epoch, std: inputNoise)
        }
        if let preprocessing { inputs = try preprocessing.apply(inputs) }
        var batch = Batch(inputs: inputs, targets: targets, labels: labels, samples: samples)
        batch.cleanInputs = clean
        return batch
    }

    /// clamp(x + σ·z, 0, 1) with z standard normal, each image's z from the stream (seed, epoch) at the offset of
    /// its index, so that it does not depend on which batch holds the image.
    private func noisy(_ x: Tensor, samples: [Int], epoch: Int, std: Float) throws -> Tensor {
        let size = dataset.imageSize
        guard x.shape[0] == samples.count, x.count == samples.count * size else {
            throw KilnError.shapeMismatch(operation: "input noise", expected: "\(samples.count) images of \(size) values", got: describe(x.shape))
        }
        let noise = try Tensor.empty(x.shape, on: x.device)
        let stream = Philox.mix(seed ^ 0x6E6F_6973_6521, UInt64(epoch))
        for (row, sample) in samples.enumerated() {
            let image = Tensor(storage: noise.storage, offset: noise.offset + row * size, shape: [size])
            try image.fillNormal(std: std, seed: stream, offset: UInt64(sample) * UInt64(size))
        }
        return try (x + noise).binary(.max, 0).binary(.min, 1)
    }
}

/// The batches of one epoch, produced by a background thread into a bounded queue. Abandoning the
/// iteration stops the thread after the batch it is preparing.
public final class PrefetchedBatches: Sequence, IteratorProtocol, @unchecked Sendable {
    private let condition = NSCondition()
    private var ready: [Result<Batch, Error>] = []
    private var finished = false
    private var cancelled = false
    private let capacity: Int

    init(loader: DataLoader, order: [Int], epoch: Int, first: Int) {
        capacity = Swift.max(loader.prefetch, 1)
        let thread = Thread { [self] in
            for index in first..<loader.batchCount {
                let result: Result<Batch, Error>
                switch Result(catching: { try loader.makeBatch(index, order: order, epoch: epoch) }) {
                case .success(nil): continue
                case let .success(batch?): result = .success(batch)
                case let .failure(error): result = .failure(error)
                }
                condition.lock()
                while ready.count >= capacity && !cancelled { condition.wait() }
                if cancelled { condition.unlock(); return }
                ready.append(result)
                condition.broadcast()
                condition.unlock()
            }
            condition.lock()
            finished = true
            condition.broadcast()
            condition.unlock()
        }
        thread.name = "kiln data loader"
        thread.start()
    }

    deinit { cancel() }

    /// Stops the producer; later calls of `next()` return nil.
    public func cancel() {
        condition.lock()
        cancelled = true
        ready.removeAll()
        condition.broadcast()
        condition.unlock()
    }

    /// The next batch; a failure to build one (e.g. out of device memory) ends the sequence after being
    /// reported through `error`.
    public func next() -> Batch? {
        condition.lock()
        defer { condition.unlock() }
        while ready.isEmpty && !finished && !cancelled { condition.wait() }
        guard !cancelled, !ready.isEmpty else { return nil }
        let result = ready.removeFirst()
        condition.broadcast()
        switch result {
        case let .success(batch): return batch
        case let .failure(failure):
            error = failure
            cancelled = true
            return nil
        }
    }

    /// The error that ended the sequence early, if any.
    public private(set) var error: Error?
}
