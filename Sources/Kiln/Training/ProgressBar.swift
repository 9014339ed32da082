import Foundation
import KilnCL

/// One line of progress per epoch: redrawn in place on a terminal, printed as plain lines (about every
/// tenth of the epoch) when the output is a file or a pipe. It writes through `ConsoleOutput.standard`, so a
/// reader that stops reading never blocks a step.
public final class ProgressBar {
    private let total: Int
    private let label: String
    private let interactive: Bool
    private let start = ContinuousClock.now
    private var lastPlainBucket = -1, lastPlainStep = -1
    private var lastRedraw: ContinuousClock.Instant?
    private var rate = SteadyRate()

    public init(total: Int, label: String, interactive: Bool = isatty(STDOUT_FILENO) == 1) {
        self.total = Swift.max(total, 1)
        self.label = label
        self.interactive = interactive
    }

    /// Shows step `step` of the epoch with the running loss and accuracy and the images processed so far.
    /// `warmingUp` says that the steps since the last update did one-time work (built programs, tuned
    /// convolutions): their time is not counted in the speed and the ETA.
    public func update(step: Int, loss: Double?, accuracy: Double?, images: Int, warmingUp: Bool = false) {
        let now = ContinuousClock.now
        rate.add(step: step, images: images, at: seconds(now - start), warmingUp: warmingUp)
        // A terminal line is redrawn at most ten times a second (and at the epoch's end): more is invisible,
        // and a fast model's thousand steps a second would be megabytes of output.
        if interactive, step < total, let lastRedraw, now - lastRedraw < .milliseconds(100) { return }
        if interactive { lastRedraw = now }
        var text = "\(label) \(step)/\(total)"
        if let loss, loss.isFinite { text += String(format: " loss %.4f", loss) }
        if let accuracy, accuracy.isFinite { text += String(format: " acc %.2f%%", accuracy * 100) }
        if let speed = rate.imagesPerSecond, let left = rate.secondsLeft(steps: total - step) {
            text += String(format: " %.0f img/s ETA %@", speed, Self.clock(left))
        } else if step < total {
            text += " warming up"
        }
        if interactive {
            let width = 24
            let filled = Int(Double(step) / Double(total) * Double(width))
            let bar = String(repeating: "█", count: filled) + String(repeating: "·", count: width - filled)
            ConsoleOutput.standard.write("\r\u{1B}[2K\(bar) \(text)")
        } else if step != lastPlainStep, step == total || step / Swift.max(total / 10, 1) != lastPlainBucket {
            (lastPlainBucket, lastPlainStep) = (step / Swift.max(total / 10, 1), step)
            ConsoleOutput.standard.write(text + "\n")
        }
    }

    /// Ends the progress line.
    public func finish() {
        if interactive { ConsoleOutput.standard.write("\n") }
    }

    static func clock(_ seconds: Double) -> String {
        let total = Int(seconds.rounded())
        return total >= 3600 ? String(format: "%d:%02d:%02d", total / 3600, total / 60 % 60, total % 60)
                             : String(format: "%d:%02d", total / 60, total % 60)
    }
}

/// Images per second and time left, over the steps that did no one-time work (compiling, tuning): the
/// progress bar's figures, which would otherwise mix a first run's compile time into the speed.
struct SteadyRate {
    private var last = (seconds: 0.0, images: 0, step: 0)
    private var counted = (seconds: 0.0, images: 0, steps: 0)

    /// Records that `step` steps and `images` images were done `seconds` after the start; `warmingUp` says
    /// that the steps since the last call did one-time work.
    mutating func add(step: Int, images: Int, at seconds: Double, warmingUp: Bool) {
        if !warmingUp {
            counted.seconds += seconds - last.seconds
            counted.images += images - last.images
            counted.steps += step - last.step
        }
        last = (seconds, images, step)
    }

    /// Nil until a counted step took measurable time.
    var imagesPerSecond: Double? {
        counted.steps > 0 && counted.seconds > 0 ? Double(counted.images) / counted.seconds : nil
    }

    /// The time `steps` more steps take at the counted steps' pace.
    func secondsLeft(steps: Int) -> Double? {
        counted.steps > 0 && counted.seconds > 0 ? counted.seconds / Double(counted.steps) * Double(steps) : nil
    }
}

/// The line that shows `Warmup.prepare`'s progress: "compiling OpenCL kernels for DEVICE (first run only,
/// cached in FOLDER): 12/31 programs", then "tuning convolutions: 7/24 shapes". Nothing shows unless the work
/// lasts more than about a second; on a terminal the line updates in place, on a pipe it prints when it
/// first shows and when it ends.
public final class PreparationLine: @unchecked Sendable {
    private let device: String
    private let cacheFolder: URL?
    private let interactive: Bool
    private let delay: Double
    private let start = ContinuousClock.now
    private let state = Locked(State())

    private struct State {
        var current: PreparationProgress?
        var phaseStart = ContinuousClock.now
        var shown = false
    }

    /// `delay`: seconds of work before anything is shown.
    public init(device: String, cacheFolder: URL?, interactive: Bool = isatty(STDOUT_FILENO) == 1, delay: Double = 1) {
        self.device = device
        self.cacheFolder = cacheFolder
        self.interactive = interactive
        self.delay = delay
    }

    /// Reports progress (from any thread).
    public func show(_ progress: PreparationProgress) {
        state.withLock { state in
            let phaseChanged: Bool = switch (state.current, progress) {
            case (.compiling?, .tuning), (.tuning?, .compiling): true
            default: false
            }
            if phaseChanged { end(&state) }
            if state.current == nil || phaseChanged { state.phaseStart = ContinuousClock.now }
            state.current = progress
            guard seconds(ContinuousClock.now - start) >= delay else { return }
            if interactive {
                ConsoleOutput.standard.write("\r\u{1B}[2K\(text(progress))")
            } else if !state.shown {
                ConsoleOutput.standard.write(text(progress) + "\n")
            }
            state.shown = true
        }
    }

    /// Ends the line (its last state, with the time the phase took, if it was shown) and waits until it is
    /// written.
    public func finish() {
        state.withLock { end(&$0) }
        ConsoleOutput.standard.drain()
    }

    private func end(_ state: inout State) {
        if state.shown, let current = state.current {
            let elapsed = String(format: "%.1f s", seconds(ContinuousClock.now - state.phaseStart))
            ConsoleOutput.standard.write((interactive ? "\r\u{1B}[2K" : "") + text(current) + ", \(elapsed)\n")
        }
        state.shown = false
        state.current = nil
    }

    private func text(_ progress: PreparationProgress) -> String {
        switch progress {
        case let .compiling(done, total):
            let cache = cacheFolder.map { "cached in \($0.path)" } ?? "not cached on disk"
            return "compiling OpenCL kernels for \(device) (first run only, \(cache)): \(done)/\(total) programs"
        case let .tuning(done, total):
            return "tuning convolutions: \(done)/\(total) shapes"
        }
    }
}

func seconds(_ duration: Duration) -> Double {
    Double(duration.components.seconds) + Double(duration.components.attoseconds) * 1e-18
}
