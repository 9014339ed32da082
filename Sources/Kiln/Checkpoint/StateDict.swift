import Foundation

extension Layer {
    /// Every parameter and buffer as a safetensors state dict with PyTorch's names and layouts.
    public func stateDict() throws -> SafeTensors {
        var file = SafeTensors()
        for (name, parameter) in namedParameters {
            let values = try parameter.value.toArray()
            switch parameter.storedType {
            case .int64: file.set(name, integers: values.map { Int64($0) }, shape: parameter.value.shape)
            case .float32, .float16, .bfloat16, .float64: file.set(name, floats: values, shape: parameter.value.shape)
            }
        }
        return file
    }

    /// Loads the parameters and buffers from a state dict (read from `source`, named in errors). Every
    /// name of the layer tree must be present with its shape; entries the tree does not have are an error
    /// unless `strict` is false.
    public func loadStateDict(_ file: SafeTensors, source: String) throws {
        try loadStateDict(file, source: source, strict: true)
    }

    public func loadStateDict(_ file: SafeTensors, source: String, strict: Bool) throws {
        let parameters = namedParameters
        var problems: [String] = []
        for (name, parameter) in parameters {
            guard let entry = file[name] else { problems.append("missing \(name)"); continue }
            if entry.shape != parameter.value.shape {
                problems.append("\(name) has shape \(describe(entry.shape)) in the file, \(describe(parameter.value.shape)) in the model")
            }
        }
        if strict {
            let known = Set(parameters.map(\.name))
            problems += file.names.filter { !known.contains($0) }.map { "unexpected \($0)" }
        }
        guard problems.isEmpty else {
            throw KilnError.corruptFile(path: source, reason: "does not fit the model: " + problems.joined(separator: "; "))
        }
        for (name, parameter) in parameters {
            guard let values = file.floats(name) else { continue }
            try parameter.value.assign(try Tensor(values, shape: parameter.value.shape))
            parameter.markModified()
        }
    }
}
