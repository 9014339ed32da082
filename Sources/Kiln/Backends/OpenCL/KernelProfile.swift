import Foundation
import KilnCL

/// Device time per kernel over training steps, from OpenCL profiling events: what `KILN_PROFILE=1 kiln
/// train` and `kiln bench --profile` print. Only what runs between `beginStep()` and `endStep()` counts, and
/// each step ends with a wait for the device, so that the wall time per step and the device time in it can
/// be compared (the difference is time the device spent waiting for the host to enqueue).
public final class KernelProfile {
    /// One kernel (or CLBlast routine) over the profiled steps.
    public struct Row: Sendable {
        public var name: String
        public var calls: Int
        public var seconds: Double
    }

    private let backend: OpenCLBackend
    private var totals: [String: (calls: Int, seconds: Double)] = [:]
    private var launchesAtStepStart = 0
    private var stepStart = ContinuousClock.now
    public private(set) var steps = 0
    /// Kernels enqueued during the profiled steps.
    public private(set) var launches = 0
    /// Host wall time of the profiled steps, each ending when the device is done.
    public private(set) var wallSeconds = 0.0

    /// Steps still to run before profiling starts (a run's first steps compile programs and tune
    /// convolutions, which are not what a profile of the steady state should show).
    private var warmUpSteps: Int

    public init(backend: OpenCLBackend, skippingFirst warmUpSteps: Int = 0) {
        self.backend = backend
        self.warmUpSteps = warmUpSteps
    }

    private var profiler: CLProfiler { backend.context.profiler }

    public func beginStep() throws {
        guard warmUpSteps == 0 else { return }
        try backend.synchronize()
        _ = try profiler.drain()  // anything enqueued between steps is not the step's
        profiler.isRecording = true
        launchesAtStepStart = profiler.launches
        stepStart = .now
    }

    public func endStep() throws {
        guard warmUpSteps == 0 else {
            warmUpSteps -= 1
            return
        }
        try backend.synchronize()
        wallSeconds += BenchmarkSuite.seconds(ContinuousClock.now - stepStart)
        profiler.isRecording = false
        launches += profiler.launches - launchesAtStepStart
        steps += 1
        for timing in try profiler.drain() {
            totals[timing.name, default: (0, 0)].calls += 1
            totals[timing.name, default: (0, 0)].seconds += timing.seconds
        }
    }

    /// The kernels, most device time first.
    public var rows: [Row] {
        totals.map { Row(name: $0.key, calls: $0.value.calls, seconds: $0.value.seconds) }
            .sorted { $0.seconds > $1.seconds || ($0.seconds == $1.seconds && $0.name < $1.name) }
    }

    public var deviceSeconds: Double { totals.values.map(\.seconds).reduce(0, +) }

    public var launchesPerStep: Double { steps == 0 ? 0 : Double(launches) / Double(steps) }

    /// A Markdown table: per kernel its calls per step, total and mean time, and share of the device time,
    /// under a line with the step's wall and device time and its launch count.
    public var table: String {
        guard steps > 0 else { return "no profiled steps" }
        let perStep = { (seconds: Double) in seconds / Double(self.steps) * 1e3 }
        var lines = [
            String(format: "%d steps on %@: %.2f ms wall per step, %.2f ms of it on the device (%.0f%%), %.0f launches per step",
                   steps, backend.name, perStep(wallSeconds), perStep(deviceSeconds), 100 * deviceSeconds / max(wallSeconds, 1e-12),
                   launchesPerStep),
            "",
            "| kernel | calls per step | total ms | ms per step | mean µs | share of device time |",
            "|---|---|---|---|---|---|",
        ]
        for row in rows {
            lines.append(String(format: "| %@ | %.1f | %.2f | %.3f | %.1f | %.1f%% |", row.name, Double(row.calls) / Double(steps),
                                row.seconds * 1e3, perStep(row.seconds), row.seconds / Double(row.calls) * 1e6,
                                100 * row.seconds / max(deviceSeconds, 1e-12)))
        }
        return lines.joined(separator: "\n")
    }
}
