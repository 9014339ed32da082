import Foundation

/// One line of progress per epoch: redrawn in place on a terminal, printed as plain lines (about every
/// tenth of the epoch) when the output is a file or a pipe.
public final class ProgressBar {
    private let total: Int
    private let label: String
    private let interactive: Bool
    private let start = ContinuousClock.now
    private var lastPlainBucket = -1, lastPlainStep = -1

    public init(total: Int, label: String, interactive: Bool = isatty(STDOUT_FILENO) == 1) {
        self.total = Swift.max(total, 1)
        self.label = label
        self.interactive = interactive
    }

    /// Shows step `step` of the epoch with the running loss and accuracy and the images processed so far.
    public func update(step: Int, loss: Double?, accuracy: Double?, images: Int) {
        let elapsed = seconds(ContinuousClock.now - start)
        let fraction = Double(step) / Double(total)
        let speed = elapsed > 0 ? Double(images) / elapsed : 0
        let eta = fraction > 0 ? elapsed * (1 - fraction) / fraction : 0
        var text = "\(label) \(step)/\(total)"
        if let loss, loss.isFinite { text += String(format: " loss %.4f", loss) }
        if let accuracy, accuracy.isFinite { text += String(format: " acc %.2f%%", accuracy * 100) }
        text += String(format: " %.0f img/s ETA %@", speed, Self.clock(eta))
        if interactive {
            let width = 24
            let filled = Int(fraction * Double(width))
            let bar = String(repeating: "█", count: filled) + String(repeating: "·", count: width - filled)
            print("\r\u{1B}[2K\(bar) \(text)", terminator: "")
            fflush(nil)  // all output streams: stdout is a C global Swift 6 will not touch
        } else if step != lastPlainStep, step == total || step / Swift.max(total / 10, 1) != lastPlainBucket {
            (lastPlainBucket, lastPlainStep) = (step / Swift.max(total / 10, 1), step)
            print(text)
            fflush(nil)  // a pipe is block-buffered: show each line as it happens
        }
    }

    /// Ends the progress line.
    public func finish() {
        if interactive { print("") }
    }

    static func clock(_ seconds: Double) -> String {
        let total = Int(seconds.rounded())
        return total >= 3600 ? String(format: "%d:%02d:%02d", total / 3600, total / 60 % 60, total % 60)
                             : String(format: "%d:%02d", total / 60, total % 60)
    }
}

func seconds(_ duration: Duration) -> Double {
    Double(duration.components.seconds) + Double(duration.components.attoseconds) * 1e-18
}
