import Foundation
import KilnCL
import Synchronization

/// A way the OpenCL backend computes a convolution pass.
public enum ConvolutionAlgorithm: String, CaseIterable, Sendable {
    /// im2col into a workspace, then one CLBlast strided-batched GEMM per group (col2im for backward data).
    case im2colGEMM
    /// Tiled GEMM that gathers the patches as it goes (Kernels/conv_gemm.cl): no workspace, bias fused.
    case implicitGEMM
    /// Winograd F(2x2, 3x3) (Kernels/winograd.cl): 3x3, stride 1, dilation 1, one group; forward and
    /// backward data.
    case winograd
    /// A 1x1, stride-1, unpadded convolution as a plain CLBlast GEMM on the input itself.
    case pointwiseGEMM
    /// Direct kernels for depthwise convolutions (one input channel per output channel).
    case depthwiseDirect
}

/// One of the three passes of a convolution.
public enum ConvolutionPass: String, CaseIterable, Sendable {
    /// y = x ⋆ w (+ bias).
    case forward
    /// dx from dy and w.
    case backwardData
    /// dw from x and dy.
    case backwardFilter
}

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
    /// The algorithms that can compute `pass` of a convolution of shape `shape` on this device.
    public func applicableConvolutionAlgorithms(for shape: Conv2DShape, pass: ConvolutionPass) -> [ConvolutionAlgorithm] {
        var algorithms: [ConvolutionAlgorithm] = []
        if shape.isPointwise { algorithms.append(.pointwiseGEMM) }
        if !shape.isPointwise && !shape.isDepthwise { algorithms.append(.im2colGEMM) }
        if ImplicitGEMMTiles.fitting(context.device.info) != nil { algorithms.append(.implicitGEMM) }
        if pass != .backwardFilter && Self.winogradApplies(to: shape) { algorithms.append(.winograd) }
        if shape.isDepthwise { algorithms.append(.depthwiseDirect) }
        return algorithms
    }

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
        let applicable = applicableConvolutionAlgorithms(for: shape, pass: pass)
        if let forced = convolutionTuner.forced, applicable.contains(forced) { return forced }
        if let known = convolutionTuner.algorithm(for: ConvolutionTuner.key(pass, shape)), applicable.contains(known) { return known }
        return defaultConvolutionAlgorithm(for: shape, pass: pass)
    }

    /// The algorithm the heuristic picks when tuning is off: the direct kernels where they apply, Winograd
    /// from 32 channels on (below, its transforms cost more than the multiplies they save), then the
    /// implicit GEMM on GPUs (one launch, no workspace). On CPUs (POCL) im2col + CLBlast stays ahead where its
    /// GEMM is large, but a short patch (the first layers) or many output channels to reduce the filter
    /// gradient into favour the implicit GEMM (measured on POCL, 2 cores).
    public func defaultConvolutionAlgorithm(for shape: Conv2DShape, pass: ConvolutionPass) -> ConvolutionAlgorithm {
        let applicable = applicableConvolutionAlgorithms(for: shape, pass: pass)
        var preferred: [ConvolutionAlgorithm] = [.depthwiseDirect, .pointwiseGEMM]
        if min(shape.groupInputChannels, shape.groupOutputChannels) >= 32 { preferred.append(.winograd) }
        if context.device.info.type != .cpu {
            preferred += [.implicitGEMM, .im2colGEMM]
        } else {
            let implicitFirst: Bool
            switch pass {
            case .forward: implicitFirst = shape.patchSize <= 160
            case .backwardData: implicitFirst = false
            case .backwardFilter: implicitFirst = shape.groupOutputChannels >= 16
            }
            preferred += implicitFirst ? [.implicitGEMM, .im2colGEMM] : [.im2colGEMM, .implicitGEMM]
        }
        return preferred.first(where: applicable.contains) ?? applicable[0]
    }
}

// MARK: - Choosing

extension OpenCLBackend {
    /// Timed runs per algorithm after the warm-up, and the time after which fewer will do.
    static let tuningRuns = 3
    static let tuningBudgetSeconds = 0.5

    /// The algorithm for `call`: the forced one where it applies, else the tuner's (timing every applicable
    /// algorithm on first use of the shape when tuning is on), else the heuristic's.
    func convolutionAlgorithm(for call: ConvolutionCall) throws -> ConvolutionAlgorithm {
        let applicable = applicableConvolutionAlgorithms(for: call.shape, pass: call.pass)
        if let forced = convolutionTuner.forced, applicable.contains(forced) { return forced }
        if applicable.count == 1 { return applicable[0] }
        let key = ConvolutionTuner.key(call.pass, call.shape)
        if let known = convolutionTuner.algorithm(for: key), applicable.contains(known) { return known }
        guard convolutionTuner.enabled else { return defaultConvolutionAlgorithm(for: call.shape, pass: call.pass) }
        return try tune(call, applicable, key: key)
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
                // A kernel this device cannot run (resources, limits) is simply not a candidate.
                continue
            }
        }
        guard let fastest = seconds.min(by: { $0.value < $1.value || ($0.value == $1.value && $0.key.rawValue < $1.key.rawValue) })?.key
        else { return defaultConvolutionAlgorithm(for: call.shape, pass: call.pass) }
        convolutionTuner.record(ConvolutionChoice(pass: call.pass, shape: call.shape, algorithm: fastest, seconds: seconds), key: key)
        return fastest
    }
}

// MARK: - The tuner's memory

/// The tuner's state for one device: the choices in memory and the file that keeps them between processes
/// (one per device name and driver version, since either changes the timings).
final class ConvolutionTuner: Sendable {
    fileprivate struct State {
        var choices: [String: ConvolutionChoice] = [:]
        var order: [String] = []
        var forced: ConvolutionAlgorithm?
        var enabled: Bool
        var directory: URL?
    }

    let deviceName: String
    let driverVersion: String
    private let state: Mutex<State>

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
            forced = ConvolutionAlgorithm.allCases.first { $0.rawValue.lowercased() == name.lowercased() }
            if forced == nil {
                let names = ConvolutionAlgorithm.allCases.map(\.rawValue).joined(separator: ", ")
                FileHandle.standardError.write(Data("kiln: ignoring KILN_CONV_ALGORITHM=\(name): not one of auto, \(names)\n".utf8))
            }
        }
        state = Mutex(State(forced: forced, enabled: enabled, directory: directory))
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

    func algorithm(for key: String) -> ConvolutionAlgorithm? {
        state.withLock { $0.choices[key]?.algorithm }
    }

    /// Keeps `choice` and rewrites the file with it, merged with what other processes stored meanwhile.
    func record(_ choice: ConvolutionChoice, key: String) {
        state.withLock { state in
            if state.choices[key] == nil { state.order.append(key) }
            state.choices[key] = choice
        }
        save()
    }

    // MARK: File

    /// The tuner's file: `conv-algorithms-<device>-<driver>.txt` with unsafe characters replaced.
    var fileURL: URL? {
        guard let directory else { return nil }
        let safe = { (text: String) in
            String(text.unicodeScalars.map { scalar -> Character in
                CharacterSet.alphanumerics.contains(scalar) && scalar.isASCII || scalar == "." || scalar == "_" ? Character(scalar) : "-"
            }.prefix(80))
        }
        return directory.appending(path: "conv-algorithms-\(safe(deviceName))-\(safe(driverVersion)).txt")
    }

    private static let header = "kiln-conv-algorithms 1"

    /// A (pass, shape) as one line's key: pass, then N C H W, C_out, kh kw, sh sw, pads (top bottom left
    /// right), dh dw, groups.
    static func key(_ pass: ConvolutionPass, _ s: Conv2DShape) -> String {
        let g = s.geometry
        let numbers = [s.batch, s.inputChannels, s.inputHeight, s.inputWidth, s.outputChannels, g.kernelHeight, g.kernelWidth,
                       g.strideHeight, g.strideWidth, g.padTop, g.padBottom, g.padLeft, g.padRight, g.dilationHeight, g.dilationWidth,
                       g.groups]
        return pass.rawValue + " " + numbers.map(String.init).joined(separator: ",")
    }

    private static func shape(fromKey numbers: Substring) -> Conv2DShape? {
        let n = numbers.split(separator: ",").compactMap { Int($0) }
        guard n.count == 16, n[15] > 0,
              var geometry = try? Conv2DGeometry(kernelSize: (n[5], n[6]), stride: (n[7], n[8]), dilation: (n[13], n[14]), groups: n[15])
        else { return nil }
        (geometry.padTop, geometry.padBottom, geometry.padLeft, geometry.padRight) = (n[9], n[10], n[11], n[12])
        return try? Conv2DShape(input: [n[0], n[1], n[2], n[3]], weight: [n[4], n[1] / n[15], n[5], n[6]], geometry: geometry)
    }

    /// Lines after the header: `<pass> <shape numbers> <algorithm> <algorithm>=<seconds> ...`.
    private func load() -> [(key: String, choice: ConvolutionChoice)] {
        guard let url = fileURL, let text = try? String(contentsOf: url, encoding: .utf8) else { return [] }
        let lines = text.split(separator: "\n")
        guard lines.first == Substring(Self.header) else { return [] }
        return lines.dropFirst().compactMap { line in
            let fields = line.split(separator: " ")
            guard fields.count >= 3, let pass = ConvolutionPass(rawValue: String(fields[0])),
                  let shape = Self.shape(fromKey: fields[1]),
                  let algorithm = ConvolutionAlgorithm(rawValue: String(fields[2])) else { return nil }
            var seconds: [ConvolutionAlgorithm: Double] = [:]
            for field in fields.dropFirst(3) {
                let parts = field.split(separator: "=")
                if parts.count == 2, let timed = ConvolutionAlgorithm(rawValue: String(parts[0])), let value = Double(parts[1]) {
                    seconds[timed] = value
                }
            }
            return (Self.key(pass, shape), ConvolutionChoice(pass: pass, shape: shape, algorithm: algorithm, seconds: seconds))
        }
    }

    /// Writes every choice to a temporary file and renames it over the old one, so a reader never sees half
    /// a file; a read-only or full disk costs only the next process its timings.
    private func save() {
        guard let url = fileURL else { return }
        let stored = load()
        let lines: [String] = state.withLock { state in
            state.merge(stored, keepingOwn: true)
            return state.order.compactMap { key in
                guard let choice = state.choices[key] else { return nil }
                let times = choice.seconds.sorted { $0.key.rawValue < $1.key.rawValue }.map { "\($0.key.rawValue)=\($0.value)" }
                return ([key, choice.algorithm.rawValue] + times).joined(separator: " ")
            }
        }
        let text = ([Self.header] + lines).joined(separator: "\n") + "\n"
        let temporary = url.deletingLastPathComponent().appending(path: ".\(url.lastPathComponent).\(ProcessInfo.processInfo.processIdentifier).tmp")
        do {
            try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
            try Data(text.utf8).write(to: temporary)
            guard rename(temporary.path, url.path) == 0 else {
                try? FileManager.default.removeItem(at: temporary)
                return
            }
        } catch {
            try? FileManager.default.removeItem(at: temporary)
        }
    }
}

private extension ConvolutionTuner.State {
    /// Adds stored choices; with `keepingOwn`, a key already in memory keeps its own choice.
    mutating func merge(_ stored: [(key: String, choice: ConvolutionChoice)], keepingOwn: Bool = false) {
        for (key, choice) in stored {
            if choices[key] == nil { order.append(key) } else if keepingOwn { continue }
            choices[key] = choice
        }
    }
}
