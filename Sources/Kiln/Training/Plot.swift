import Foundation

/// Renders the loss and accuracy curves of a run as a self-contained SVG: panels side by side, train and
/// validation (or test, as `scoredSet` says) series, labelled axes, and, given the steps' learning rates, a
/// third panel with the rate at every step.
public enum TrainingPlot {
    public static func svg(_ rows: [EpochMetrics], title: String, scoredSet: ScoredSet = .validation,
                           learningRates: [(step: Int, rate: Float)] = [], stepsPerEpoch: Int = 1) -> String {
        let width = learningRates.isEmpty ? 960.0 : 1420.0, height = 400.0
        var svg = """
        <svg xmlns="http://www.w3.org/2000/svg" width="\(Int(width))" height="\(Int(height))" viewBox="0 0 \(Int(width)) \(Int(height))" font-family="Helvetica, Arial, sans-serif">
        <rect width="100%" height="100%" fill="white"/>
        <text x="\(width / 2)" y="24" text-anchor="middle" font-size="16">\(escape(title))</text>

        """
        let epochs = rows.map { Double($0.epoch) }
        svg += panel(x: 60, y: 50, width: 400, height: 290, title: "loss", epochs: epochs,
                     series: [("train", "#1f77b4", rows.map(\.trainLoss)), (scoredSet.rawValue, "#ff7f0e", rows.map { $0.validationLoss ?? .nan })])
        svg += panel(x: 540, y: 50, width: 400, height: 290, title: "accuracy", epochs: epochs,
                     series: [("train", "#1f77b4", rows.map(\.trainAccuracy)), (scoredSet.rawValue, "#ff7f0e", rows.map { $0.validationAccuracy ?? .nan })])
        if !learningRates.isEmpty {
            // At most about 500 points: every k-th step, and the last.
            let stride = Swift.max(learningRates.count / 500, 1)
            let shown = learningRates.enumerated().filter { $0.offset % stride == 0 || $0.offset == learningRates.count - 1 }.map(\.element)
            svg += panel(x: 1000, y: 50, width: 400, height: 290, title: "learning rate (per step)",
                         epochs: shown.map { Double($0.step + 1) / Double(Swift.max(stepsPerEpoch, 1)) },
                         series: [("lr", "#2ca02c", shown.map { Double($0.rate) })], markers: shown.count <= 60)
        }
        return svg + "</svg>\n"
    }

    /// `xLabel` names the horizontal axis (epochs by default); `marks` draws dashed vertical lines at those x.
    static func panel(x: Double, y: Double, width: Double, height: Double, title: String, epochs: [Double],
                      series: [(name: String, color: String, values: [Double])], markers: Bool = true,
                      xLabel: String = "epoch", marks: [(x: Double, color: String, label: String)] = []) -> String {
        let finite = series.flatMap(\.values).filter(\.isFinite)
        var low = finite.min() ?? 0, high = finite.max() ?? 1
        if high - low < 1e-9 { (low, high) = (low - 0.5, high + 0.5) }
        let padding = (high - low) * 0.05
        (low, high) = (low - padding, high + padding)
        let firstEpoch = epochs.first ?? 0, lastEpoch = Swift.max(epochs.last ?? 1, firstEpoch + 1)
        func px(_ epoch: Double) -> Double { x + (epoch - firstEpoch) / (lastEpoch - firstEpoch) * width }
        func py(_ value: Double) -> Double { y + height - (value - low) / (high - low) * height }

        var out = "<g>\n<rect x=\"\(x)\" y=\"\(y)\" width=\"\(width)\" height=\"\(height)\" fill=\"none\" stroke=\"#333\"/>\n"
        out += "<text x=\"\(x + width / 2)\" y=\"\(y - 8)\" text-anchor=\"middle\" font-size=\"14\">\(title)</text>\n"
        for tick in 0...4 {
            let value = low + (high - low) * Double(tick) / 4
            out += "<line x1=\"\(x)\" y1=\"\(py(value))\" x2=\"\(x + width)\" y2=\"\(py(value))\" stroke=\"#ddd\"/>\n"
            out += "<text x=\"\(x - 6)\" y=\"\(py(value) + 4)\" text-anchor=\"end\" font-size=\"11\">\(String(format: "%.3g", value))</text>\n"
        }
        let epochTicks = Swift.min(epochs.count, 10)
        for tick in 0..<Swift.max(epochTicks, 1) {
            let epoch = firstEpoch + (lastEpoch - firstEpoch) * Double(tick) / Double(Swift.max(epochTicks - 1, 1))
            out += "<text x=\"\(px(epoch))\" y=\"\(y + height + 16)\" text-anchor=\"middle\" font-size=\"11\">\(String(format: "%.0f", epoch))</text>\n"
        }
        out += "<text x=\"\(x + width / 2)\" y=\"\(y + height + 34)\" text-anchor=\"middle\" font-size=\"12\">\(xLabel)</text>\n"
        for mark in marks {
            out += String(format: "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%@\" stroke-dasharray=\"5,4\"/>\n",
                          px(mark.x), y, px(mark.x), y + height, mark.color)
            out += String(format: "<text x=\"%.1f\" y=\"%.1f\" font-size=\"11\" fill=\"%@\">%@</text>\n", px(mark.x) + 4, y + 14,
                          mark.color, escape(mark.label))
        }
        for (index, line) in series.enumerated() {
            let points = zip(epochs, line.values).filter { $0.1.isFinite }
            guard !points.isEmpty else { continue }
            let path = points.map { String(format: "%.1f,%.1f", px($0.0), py($0.1)) }.joined(separator: " ")
            out += "<polyline points=\"\(path)\" fill=\"none\" stroke=\"\(line.color)\" stroke-width=\"2\"/>\n"
            for point in points where markers {
                out += String(format: "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3\" fill=\"%@\"/>\n", px(point.0), py(point.1), line.color)
            }
            let legendY = y + 16 + Double(index) * 16
            out += "<line x1=\"\(x + width - 110)\" y1=\"\(legendY - 4)\" x2=\"\(x + width - 90)\" y2=\"\(legendY - 4)\" stroke=\"\(line.color)\" stroke-width=\"2\"/>\n"
            out += "<text x=\"\(x + width - 84)\" y=\"\(legendY)\" font-size=\"11\">\(line.name)</text>\n"
        }
        return out + "</g>\n"
    }

    static func escape(_ text: String) -> String {
        text.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;").replacingOccurrences(of: ">", with: "&gt;")
    }
}

/// The learning-rate range test's picture (`kiln lr-find`): the smoothed loss against log₁₀ of the rate, one
/// curve per run, each suggestion a dashed line.
public enum LearningRatePlot {
    public static func svg(_ runs: [(name: String, result: LearningRateFinder.Result)], title: String) -> String {
        let colors = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd"]
        let width = 720.0, height = 460.0
        var svg = """
        <svg xmlns="http://www.w3.org/2000/svg" width="\(Int(width))" height="\(Int(height))" viewBox="0 0 \(Int(width)) \(Int(height))" font-family="Helvetica, Arial, sans-serif">
        <rect width="100%" height="100%" fill="white"/>
        <text x="\(width / 2)" y="24" text-anchor="middle" font-size="16">\(TrainingPlot.escape(title))</text>

        """
        // One x axis for all runs: the runs share the range, but a diverged one stops early (NaN after it).
        let longest = runs.map(\.result.points).max { $0.count < $1.count } ?? []
        let xs = longest.map { Foundation.log10(Double($0.rate)) }
        // The early, undiverged part decides the scale: the diverging tail would flatten everything else.
        let series = runs.enumerated().map { index, run -> (name: String, color: String, values: [Double]) in
            let first = run.result.points.first?.smoothedLoss ?? 1
            let values = xs.indices.map { i -> Double in
                guard i < run.result.points.count else { return .nan }
                let value = run.result.points[i].smoothedLoss
                return value.isFinite && value <= 2 * first ? value : .nan
            }
            return (run.name, colors[index % colors.count], values)
        }
        let marks = runs.enumerated().compactMap { index, run in
            run.result.suggestion.map { (x: Foundation.log10(Double($0)), color: colors[index % colors.count],
                                         label: String(format: "%@: %.2g", run.name, $0)) }
        }
        svg += TrainingPlot.panel(x: 70, y: 50, width: 610, height: 340, title: "smoothed training loss", epochs: xs, series: series,
                                  markers: false, xLabel: "log₁₀ learning rate", marks: marks)
        return svg + "</svg>\n"
    }
}
