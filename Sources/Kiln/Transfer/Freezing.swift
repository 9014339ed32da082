import Foundation

extension Layer {
    /// The learnable parameters selected by dotted-path globs (`*` any run of characters, dots included; `?`
    /// one; `[...]` a set), matched against layer paths — a layer's pattern selects its whole subtree:
    /// `conv1`, `layer1.*`, `features.*` — and against parameter names (`*.bias`). A pattern that selects
    /// nothing is an error naming it and listing the model's top-level layers.
    public func parameters(matching patterns: [String]) throws -> [(name: String, parameter: Parameter)] {
        let learnable = namedParameters.filter { !$0.parameter.isBuffer }
        var selected = Set<String>()
        for pattern in patterns {
            let matches = learnable.filter { entry in
                let parts = entry.name.split(separator: ".").map(String.init)
                // The parameter's own name and the paths of the layers it sits in: "layer1", "layer1.0", ...
                return globMatches(pattern, entry.name)
                    || (1..<parts.count).contains { globMatches(pattern, parts[..<$0].joined(separator: ".")) }
            }
            guard !matches.isEmpty else {
                throw KilnError.invalidArgument("the pattern '\(pattern)' matches no layer or parameter that trains; "
                                                + "the model's layers: \(children.map(\.name).joined(separator: ", "))")
            }
            selected.formUnion(matches.map(\.name))
        }
        return learnable.filter { selected.contains($0.name) }
    }

    /// The learnable parameters of every layer before the layer at `path` (in forward order, which is the
    /// order of the tree): what `--freeze-until` freezes. That layer and the ones after it stay trainable.
    public func parameters(before path: String) throws -> [(name: String, parameter: Parameter)] {
        let target = try layer(named: path)
        let learnable = namedParameters.filter { !$0.parameter.isBuffer }
        let own = Set(target.namedParameters.map { ObjectIdentifier($0.parameter) })
        guard let first = learnable.firstIndex(where: { own.contains(ObjectIdentifier($0.parameter)) }) else {
            // A layer without parameters (a pooling, say): everything of the layers before it in the tree.
            let index = namedLayers.firstIndex { $0.layer === target } ?? 0
            let earlier = Set(namedLayers[..<index].flatMap { $0.layer.ownParameters.map { ObjectIdentifier($0.parameter) } })
            return learnable.filter { earlier.contains(ObjectIdentifier($0.parameter)) }
        }
        return Array(learnable[..<first])
    }

    /// Freezes the parameters `patterns` select (`parameters(matching:)`): they get no gradient, no optimiser
    /// state and no weight decay, and a batch norm whose γ and β are frozen keeps its running statistics.
    /// Returns the names frozen.
    @discardableResult
    public func freeze(matching patterns: [String]) throws -> [String] {
        let selected = try parameters(matching: patterns)
        for (_, parameter) in selected { parameter.requiresGradient = false }
        return selected.map(\.name)
    }

    /// Makes the parameters `patterns` select trainable again.
    @discardableResult
    public func unfreeze(matching patterns: [String]) throws -> [String] {
        let selected = try parameters(matching: patterns)
        for (_, parameter) in selected { parameter.requiresGradient = true }
        return selected.map(\.name)
    }

    /// The learnable parameters that are frozen now.
    public var frozenParameters: [(name: String, parameter: Parameter)] {
        namedParameters.filter { !$0.parameter.isBuffer && !$0.parameter.requiresGradient }
    }
}

/// Whether `text` matches the glob `pattern` (fnmatch without special treatment of dots or slashes).
func globMatches(_ pattern: String, _ text: String) -> Bool {
    fnmatch(pattern, text, 0) == 0
}

/// Which parameters of a model a run freezes and when they thaw: `kiln train --freeze`, `--freeze-until`,
/// `--unfreeze-at` and `--lr-backbone`.
///
///     let plan = FreezePlan(patterns: ["conv1", "bn1", "layer1.*"], unfreezeAtEpoch: 3)
///     let backbone = try plan.backbone(of: model)   // frozen for epochs 1 and 2
///     try plan.apply(to: model, epoch: 0)
public struct FreezePlan: Equatable, Sendable {
    /// Dotted-path globs (`Layer.parameters(matching:)`).
    public var patterns: [String]
    /// Freeze every layer before this one (`Layer.parameters(before:)`).
    public var until: String?
    /// The epoch (1-based) from which the frozen parameters train; nil: they stay frozen.
    public var unfreezeAtEpoch: Int?

    public init(patterns: [String] = [], until: String? = nil, unfreezeAtEpoch: Int? = nil) {
        self.patterns = patterns
        self.until = until
        self.unfreezeAtEpoch = unfreezeAtEpoch
    }

    /// Whether the plan freezes anything.
    public var isEmpty: Bool { patterns.isEmpty && until == nil }

    /// The parameters the plan freezes, in the model's order: what `--lr-backbone` calls the backbone.
    public func backbone(of model: any Layer) throws -> [(name: String, parameter: Parameter)] {
        var names = Set(try model.parameters(matching: patterns).map(\.name))
        if let until { names.formUnion(try model.parameters(before: until).map(\.name)) }
        return model.namedParameters.filter { names.contains($0.name) }
    }

    /// Whether the backbone is frozen during `epoch` (0-based).
    public func isFrozen(epoch: Int) -> Bool {
        !isEmpty && unfreezeAtEpoch.map { epoch + 1 < $0 } ?? true
    }

    /// Freezes the backbone for `epoch` (0-based), or makes it trainable from `unfreezeAtEpoch` on. Returns
    /// whether the backbone is frozen.
    @discardableResult
    public func apply(to model: any Layer, epoch: Int) throws -> Bool {
        let frozen = isFrozen(epoch: epoch)
        for (_, parameter) in try backbone(of: model) { parameter.requiresGradient = !frozen }
        return frozen
    }
}
