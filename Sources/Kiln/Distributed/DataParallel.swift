import Foundation

/// Where one rank's samples sit in a training step's global batch: positions `first ..< first + count` of
/// a batch of `globalCount` samples. Rank r of n takes positions ⌊r·L/n⌋ ..< ⌊(r+1)·L/n⌋ of a batch of L,
/// so shards differ by at most one sample (only a last, smaller batch can be uneven).
public struct BatchShard: Sendable, Equatable {
    public var first: Int
    public var count: Int
    public var globalCount: Int

    public init(rank: Int, of ranks: Int, globalCount: Int) {
        first = rank * globalCount / ranks
        count = (rank + 1) * globalCount / ranks - first
        self.globalCount = globalCount
    }

    /// The factor of this rank's loss gradient, n·count / L: the ranks' gradients, each of the mean loss over
    /// its own samples and scaled so, average to the gradient of the mean loss over the global batch (1
    /// whenever the shards are equal).
    public func gradientScale(ranks: Int) -> Float { Float(ranks * count) / Float(globalCount) }

    /// The weight of this rank's mean loss in the global batch's mean loss, count / L.
    public var lossWeight: Double { Double(count) / Double(globalCount) }
}

/// Why data-parallel training cannot go on.
public enum DataParallelError: Error, CustomStringConvertible, Equatable {
    /// The ranks were started with different configurations or Kiln versions: what differs, by rank.
    case ranksDisagree(what: String, ranks: [String])
    /// After training, the ranks' parameters are not bit-identical (their digests, by rank).
    case parametersDiverged(digests: [String])
    /// A collective failed (the library's message).
    case communication(String)

    /// Whether every rank raises this error at the same point (the ranks compare what they gathered), so
    /// that the job can end normally rather than abort.
    public var isReachedByEveryRank: Bool {
        if case .communication = self { return false }
        return true
    }

    public var description: String {
        switch self {
        case let .ranksDisagree(what, ranks):
            return "the ranks of this job disagree on \(what): \(ranks.joined(separator: "; ")); start every rank with the same "
                + "Kiln and the same options"
        case let .parametersDiverged(digests):
            return "the ranks' parameters differ after training (digests \(digests.joined(separator: ", "))): data-parallel training lost its sync"
        case let .communication(message):
            return "MPI: \(message)"
        }
    }
}

/// Data-parallel training over the ranks of a job, with the semantics of PyTorch's DistributedDataParallel
/// and DistributedSampler: every rank holds the same model, takes its shard of each global batch (the
/// `DataLoader`'s `shard`), and averages its gradients with the others' before the optimiser step
/// (`GradientBuckets`, overlapped with the backward pass), so every rank's parameters stay identical. Batch
/// norm uses each rank's own statistics unless `synchronizesBatchNorm`; the running statistics that
/// evaluation and checkpoints use are rank 0's (DDP broadcasts them from rank 0).
public final class DataParallel: @unchecked Sendable {
    public let communicator: any Communicator
    /// Gradient bytes per all-reduce (DDP's bucket_cap_mb, 25 MB by default).
    public let bucketBytes: Int
    /// Whether training-mode batch norms use the statistics of the global batch (`--sync-bn`).
    public let synchronizesBatchNorm: Bool
    private var buckets: GradientBuckets?

    public init(communicator: any Communicator, bucketBytes: Int = 25 << 20, synchronizesBatchNorm: Bool = false) {
        self.communicator = communicator
        self.bucketBytes = Swift.max(bucketBytes, 4)
        self.synchronizesBatchNorm = synchronizesBatchNorm
    }

    public var rank: Int { communicator.rank }
    public var ranks: Int { communicator.size }
    /// Rank 0, which prints, writes the run's files and whose initial weights every rank starts from.
    public var isRoot: Bool { communicator.rank == 0 }

    /// This rank's part of a global batch of `globalCount` samples.
    public func shard(globalCount: Int) -> BatchShard { BatchShard(rank: rank, of: ranks, globalCount: globalCount) }

    /// Checks that every rank has the same value of each of `facts` (name, value: the configuration, Kiln's
    /// version, the position a resume starts at), raising `ranksDisagree` that names the first that differs
    /// and each rank's value.
    public func checkRanksAgree(on facts: [(name: String, value: String)]) throws {
        let digests = facts.map { Double(fnv1a(Array($0.value.utf8)) >> 12) }  // 52 bits: exact in a Double
        let gathered = try communicator.allGather(digests)
        for (index, fact) in facts.enumerated() where Set(gathered.map { $0[index] }).count > 1 {
            let all = try communicator.broadcastAll(Array(fact.value.utf8))
            throw DataParallelError.ranksDisagree(what: fact.name, ranks: all.enumerated().map { "rank \($0.offset): \(String(decoding: $0.element, as: UTF8.self))" })
        }
    }

    /// Copies rank 0's value of every parameter and buffer of `model` to the other ranks (DDP's start): the
    /// ranks then train from the same weights whatever their seeds or files.
    public func broadcastParameters(of model: any Layer, buffersOnly: Bool = false) throws {
        for (_, parameter) in model.namedParameters where !buffersOnly || parameter.isBuffer {
            var values = try parameter.value.toArray()
            values = try communicator.broadcast(values, root: 0)
            if rank != 0 {
                try values.withUnsafeBufferPointer { try parameter.value.backend.write($0, to: parameter.value) }
                parameter.markModified()
            }
        }
    }

    /// A digest of the bits of every parameter and buffer of `model`.
    public func digest(of model: any Layer) throws -> UInt64 {
        var hash = fnv1aStart
        for (name, parameter) in model.namedParameters {
            fnv1a(Array(name.utf8), into: &hash)
            try parameter.value.toArray().withUnsafeBytes { fnv1a($0, into: &hash) }
        }
        return hash
    }

    /// Checks that every rank holds bit-identical parameters and buffers (after rank 0's buffers were
    /// broadcast); returns the common digest or raises `parametersDiverged`.
    @discardableResult
    public func checkIdenticalParameters(of model: any Layer) throws -> UInt64 {
        try broadcastParameters(of: model, buffersOnly: true)
        let own = try digest(of: model)
        let gathered = try communicator.allGather([Double(own >> 32), Double(own & 0xFFFF_FFFF)])
        let digests = gathered.map { UInt64($0[0]) << 32 | UInt64($0[1]) }
        guard Set(digests).count == 1 else { throw DataParallelError.parametersDiverged(digests: digests.map { String($0, radix: 16) }) }
        return own
    }

    /// The buckets that average `model`'s gradients, made again when the set of trainable parameters changes
    /// (an unfrozen backbone).
    func gradientBuckets(for model: any Layer) -> GradientBuckets {
        let trainable = model.namedParameters.map(\.parameter).filter(\.requiresGradient)
        if let buckets, buckets.matches(trainable) { return buckets }
        let made = GradientBuckets(parameters: trainable, communicator: communicator, bucketBytes: bucketBytes)
        buckets = made
        return made
    }

    /// Sums `values` over the ranks (losses weighted by their share of the batch, counts).
    func sum(_ values: [Double]) throws -> [Double] { try communicator.allReduceSum(values) }

    /// The evaluation of the whole data set from every rank's evaluation of its shard.
    func combine(_ evaluation: Evaluation) throws -> Evaluation {
        let classes = Int(try communicator.allGather([Double(evaluation.confusion.count)]).map { $0[0] }.max() ?? 0)
        var counts = [evaluation.loss.isNaN ? 0 : evaluation.loss * Double(evaluation.samples), Double(evaluation.samples)]
        for row in 0..<classes {
            for column in 0..<classes {
                counts.append(row < evaluation.confusion.count ? Double(evaluation.confusion[row][column]) : 0)
            }
        }
        let total = try communicator.allReduceSum(counts)
        let confusion = (0..<classes).map { row in (0..<classes).map { Int(total[2 + row * classes + $0]) } }
        return Evaluation(loss: total[1] == 0 ? .nan : total[0] / total[1], samples: Int(total[1]), confusion: confusion,
                          measuresAccuracy: !evaluation.accuracy.isNaN)
    }
}

extension Communicator {
    /// Every rank's bytes, in rank order (they may differ in length).
    func broadcastAll(_ bytes: [UInt8]) throws -> [[UInt8]] {
        try (0..<size).map { try broadcast(bytes: bytes, root: $0) }
    }
}

/// 64-bit FNV-1a.
func fnv1a(_ bytes: [UInt8]) -> UInt64 {
    var hash = fnv1aStart
    fnv1a(bytes, into: &hash)
    return hash
}

let fnv1aStart: UInt64 = 0xcbf2_9ce4_8422_2325

func fnv1a<Bytes: Sequence<UInt8>>(_ bytes: Bytes, into hash: inout UInt64) {
    for byte in bytes { hash = (hash ^ UInt64(byte)) &* 0x100_0000_01b3 }
}
