import Foundation
import KilnCL

/// The algorithm the tuner keeps for one (pass, shape), and what it measured.
public struct ConvolutionChoice: Sendable {
    /// The pass timed.
    public var pass: ConvolutionPass
    /// The convolution's sizes (batch included: the fastest algorithm depends on it).
    public var shape: Conv2DShape
    /// The fastest algorithm, used from then on for this pass and shape.
    public var algorithm: ConvolutionAlgorithm
    /// Best time of each algorithm tried, in seconds; algorithms the device failed to run are absent.
    public var seconds: [ConvolutionAlgorithm: Double]
}

/// The operands of one convolution pass: `first` is x (forward, backward filter) or dy (backward data);
/// `second` is the weight (forward, backward data) or dy (backward filter).
struct ConvolutionCall {
    var pass: ConvolutionPass
    var shape: Conv2DShape
    var first: Tensor
    var second: Tensor
    var bias: Tensor?
    var accumulate: Bool

    /// Computes the call's pass into `output` with the function an algorithm has for it (nil: the
    /// algorithm has no such pass, which its descriptor never lets through).
    func run(into output: Tensor,
             forward: (_ x: Tensor, _ weight: Tensor, _ bias: Tensor?, _ shape: Conv2DShape, _ y: Tensor) throws -> Void,
             backwardData: (_ dy: Tensor, _ weight: Tensor, _ shape: Conv2DShape, _ dx: Tensor) throws -> Void,
             backwardFilter: ((_ x: Tensor, _ dy: Tensor, _ shape: Conv2DShape, _ dw: Tensor, _ accumulate: Bool) throws -> Void)?
    ) throws {
        switch pass {
        case .forward: try forward(first, second, bias, shape, output)
        case .backwardData: try backwardData(first, second, shape, output)
        case .backwardFilter:
            guard let backwardFilter else { throw KilnError.invalidArgument("conv2d: this algorithm has no backward-filter pass") }
            try backwardFilter(first, second, shape, output, accumulate)
        }
    }

    /// The shape of the pass's result.
    var outputShape: [Int] {
        switch pass {
        case .forward: return shape.outputShape
        case .backwardData: return shape.inputShape
        case .backwardFilter: return shape.weightShape
        }
    }
}

// MARK: - Public controls

extension OpenCLBackend {
    /// An algorithm every convolution uses where it applies, bypassing the tuner (tests, benchmarks); nil
    /// lets the tuner or the heuristic choose. Starts from `KILN_CONV_ALGORITHM` (an algorithm's name).
    public var forcedConvolutionAlgorithm: ConvolutionAlgorithm? {
        get { convolutionTuner.forced }
        set { convolutionTuner.forced = newValue }
    }

    /// Whether a new (pass, shape) is timed with every applicable algorithm before its first use, like
    /// cuDNN's benchmark mode; when off, a heuristic chooses. Starts from `KILN_CONV_TUNE` (0 or 1); by
    /// default it is on for GPUs and accelerators and off for CPU devices (POCL), where OpenCL serves
    /// correctness rather than speed and tuning would only slow the first steps.
    public var convolutionTuning: Bool {
        get { convolutionTuner.enabled }
        set { convolutionTuner.enabled = newValue }
    }

    /// The folder of the tuner's file (`$KILN_CACHE_DIR`, else ~/.cache/kiln); nil keeps choices in memory
    /// only. Setting it forgets the choices in memory and loads those stored there.
    public var convolutionCacheDirectory: URL? {
        get { convolutionTuner.directory }
        set { convolutionTuner.directory = newValue }
    }

    /// The tuner's choices so far (measured in this process or loaded from its file), oldest first.
    /// Choices made by force or by the heuristic are not listed.
    public var convolutionChoices: [ConvolutionChoice] { convolutionTuner.choices }

    /// The algorithm a call of `pass` on `shape` runs now: the forced one where it applies, else the one
    /// the tuner remembers, else the heuristic's (a shape the tuner has not met yet is timed on its first
    /// call, and may then change).
    public func currentConvolutionAlgorithm(for shape: Conv2DShape, pass: ConvolutionPass) -> ConvolutionAlgorithm {
        switch convolutionDecision(for: shape, pass: pass) {
        case let .decided(algorithm): return algorithm
        case .tune: return defaultConvolutionAlgorithm(for: shape, pass: pass)
        }
    }
}

// MARK: - Choosing

extension OpenCLBackend {
    /// Timed runs per algorithm after the warm-up, and the time after which fewer will do.
    static let tuningRuns = 3
    static let tuningBudgetSeconds = 0.5

    /// What decides a (pass, shape), in this order: a forced algorithm where it applies, the only
    /// applicable one, the tuner's memory, then either the tuner (when on) or the heuristic.
    enum ConvolutionDecision {
        case decided(ConvolutionAlgorithm)
        /// Time every applicable algorithm on the first call.
        case tune([ConvolutionAlgorithm])
    }

    func convolutionDecision(for shape: Conv2DShape, pass: ConvolutionPass) -> ConvolutionDecision {
        let applicable = applicableConvolutionAlgorithms(for: shape, pass: pass)
        if let forced = convolutionTuner.forced, applicable.contains(forced) { return .decided(forced) }
        if applicable.count == 1 { return .decided(applicable[0]) }
        // A remembered choice counts only if it measured every algorithm applicable now (a later version
        // may have added one).
        if let known = convolutionTuner.choice(for: ConvolutionTuner.key(pass, shape)), applicable.contains(known.algorithm),
           applicable.allSatisfy({ known.seconds[$0] != nil }) {
            return .decided(known.algorithm)
        }
        return convolutionTuner.enabled ? .tune(applicable) : .decided(defaultConvolutionAlgorithm(for: shape, pass: pass))
    }

    /// The algorithm for `call`, timing the applicable ones first if the decision is to tune.
    func convolutionAlgorithm(for call: ConvolutionCall) throws -> ConvolutionAlgorithm {
        switch convolutionDecision(for: call.shape, pass: call.pass) {
        case let .decided(algorithm): return algorithm
        case let .tune(applicable):
            guard context.isPlanning else { return try tune(call, applicable, key: ConvolutionTuner.key(call.pass, call.shape)) }
            // A plan records the tuning to do and the programs of every algorithm it will time.
            plannedTunings.withLock { tunings in
                let tuning = PlannedTuning(pass: call.pass, shape: call.shape, hasBias: call.bias != nil)
                if !tunings.contains(tuning) { tunings.append(tuning) }
            }
            let scratch = try Tensor.empty(call.outputShape, on: device)
            for algorithm in applicable { try runConvolution(algorithm, call, into: scratch) }
            return defaultConvolutionAlgorithm(for: call.shape, pass: call.pass)
        }
    }

    /// Times the algorithms of a planned (pass, shape) on zero operands, unless it is decided already.
    /// Returns whether it timed anything.
    func tune(_ tuning: PlannedTuning) throws -> Bool {
        guard case .tune = convolutionDecision(for: tuning.shape, pass: tuning.pass) else { return false }
        let s = tuning.shape
        let (first, second): ([Int], [Int]) = switch tuning.pass {
        case .forward: (s.inputShape, s.weightShape)
        case .backwardData: (s.outputShape, s.weightShape)
        case .backwardFilter: (s.inputShape, s.outputShape)
        }
        let call = ConvolutionCall(pass: tuning.pass, shape: s, first: try .zeros(first, on: device), second: try .zeros(second, on: device),
                                   bias: tuning.hasBias ? try .zeros([s.outputChannels], on: device) : nil, accumulate: false)
        _ = try convolutionAlgorithm(for: call)
        return true
    }

    /// Times each algorithm into a scratch result (the caller's result and its accumulation stay
    /// untouched): one warm-up, which also builds the programs, then the best of a few runs. Only here does
    /// the backend wait for the device between ops.
    private func tune(_ call: ConvolutionCall, _ applicable: [ConvolutionAlgorithm], key: String) throws -> ConvolutionAlgorithm {
        var trial = call
        trial.accumulate = false
        let scratch = try Tensor.empty(call.outputShape, on: device)
        var seconds: [ConvolutionAlgorithm: Double] = [:]
        for algorithm in applicable {
            do {
                try runConvolution(algorithm, trial, into: scratch)
                try context.finish()
                var best = Double.infinity, spent = 0.0
                for _ in 0..<Self.tuningRuns where spent < Self.tuningBudgetSeconds {
                    let start = ContinuousClock.now
                    try runConvolution(algorithm, trial, into: scratch)
                    try context.finish()
                    let elapsed = ContinuousClock.now - start
                    let time = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) * 1e-18
                    best = Swift.min(best, time)
                    spent += time
                }
                seconds[algorithm] = best
            } catch {
                // A kernel this device cannot run (resources, limits) is simply not a candidate; it is
                // remembered as infinitely slow so that the choice still counts as complete.
                seconds[algorithm] = .infinity
            }
        }
        guard let fastest = seconds.filter({ $0.value.isFinite }).min(by: { $0.value < $1.value || ($0.value == $1.value && $0.key.rawValue < $1.key.rawValue) })?.key
        else { return defaultConvolutionAlgorithm(for: call.shape, pass: call.pass) }
        convolutionTuner.record(ConvolutionChoice(pass: call.pass, shape: call.shape, algorithm: fastest, seconds: seconds), key: key)
        return fastest
    }
}

/// A (pass, shape) a recorded plan will have the tuner time.
struct PlannedTuning: Hashable, Sendable {
    var pass: ConvolutionPass
    var shape: Conv2DShape
    var hasBias: Bool
}

// MARK: - The tuner's memory

/// The tuner's state for one device: the choices in memory and the file that keeps them between processes
/// (one per device name and driver version, since either changes the timings).
final class ConvolutionTuner: Sendable {
    struct State {
        var choices: [String: ConvolutionChoice] = [:]
        var order: [String] = []
        var forced: ConvolutionAlgorithm?
        var enabled: Bool
        var directory: URL?
        /// Shapes timed in this process.
        var tunedCount = 0
        var warnedUnwritable = false
    }

    let deviceName: String
    let driverVersion: String
    let state: Locked<State>

    /// `directory` defaults to the program cache's folder (`$KILN_CACHE_DIR` or ~/.cache/kiln); the
    /// environment gives the forced algorithm and the tuning switch.
    init(device: CLDeviceInfo, directory: URL? = CLBinaryCache.standard?.directory,
         environment: [String: String] = ProcessInfo.processInfo.environment) {
        deviceName = device.name
        driverVersion = device.driverVersion
        var enabled = device.type != .cpu
        switch environment["KILN_CONV_TUNE"]?.lowercased() {
        case "0", "false", "off", "no": enabled = false
        case "1", "true", "on", "yes": enabled = true
        default: break
        }
        var forced: ConvolutionAlgorithm?
        if let name = environment["KILN_CONV_ALGORITHM"], !name.isEmpty, name.lowercased() != "auto" {
            forced = ConvolutionAlgorithm(named: name)
            if forced == nil {
                let names = ConvolutionAlgorithm.allCases.map(\.rawValue).joined(separator: ", ")
                FileHandle.standardError.write(Data("kiln: ignoring KILN_CONV_ALGORITHM=\(name): not one of auto, \(names)\n".utf8))
            }
        }
        state = Locked(State(forced: forced, enabled: enabled, directory: directory))
        let stored = load()
        state.withLock { $0.merge(stored) }
    }

    var forced: ConvolutionAlgorithm? {
        get { state.withLock { $0.forced } }
        set { state.withLock { $0.forced = newValue } }
    }

    var enabled: Bool {
        get { state.withLock { $0.enabled } }
        set { state.withLock { $0.enabled = newValue } }
    }

    var directory: URL? {
        get { state.withLock { $0.directory } }
        set {
            state.withLock { state in
                state.directory = newValue
                state.choices = [:]
                state.order = []
            }
            let stored = load()
            state.withLock { $0.merge(stored) }
        }
    }

    var choices: [ConvolutionChoice] {
        state.withLock { state in state.order.compactMap { state.choices[$0] } }
    }

    var tunedCount: Int { state.withLock { $0.tunedCount } }

    func choice(for key: String) -> ConvolutionChoice? {
        state.withLock { $0.choices[key] }
    }

    /// Keeps `choice` and rewrites the file with it, merged with what other processes stored meanwhile.
    func record(_ choice: ConvolutionChoice, key: String) {
        state.withLock { state in
            state.tunedCount += 1
            if state.choices[key] == nil { state.order.append(key) }
            state.choices[key] = choice
        }
        save()
    }
}

extension ConvolutionTuner.State {
    /// Adds stored choices; with `keepingOwn`, a key already in memory keeps its own choice.
    mutating func merge(_ stored: [(key: String, choice: ConvolutionChoice)], keepingOwn: Bool = false) {
        for (key, choice) in stored {
            if choices[key] == nil { order.append(key) } else if keepingOwn { continue }
            choices[key] = choice
        }
    }
}
