import Foundation
import XCTest
@testable import Kiln

/// Data-parallel training checked in one process, its ranks as threads (`ThreadRanks`): the answers are
/// those of one process training on the whole global batch. DistributedCommandTests runs the same under
/// mpirun.
final class DataParallelTests: XCTestCase {
    func testShardsSplitABatchIntoEqualContiguousParts() {
        for globalCount in 1...37 {
            for ranks in 1...min(globalCount, 5) {
                let shards = (0..<ranks).map { BatchShard(rank: $0, of: ranks, globalCount: globalCount) }
                XCTAssertEqual(shards.first?.first, 0)
                for (shard, next) in zip(shards, shards.dropFirst()) { XCTAssertEqual(shard.first + shard.count, next.first, "contiguous") }
                XCTAssertEqual(shards.map(\.count).reduce(0, +), globalCount, "\(ranks) shards of \(globalCount) cover it")
                XCTAssertLessThanOrEqual(shards.map(\.count).max()! - shards.map(\.count).min()!, 1, "\(ranks) shards of \(globalCount)")
                XCTAssertEqual(shards.map(\.lossWeight).reduce(0, +), 1, accuracy: 1e-12)
                // Each rank's mean-loss gradient, scaled and averaged over the ranks, weighs each sample 1 / L.
                for shard in shards {
                    XCTAssertEqual(Double(shard.gradientScale(ranks: ranks)) / Double(ranks * shard.count), 1 / Double(globalCount),
                                   accuracy: 1e-7)
                }
            }
        }
    }

    /// A rank's dropout mask is its rows of the mask one process draws for the whole batch, on either backend.
    func testShardMasksAreTheRowsOfTheWholeBatchMask() throws {
        for device in try testDevices() {
            for (shape, spatial, ranks) in [([7, 11], false, 2), ([5, 3, 4, 4], true, 3), ([9, 2, 3, 3], false, 4)] {
                let x = try Tensor.ones(shape, on: device)
                let key = DropoutKey(seed: 12, step: 5, layer: 2)
                let whole = try dropout(x, probability: 0.5, key: key, spatial: spatial).mask.toArray()
                var joined: [Float] = []
                let perSample = whole.count / shape[0]
                for rank in 0..<ranks {
                    let shard = BatchShard(rank: rank, of: ranks, globalCount: shape[0])
                    let part = try Tensor.ones([shard.count] + shape.dropFirst(), on: device)
                    let units = spatial ? shard.count * shape[1] : part.count
                    let shardKey = DropoutKey(seed: 12, step: 5, layer: 2, units: units, batch: shard.count, shard: shard)
                    let mask = try dropout(part, probability: 0.5, key: shardKey, spatial: spatial).mask.toArray()
                    XCTAssertEqual(mask.count, shard.count * perSample)
                    joined += mask
                }
                XCTAssertEqual(joined, whole, "\(shape) over \(ranks) ranks, spatial \(spatial), on \(device)")
                XCTAssertTrue(Set(whole).isSuperset(of: [0, 2]), "the mask drops some units and keeps some")
            }
        }
    }

    /// Synchronised batch norm over the ranks' shards computes batch norm of the whole batch: outputs, input
    /// gradients, the summed γ and β gradients and the running statistics.
    func testSynchronisedBatchNormIsBatchNormOfTheWholeBatch() throws {
        for device in try testDevices() {
            for (shape, ranks) in [([7, 3, 5, 5], 2), ([5, 4, 3, 1], 3), ([2, 6], 2)] {
                var random = TestRandom(seed: UInt64(shape.reduce(0, +)))
                let channels = shape[1], perSample = shape.dropFirst().reduce(1, *)
                let x = random.floats(shape.reduce(1, *), -2, 3), dy = random.floats(x.count)
                let gamma = random.floats(channels, 0.5, 1.5), beta = random.floats(channels)
                let runningMean = random.floats(channels), runningVariance = random.floats(channels, 0.5, 2)
                let settings = BatchNormSettings()

                let t = { (values: [Float], shape: [Int]) throws -> Tensor in try Tensor(values, shape: shape, on: device) }
                let (wholeMean, wholeVariance) = (try t(runningMean, [channels]), try t(runningVariance, [channels]))
                let (y, statistics) = try batchNormTraining(try t(x, shape), gamma: try t(gamma, [channels]), beta: try t(beta, [channels]),
                                                            runningMean: wholeMean, runningVariance: wholeVariance, settings: settings)
                let (wholeGammaGradient, wholeBetaGradient) = (try Tensor.zeros([channels], on: device), try Tensor.zeros([channels], on: device))
                let dx = try batchNormBackward(try t(x, shape), dy: try t(dy, shape), gamma: try t(gamma, [channels]), statistics: statistics,
                                               accumulatingInto: wholeGammaGradient, wholeBetaGradient)

                let parts = try ThreadRanks(ranks).run { communicator -> (y: [Float], dx: [Float], dGamma: [Float], dBeta: [Float], running: [Float]) in
                    let shard = BatchShard(rank: communicator.rank, of: ranks, globalCount: shape[0])
                    let rows = (shard.first * perSample)..<((shard.first + shard.count) * perSample)
                    let partShape = [shard.count] + shape.dropFirst()
                    let (mean, variance) = (try t(runningMean, [channels]), try t(runningVariance, [channels]))
                    let synchronizer = BatchNormSynchronizer(communicator)
                    let forward = try synchronizer.trainingForward(try t(Array(x[rows]), partShape), gamma: try t(gamma, [channels]),
                                                                   beta: try t(beta, [channels]), runningMean: mean, runningVariance: variance,
                                                                   settings: settings)
                    let (dGamma, dBeta) = (try Tensor.zeros([channels], on: device), try Tensor.zeros([channels], on: device))
                    let dx = try synchronizer.backward(try t(Array(x[rows]), partShape), dy: try t(Array(dy[rows]), partShape),
                                                       gamma: try t(gamma, [channels]), statistics: forward.statistics,
                                                       accumulatingInto: dGamma, dBeta)
                    return (try forward.output.toArray(), try dx.toArray(), try dGamma.toArray(), try dBeta.toArray(),
                            try mean.toArray() + variance.toArray())
                }
                let label = "\(shape) over \(ranks) ranks on \(device)"
                assertClose(parts.flatMap(\.y), try y.toArray(), atol: 1e-5, rtol: 1e-5, "output, \(label)")
                assertClose(parts.flatMap(\.dx), try dx.toArray(), atol: 1e-5, rtol: 1e-4, "input gradient, \(label)")
                let sum = { (values: [[Float]]) in values.dropFirst().reduce(values[0]) { zip($0, $1).map(+) } }
                assertClose(sum(parts.map(\.dGamma)), try wholeGammaGradient.toArray(), atol: 1e-4, rtol: 1e-5, "γ gradient, \(label)")
                assertClose(sum(parts.map(\.dBeta)), try wholeBetaGradient.toArray(), atol: 1e-4, rtol: 1e-5, "β gradient, \(label)")
                for part in parts {
                    assertClose(part.running, try wholeMean.toArray() + wholeVariance.toArray(), atol: 1e-6, rtol: 1e-5, "running statistics, \(label)")
                }
            }
        }
    }

    /// Finite differences through both ranks: nudging an input on one rank moves the other rank's outputs
    /// too (through the shared statistics), and the synchronised backward accounts for it.
    func testSynchronisedBatchNormGradientCheck() throws {
        let shape = [3, 2, 3, 3], channels = 2, perSample = 18, ranks = 2
        var random = TestRandom(seed: 31)
        let x = try Tensor(random.floats(shape.reduce(1, *), -1, 2), shape: shape)
        let upstream = random.floats(x.count)
        let gamma = try Tensor(random.floats(channels, 0.5, 1.5), shape: [channels]), beta = try Tensor(random.floats(channels), shape: [channels])
        let shards = (0..<ranks).map { BatchShard(rank: $0, of: ranks, globalCount: shape[0]) }
        func rows(_ shard: BatchShard) -> Range<Int> { (shard.first * perSample)..<((shard.first + shard.count) * perSample) }

        /// Σ y·upstream over both ranks, and the input gradient the ranks' backward passes give.
        func run(backward: Bool) throws -> (loss: Double, gradient: [Float]) {
            let values = try x.toArray()
            let parts = try ThreadRanks(ranks).run { communicator -> (Double, [Float]) in
                let shard = shards[communicator.rank], part = rows(shard)
                let partShape = [shard.count] + shape.dropFirst()
                let input = try Tensor(Array(values[part]), shape: partShape)
                let synchronizer = BatchNormSynchronizer(communicator)
                let forward = try synchronizer.trainingForward(input, gamma: gamma, beta: beta, runningMean: try Tensor.zeros([channels]),
                                                               runningVariance: try Tensor.ones([channels]), settings: BatchNormSettings())
                let weights = try Tensor(Array(upstream[part]), shape: partShape)
                let loss = try weightedSum(forward.output, weights)
                guard backward else { return (loss, []) }
                let dx = try synchronizer.backward(input, dy: weights, gamma: gamma, statistics: forward.statistics,
                                                   accumulatingInto: try Tensor.zeros([channels]), try Tensor.zeros([channels]))
                return (loss, try dx.toArray())
            }
            return (parts.map(\.0).reduce(0, +), parts.flatMap(\.1))
        }
        let analytic = try Tensor(try run(backward: true).gradient, shape: shape)
        try assertGradient("synchronised batch norm over 2 ranks", of: x, analytic: analytic, samples: 30) { try run(backward: false).loss }
    }

    /// LeNet-BN (batch norm and dropout) trained by 2 and by 3 ranks with synchronised batch norm, against one
    /// process on the whole global batch: the same step losses and weights, on every rank the same bits, for
    /// an epoch whose last global batch is uneven and with buckets small enough that there are several.
    func testRanksTrainLikeOneProcessOnTheGlobalBatch() throws {
        var random = TestRandom(seed: 8)
        let dataset = Dataset(imageShape: [1, 28, 28], pixels: random.floats(71 * 784, 0, 1), labels: (0..<71).map { _ in random.int(0...9) },
                              classNames: (0...9).map(String.init))
        for device in try testDevices() {
            let initial = try ModelZoo.make("lenet-bn", inputShape: [1, 28, 28], classes: 10).namedParameters.map { try $0.parameter.value.toArray() }
            func train(_ dataParallel: DataParallel?) throws -> (losses: [Float], weights: [[Float]], digest: UInt64?) {
                let model = try ModelZoo.make("lenet-bn", inputShape: [1, 28, 28], classes: 10)
                try model.move(to: device)
                // Rank 0's weights are broadcast: the other ranks start elsewhere on purpose.
                if dataParallel?.rank ?? 0 == 0 {
                    for ((_, parameter), values) in zip(model.namedParameters, initial) { try parameter.value.assign(Tensor(values, shape: parameter.value.shape)) }
                } else {
                    try model.reset(seed: 99)
                }
                try dataParallel?.broadcastParameters(of: model)
                let trainer = Trainer(model: model, optimizer: try TrainingConfiguration().makeOptimizer(for: model),
                                      loss: ModelTask.classification.loss, seed: 4)
                trainer.dataParallel = dataParallel
                var loader = DataLoader(dataset: dataset, batchSize: 24, shuffle: true, seed: 6, device: device)
                if let dataParallel { loader.shard = (dataParallel.rank, dataParallel.ranks) }
                var losses: [Float] = []
                for epoch in 0..<2 { losses += try trainer.trainPass(loader.batches(epoch: epoch)).stepLosses }
                let digest = try dataParallel.map { try $0.checkIdenticalParameters(of: model) }
                return (losses, try model.namedParameters.map { try $0.parameter.value.toArray() }, digest)
            }
            let whole = try train(nil)
            XCTAssertEqual(whole.losses.count, 6, "71 images at batch 24: 3 steps an epoch")
            for ranks in [2, 3] {
                let results = try ThreadRanks(ranks).run { communicator in
                    try train(DataParallel(communicator: communicator, bucketBytes: 40_000, synchronizesBatchNorm: true))
                }
                let label = "\(ranks) ranks on \(device)"
                XCTAssertEqual(Set(results.map(\.digest)).count, 1, "every rank holds the same bits, \(label)")
                for result in results { XCTAssertEqual(result.weights, results[0].weights, label) }
                assertClose(results[0].losses, whole.losses, atol: 0, rtol: 1e-5, "step losses, \(label)")
                for (index, (weights, expected)) in zip(results[0].weights, whole.weights).enumerated() {
                    XCTAssertLessThan(relativeDistance(weights, expected), 1e-5, "parameter \(index), \(label)")
                }
            }
        }
    }

    /// A stop asked on one rank alone stops every rank after the same step.
    func testAStopAskedOnOneRankStopsEveryRankAfterTheSameStep() throws {
        var random = TestRandom(seed: 9)
        let dataset = Dataset(imageShape: [1, 28, 28], pixels: random.floats(64 * 784, 0, 1), labels: (0..<64).map { _ in random.int(0...9) },
                              classNames: (0...9).map(String.init))
        let steps = try ThreadRanks(2).run { communicator -> (steps: Int, interrupted: Bool) in
            let model = try ModelZoo.make("lenet5", inputShape: [1, 28, 28], classes: 10)
            let trainer = Trainer(model: model, optimizer: try TrainingConfiguration().makeOptimizer(for: model), loss: ModelTask.classification.loss, seed: 1)
            trainer.dataParallel = DataParallel(communicator: communicator)
            var loader = DataLoader(dataset: dataset, batchSize: 8, shuffle: false, device: .host)
            loader.shard = (communicator.rank, 2)
            let pass = try trainer.trainPass(loader.batches(epoch: 0)) { step, _, _, _ in
                if communicator.rank == 1, step == 3 { trainer.requestStop() }
            }
            return (pass.stepLosses.count, pass.interrupted)
        }
        // Rank 1 asks during step 3; the ask travels with step 4's gradients, after which both stop.
        XCTAssertEqual(steps.map(\.steps), [4, 4])
        XCTAssertEqual(steps.map(\.interrupted), [true, true])
    }

    /// The gradient buckets hold every trainable parameter once, the last layers' first, each about the size asked.
    func testBucketsHoldEveryParameterInBackwardOrder() throws {
        let model = try ModelZoo.make("lenet-bn", inputShape: [1, 28, 28], classes: 10)
        let trainable = model.namedParameters.map(\.parameter).filter(\.requiresGradient)
        let total = trainable.map(\.value.count).reduce(0, +) * 4
        let buckets = try ThreadRanks(1).run { GradientBuckets(parameters: trainable, communicator: $0, bucketBytes: 40_000).bucketSizes }[0]
        XCTAssertEqual(buckets.reduce(0, +), total)
        XCTAssertGreaterThan(buckets.count, 2)
        let largest = trainable.map(\.value.count).max()! * 4
        for size in buckets.dropLast() { XCTAssertLessThan(size, 40_000 + largest, "a bucket closes once it holds 40 KB") }
        let one = try ThreadRanks(1).run { GradientBuckets(parameters: trainable, communicator: $0, bucketBytes: 25 << 20).bucketSizes }[0]
        XCTAssertEqual(one, [total], "LeNet-BN fits one 25 MB bucket")
    }
}
