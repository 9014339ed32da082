/// One leaf layer in a model summary.
public struct SummaryRow: Equatable, Sendable {
    /// The layer's dotted path, as in the state dict ("features.0").
    public var name: String
    public var type: String
    /// Output shape for the summarised input (batch included).
    public var outputShape: [Int]
    /// Learnable parameters (weights, biases, gamma, beta) that train.
    public var trainableParameters: Int
    /// Learnable parameters that are frozen.
    public var frozenParameters: Int = 0
    /// Elements of buffers (running statistics): saved, never trained.
    public var bufferElements: Int
    /// Multiply-accumulates per sample.
    public var multiplyAccumulates: Int
}

/// A model summary: a row per leaf layer, with totals and memory estimates.
public struct ModelSummary: CustomStringConvertible, Sendable {
    public var inputShape: [Int]
    public var rows: [SummaryRow]
    public var batchSize: Int

    public var trainableParameters: Int { rows.map(\.trainableParameters).reduce(0, +) }
    public var frozenParameters: Int { rows.map(\.frozenParameters).reduce(0, +) }
    public var nonTrainableElements: Int { rows.map(\.bufferElements).reduce(0, +) }
    public var multiplyAccumulates: Int { rows.map(\.multiplyAccumulates).reduce(0, +) }
    /// Bytes of parameters and buffers (Float32).
    public var weightBytes: Int { 4 * (trainableParameters + frozenParameters + nonTrainableElements) }
    /// Bytes of every layer output for one forward pass at `batchSize` (Float32); training keeps them all for
    /// backward and needs about as much again for their gradients.
    public var activationBytes: Int { 4 * batchSize * rows.map { $0.outputShape.dropFirst().reduce(1, *) }.reduce(0, +) }

    public var description: String {
        // A frozen layer is marked after its type: "Conv2D (frozen)".
        let header = ["layer", "type", "output shape", "parameters", "MACs"]
        let body = rows.map { row in
            [row.name, row.frozenParameters > 0 ? "\(row.type) (\(row.trainableParameters > 0 ? "partly " : "")frozen)" : row.type,
             describe([batchSize] + row.outputShape.dropFirst()),
             grouped(row.trainableParameters + row.frozenParameters + row.bufferElements), grouped(row.multiplyAccumulates)]
        }
        let widths = header.indices.map { column in ([header] + body).map { $0[column].count }.max() ?? 0 }
        func line(_ cells: [String]) -> String {
            cells.enumerated().map { column, cell in
                column >= 3 ? String(repeating: " ", count: widths[column] - cell.count) + cell
                            : cell + String(repeating: " ", count: widths[column] - cell.count)
            }.joined(separator: "  ")
        }
        let rule = String(repeating: "─", count: widths.reduce(0, +) + 2 * (widths.count - 1))
        var lines = [line(header), rule] + body.map(line) + [rule]
        lines.append("input \(describe([batchSize] + inputShape.dropFirst()))")
        lines.append("trainable parameters: \(grouped(trainableParameters))")
        if frozenParameters > 0 { lines.append("frozen parameters: \(grouped(frozenParameters))") }
        lines.append("non-trainable (running statistics): \(grouped(nonTrainableElements))")
        lines.append("multiply-accumulates per sample: \(grouped(multiplyAccumulates))")
        lines.append("weights: \(megabytes(weightBytes)); activations at batch \(batchSize): \(megabytes(activationBytes)) "
                     + "(training keeps them for backward, plus as much again for their gradients)")
        return lines.joined(separator: "\n")
    }

    private func grouped(_ value: Int) -> String {
        let digits = Array(String(value))
        return String(digits.enumerated().flatMap { index, digit in
            (index > 0 && (digits.count - index) % 3 == 0) ? [",", digit] : [digit]
        })
    }

    private func megabytes(_ bytes: Int) -> String { String(format: "%.2f MB", Double(bytes) / 1_000_000) }
}

extension Layer {
    /// The summary of this model for inputs of `inputShape` ([C, H, W] or [features], without the batch).
    public func summary(inputShape: [Int], batchSize: Int = 1) throws -> ModelSummary {
        var rows: [SummaryRow] = []
        _ = try summarize(path: "", input: [1] + inputShape, into: &rows)
        return ModelSummary(inputShape: [1] + inputShape, rows: rows, batchSize: batchSize)
    }

    /// Summarises the children one after another (each fed the previous one's output).
    func summarizeChain(_ layers: [(name: String, layer: any Layer)], path: String, input: [Int],
                        into rows: inout [SummaryRow]) throws -> [Int] {
        try layers.reduce(input) { shape, entry in
            try entry.layer.summarize(path: path.isEmpty ? entry.name : "\(path).\(entry.name)", input: shape, into: &rows)
        }
    }
}
