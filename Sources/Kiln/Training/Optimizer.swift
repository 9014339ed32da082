import Foundation

/// Updates a model's trainable parameters from their gradients with an `UpdateRule`, regularisation,
/// optional gradient clipping by global norm and an optional max-norm constraint. Every step runs on the
/// parameters' device without reading anything back.
public final class Optimizer {
    public var rule: UpdateRule
    public var learningRate: Float
    public var regularization: Regularization
    /// Scale all gradients together so their global L2 norm is at most this.
    public var clipGradientNorm: Float?
    /// Renormalise each output row (first dimension) of weights with two or more dimensions to at most
    /// this L2 norm after each update.
    public var maxNorm: Float?
    /// Updates taken so far.
    public private(set) var stepCount = 0
    private let parameters: [(name: String, parameter: Parameter)]
    private var states: [ObjectIdentifier: [Tensor]] = [:]
    private var learningRateScales: [ObjectIdentifier: Float] = [:]
    private var decayExempt: Set<ObjectIdentifier> = []

    public init(parameters: [(name: String, parameter: Parameter)], rule: UpdateRule, learningRate: Float,
                regularization: Regularization = Regularization(), clipGradientNorm: Float? = nil, maxNorm: Float? = nil) {
        self.parameters = parameters.filter { !$0.parameter.isBuffer }
        self.rule = rule
        self.learningRate = learningRate
        self.regularization = regularization
        self.clipGradientNorm = clipGradientNorm
        self.maxNorm = maxNorm
    }

    /// An optimiser for every learnable parameter of `model`.
    public convenience init(model: any Layer, rule: UpdateRule, learningRate: Float, regularization: Regularization = Regularization()) {
        self.init(parameters: model.namedParameters, rule: rule, learningRate: learningRate, regularization: regularization)
    }

    /// An optimiser with this one's settings and none of its state (moments, step count): what a warm-up
    /// plans a step with, leaving this one as it was.
    public func copyWithoutState() -> Optimizer {
        let copy = Optimizer(parameters: parameters, rule: rule, learningRate: learningRate, regularization: regularization,
                             clipGradientNorm: clipGradientNorm, maxNorm: maxNorm)
        copy.learningRateScales = learningRateScales
        copy.decayExempt = decayExempt
        return copy
    }

    /// Gives `parameters` the rate `learningRate` × `scale` (a discriminative rate for a pretrained backbone,
    /// as a PyTorch parameter group with its own `lr`); the schedule scales it with the rest.
    public func setLearningRateScale(_ scale: Float, for parameters: [Parameter]) {
        for parameter in parameters { learningRateScales[ObjectIdentifier(parameter)] = scale }
    }

    /// Sets the momentum of a rule that has one (SGD's momentum, RMSProp's, Adam's β₁), as a one-cycle
    /// schedule does at every step; the other rules are left as they are.
    public func setMomentum(_ momentum: Float) {
        switch rule {
        case let .sgd(_, nesterov): rule = .sgd(momentum: momentum, nesterov: nesterov)
        case let .rmsprop(alpha, epsilon, _): rule = .rmsprop(alpha: alpha, epsilon: epsilon, momentum: momentum)
        case let .adam(_, beta2, epsilon, decoupled): rule = .adam(beta1: momentum, beta2: beta2, epsilon: epsilon, decoupledWeightDecay: decoupled)
        case .adagrad, .adadelta: break
        }
    }

    /// Exempts `parameters` from the weight decay (the L2 term; L1 still applies), as the usual parameter
    /// group without decay for biases and normalisation parameters.
    public func exemptFromWeightDecay(_ parameters: [Parameter]) {
        for parameter in parameters { decayExempt.insert(ObjectIdentifier(parameter)) }
    }

    public func step() throws {
        stepCount += 1
        let active = parameters.filter { $0.parameter.requiresGradient && $0.parameter.gradient != nil }
        if let clipGradientNorm { try clip(active.compactMap(\.parameter.gradient), to: clipGradientNorm) }
        for (_, parameter) in active {
            guard let gradient = parameter.gradient else { continue }
            let id = ObjectIdentifier(parameter)
            var regularization = regularization
            if decayExempt.contains(id) { regularization.weightDecay = 0 }
            try parameter.value.backend.applyUpdate(rule, parameter: parameter.value, gradient: gradient, state: try state(of: parameter),
                                                    learningRate: learningRate * (learningRateScales[id] ?? 1),
                                                    step: stepCount, regularization: regularization)
            if let maxNorm, parameter.value.rank >= 2 { try constrainRows(parameter.value, to: maxNorm) }
            parameter.markModified()
        }
    }

    private func state(of parameter: Parameter) throws -> [Tensor] {
        let id = ObjectIdentifier(parameter)
        if let state = states[id], state.first?.device == parameter.value.device { return state }
        let state = try (0..<rule.stateCount).map { _ in try Tensor.zeros(parameter.value.shape, on: parameter.value.device) }
        states[id] = state
        return state
    }

    /// g ← g · min(1, c / (‖g‖ + 1e-6)) over all gradients together, computed on the device.
    private func clip(_ gradients: [Tensor], to limit: Float) throws {
        guard let first = gradients.first else { return }
        let total = try Tensor.zeros([1], on: first.device)
        for gradient in gradients { try total.axpby(alpha: 1, gradient.map(.square).reduce(.sum).reshaped([1]), beta: 1) }
        let factor = try total.map(.sqrt).binary(.add, 1e-6).map(.reciprocal).binary(.mul, limit).binary(.min, 1)
        for gradient in gradients {
            try gradient.backend.binaryPerChannel(.mul, gradient, factor, channels: 1, inner: gradient.count, into: gradient)
        }
    }

    /// Each row w_r of a [rows, ...] weight ← w_r · min(1, c / (‖w_r‖ + 1e-7)).
    private func constrainRows(_ weight: Tensor, to limit: Float) throws {
        let rows = weight.shape[0], width = weight.count / weight.shape[0]
        let norms = try weight.reshaped([rows, width]).map(.square).sum(axis: 1).map(.sqrt)
        let factors = try norms.binary(.add, 1e-7).map(.reciprocal).binary(.mul, limit).binary(.min, 1)
        try weight.backend.binaryPerChannel(.mul, weight, factors, channels: rows, inner: width, into: weight)
    }

    // MARK: Checkpoints

    /// The state tensors by "<parameter>.<PyTorch state name>" and the step count in the metadata.
    public func state() throws -> SafeTensors {
        var file = SafeTensors()
        for (name, parameter) in parameters {
            guard let state = states[ObjectIdentifier(parameter)] else { continue }
            for (stateName, tensor) in zip(rule.stateNames, state) {
                file.set("\(name).\(stateName)", floats: try tensor.toArray(), shape: tensor.shape)
            }
        }
        file.metadata["step"] = String(stepCount)
        return file
    }

    public func loadState(_ file: SafeTensors, source: String) throws {
        guard let steps = file.metadata["step"].flatMap(Int.init) else {
            throw KilnError.corruptFile(path: source, reason: "optimiser state without a step count")
        }
        for (name, parameter) in parameters {
            let names = rule.stateNames.map { "\(name).\($0)" }
            guard names.allSatisfy({ file[$0] != nil }) else { continue }
            let state = try names.map { stateName -> Tensor in
                guard let entry = file[stateName], let values = file.floats(stateName), entry.shape == parameter.value.shape else {
                    throw KilnError.corruptFile(path: source, reason: "\(stateName) does not have the shape \(describe(parameter.value.shape))")
                }
                return try Tensor(values, shape: entry.shape, on: parameter.value.device)
            }
            states[ObjectIdentifier(parameter)] = state
        }
        stepCount = steps
    }
}

/// How the learning rate changes over a run. Evaluated at every step: the epoch-based ones (step,
/// milestones, exponential, plateau) hold within an epoch, as PyTorch's schedulers stepped once per epoch;
/// cosine and one-cycle move at every step, as PyTorch's stepped once per batch.
public enum LearningRateSchedule: Equatable, Sendable {
    case constant
    /// lr · γ^⌊epoch / every⌋ (StepLR)
    case step(every: Int, gamma: Float)
    /// lr · γ^(milestones passed), milestones in epochs (MultiStepLR)
    case milestones([Int], gamma: Float)
    /// lr · γ^epoch (ExponentialLR)
    case exponential(gamma: Float)
    /// Cosine annealing from lr to `minimum` over the steps of `epochs` epochs (CosineAnnealingLR, T_max in steps).
    case cosine(epochs: Int, minimum: Float = 0)
    /// Smith's one cycle over the steps of `epochs` epochs, with OneCycleLR's defaults: from lr/25 up to lr over
    /// the first 30 % (cosine), then down to lr/25/10⁴; momentum (or Adam's β₁) cycles inversely, 0.95 → 0.85 → 0.95.
    case oneCycle(epochs: Int)
    /// Multiply by `factor` when the validation loss has not improved for `patience` epochs.
    case reduceOnPlateau(factor: Float = 0.1, patience: Int = 2)

    /// The names `kiln train --schedule` takes.
    public static let names = ["constant", "step", "exponential", "cosine", "onecycle", "plateau"]
}

/// Gives the optimiser its learning rate (and, for one-cycle, momentum) at every step, from a schedule and an
/// optional linear warm-up in front of it.
public final class LearningRateScheduler {
    public typealias State = LearningRateSchedulerState

    public let schedule: LearningRateSchedule
    public let baseLearningRate: Float
    /// Steps of one epoch: what turns the steps into epochs for the epoch-based schedules (`Fit` sets it to
    /// its loader's batches per epoch).
    public var stepsPerEpoch: Int { didSet { stepsPerEpoch = Swift.max(stepsPerEpoch, 1) } }
    /// The first `warmupSteps` steps scale the schedule by (step + 1) / warmupSteps: PyTorch's
    /// LinearLR(start_factor = 1/W, total_iters = W − 1) chained with the schedule.
    public let warmupSteps: Int
    /// Saved in checkpoints and restored on resume.
    public var state = State()

    public init(schedule: LearningRateSchedule, baseLearningRate: Float, stepsPerEpoch: Int = 1, warmupSteps: Int = 0) {
        self.schedule = schedule
        self.baseLearningRate = baseLearningRate
        self.stepsPerEpoch = Swift.max(stepsPerEpoch, 1)
        self.warmupSteps = Swift.max(warmupSteps, 0)
    }

    /// The learning rate of step `step` (0-based, counted over the whole run).
    public func learningRate(step: Int) -> Float {
        let warmup = warmupSteps > 0 ? Swift.min(1, Float(step + 1) / Float(warmupSteps)) : 1
        return warmup * scheduled(step: step)
    }

    /// The learning rate at the first step of `epoch` (0-based).
    public func learningRate(epoch: Int) -> Float { learningRate(step: epoch * stepsPerEpoch) }

    /// The momentum (SGD, RMSProp) or β₁ (Adam) of step `step` where the schedule sets one (one-cycle).
    public func momentum(step: Int) -> Float? {
        guard case let .oneCycle(epochs) = schedule else { return nil }
        let (phase, progress) = oneCyclePhase(step: step, totalSteps: epochs * stepsPerEpoch)
        let (high, low) = (0.95, 0.85)
        return Float(phase == 0 ? cosineAnneal(from: high, to: low, progress) : cosineAnneal(from: low, to: high, progress))
    }

    // In Double: the cosines' 1 + cos(πt) loses Float's precision near the end of a cycle.
    private func scheduled(step: Int) -> Float {
        let base = Double(baseLearningRate), epoch = step / stepsPerEpoch
        switch schedule {
        case .constant: return baseLearningRate
        case let .step(every, gamma): return Float(base * Foundation.pow(Double(gamma), Double(epoch / Swift.max(every, 1))))
        case let .milestones(milestones, gamma): return Float(base * Foundation.pow(Double(gamma), Double(milestones.filter { $0 <= epoch }.count)))
        case let .exponential(gamma): return Float(base * Foundation.pow(Double(gamma), Double(epoch)))
        case let .cosine(epochs, minimum):
            let total = Swift.max(epochs * stepsPerEpoch, 1)
            return Float(cosineAnneal(from: base, to: Double(minimum), Double(Swift.min(step, total)) / Double(total)))
        case let .oneCycle(epochs):
            let initial = base / 25, final = base / 25 / 1e4
            let (phase, progress) = oneCyclePhase(step: step, totalSteps: epochs * stepsPerEpoch)
            return Float(phase == 0 ? cosineAnneal(from: initial, to: base, progress) : cosineAnneal(from: base, to: final, progress))
        case .reduceOnPlateau: return baseLearningRate * state.plateauScale
        }
    }

    /// OneCycleLR's two phases: the rise ends at step 0.3·total − 1, the fall at total − 1. Returns the phase
    /// (0 rising, 1 falling) and how far into it `step` is, from 0 to 1.
    private func oneCyclePhase(step: Int, totalSteps: Int) -> (phase: Int, progress: Double) {
        let riseEnd = 0.3 * Double(totalSteps) - 1, fallEnd = Double(totalSteps - 1)
        let position = Double(step)
        if position <= riseEnd { return (0, riseEnd > 0 ? position / riseEnd : 1) }
        return (1, Swift.min(1, (position - riseEnd) / Swift.max(fallEnd - riseEnd, 1e-9)))
    }

    /// From `start` at 0 to `end` at 1 along half a cosine.
    private func cosineAnneal(from start: Double, to end: Double, _ progress: Double) -> Double {
        end + (start - end) / 2 * (1 + Foundation.cos(Double.pi * progress))
    }

    /// Reports an epoch's validation loss (used by reduce-on-plateau).
    public func epochEnded(validationLoss: Double) {
        guard case let .reduceOnPlateau(factor, patience) = schedule else { return }
        if validationLoss < state.bestLoss ?? .infinity {
            state.bestLoss = validationLoss
            state.epochsWithoutImprovement = 0
        } else {
            state.epochsWithoutImprovement += 1
            if state.epochsWithoutImprovement > patience {
                state.plateauScale *= factor
                state.epochsWithoutImprovement = 0
            }
        }
    }
}
