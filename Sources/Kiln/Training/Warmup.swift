import Foundation

/// The work before a model's first steady step on an OpenCL device, done up front: the programs its
/// training and inference steps use are recorded without running anything, built in parallel, and the
/// convolution shapes the tuner will meet are timed, with a progress line. On the host there is none.
public enum Warmup {
    /// The plan of one training step of `trainer` on the batch `makeBatch` makes (called while recording,
    /// so that its augmentation's kernels are planned too) and, when given, of inference on batches of
    /// `inferenceBatchSize` (the tuner keeps a choice per batch size). Nil on the host backend. The model,
    /// its gradients and the optimiser are left as they were; parameters are marked modified so that nothing
    /// derived from them during the recording (a folded batch norm) is kept.
    public static func plan(for trainer: Trainer, on device: Device, batch makeBatch: () throws -> Batch,
                            inferenceBatchSize: Int? = nil) throws -> KernelPlan? {
        guard let backend = try device.backend() as? OpenCLBackend else { return nil }
        let model = trainer.model
        let parameters = model.namedParameters.map(\.parameter)
        let gradients = parameters.map(\.gradient)
        defer {
            for (parameter, gradient) in zip(parameters, gradients) {
                parameter.gradient = gradient
                parameter.markModified()
            }
        }
        return try backend.plan {
            let batch = try makeBatch()
            try model.zeroGradients()
            let output = try model.forward(batch.inputs, ForwardContext(training: true, step: trainer.step, seed: trainer.seed,
                                                                        needsInputGradient: false))
            let (_, gradient) = try trainer.lossFunction(output, batch)
            _ = try model.backward(gradient)
            try trainer.optimizer.copyWithoutState().step()
            if trainer.measuresAccuracy {
                var tracker = try AccuracyTracker(on: output.device)
                let labels = try Tensor(batch.labels.map(Float.init), shape: [batch.labels.count], on: output.device)
                try tracker.add(output: output, targets: labels)
            }
            _ = try model.forward(batch.inputs, .prediction)
            if let inferenceBatchSize, inferenceBatchSize != batch.inputs.shape[0] {
                let inputs = try Tensor.empty([inferenceBatchSize] + batch.inputs.shape.dropFirst(), on: batch.inputs.device)
                let output = try model.forward(inputs, .prediction)
                _ = try trainer.lossFunction(output, Batch(inputs: inputs, targets: try .empty([inferenceBatchSize], on: inputs.device),
                                                           labels: Array(repeating: 0, count: inferenceBatchSize)))
            }
        }
    }

    /// Builds and tunes what `plan` needs on its device, showing a `PreparationLine` on standard output
    /// when `showProgress` and the work takes more than about a second.
    @discardableResult
    public static func prepare(_ plan: KernelPlan, on device: Device, showProgress: Bool) throws -> PreparationReport {
        guard let backend = try device.backend() as? OpenCLBackend else { return PreparationReport() }
        let line = showProgress ? PreparationLine(device: backend.name, cacheFolder: backend.programCacheFolder) : nil
        let report = try backend.prepare(plan) { line?.show($0) }
        line?.finish()
        return report
    }
}

extension Warmup {
    /// Prepares `device` for `trainer`'s model ahead of time (`kiln warmup`): builds and tunes everything a
    /// training step on batches of `batchSize` images of `inputShape` and inference on batches of
    /// `inferenceBatchSize` use, then runs one of each for real on zero images, so that code a driver
    /// generates at a kernel's first launch (POCL does) is cached too. The step changes the model: give it
    /// one made for the purpose.
    public static func prepareAhead(trainer: Trainer, inputShape: [Int], batchSize: Int, inferenceBatchSize: Int,
                                    on device: Device, showProgress: Bool) throws -> PreparationReport {
        func batch(_ size: Int) throws -> Batch {
            Batch(inputs: try .zeros([size] + inputShape, on: device), targets: try .zeros([size], on: device),
                  labels: Array(repeating: 0, count: size))
        }
        guard let plan = try plan(for: trainer, on: device, batch: { try batch(batchSize) }, inferenceBatchSize: inferenceBatchSize)
        else { return PreparationReport() }
        let report = try prepare(plan, on: device, showProgress: showProgress)
        let start = ContinuousClock.now
        let backend = try device.backend()
        let workBefore = backend.warmupWorkDone
        try trainer.trainStep(try batch(batchSize))
        _ = try trainer.evaluate([try batch(inferenceBatchSize)])
        try backend.synchronize()
        var result = report
        result.firstRunSeconds = seconds(ContinuousClock.now - start)
        result.workLeftToTheSteps = backend.warmupWorkDone - workBefore
        return result
    }
}
