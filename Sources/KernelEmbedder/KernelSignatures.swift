// Reads what the Swift side needs from an OpenCL C file: each `__kernel` signature (also those a
// function-like macro stamps out), the `enum`s shared with Swift, and the files to compile in front of it.
// It is no C parser: it understands the subset Kernels/*.cl are written in, and fails loudly on the rest.

struct KernelFile {
    /// The file name, e.g. "conv_gemm.cl".
    var name: String
    /// Files compiled in front of this one (`//! prelude: random.cl`), for shared helpers.
    var prelude: [String]
    var kernels: [KernelSignature]
    var enums: [SharedEnum]
    /// Object-like macros that kernels use as a run of parameters, e.g. `#define CONV_WINDOW const uint kh, ...`.
    var parameterGroups: [(name: String, parameters: [KernelParameter])]
}

struct KernelSignature {
    /// The kernel's name; for a macro-made kernel, a template such as `binary_##NAME`.
    var name: String
    var parameters: [KernelParameter]
    /// `reqd_work_group_size(...)`'s arguments, if the kernel requires one.
    var requiredWorkGroupSize: [String]?
    /// For a macro-made kernel: the macro, its parameter in the name, and the values it is invoked with.
    var family: (macro: String, parameter: String, values: [String])?

    /// The concrete kernel names this signature stands for.
    var expandedNames: [String] {
        guard let family else { return [name] }
        return family.values.map { name.replacingOccurrences(of: "##\(family.parameter)", with: $0) }
    }
}

struct KernelParameter {
    enum Space { case global, local, value }
    var space: Space
    /// The OpenCL type without qualifiers, e.g. "float", "uint", "activation_kind".
    var type: String
    var name: String
    var isPointer: Bool
    /// The parameter-list macro this parameter came from (`CONV_WINDOW`), which Swift passes as one struct.
    var group: String?
}

/// An `enum tag { NAME = value, ... };` that Swift gets as a generated enum, and the `typedef int tag;`
/// that lets a kernel take it as a parameter type.
struct SharedEnum {
    var tag: String
    var cases: [(name: String, value: Int)]
}

struct SignatureError: Error, CustomStringConvertible {
    var description: String
}

func parseKernelFile(name: String, source: String) throws -> KernelFile {
    let prelude = source.split(separator: "\n").compactMap { line -> [String]? in
        let trimmed = line.trimmingCharacters(in: .whitespaces)
        guard trimmed.hasPrefix("//! prelude:") else { return nil }
        return trimmed.dropFirst("//! prelude:".count).split(separator: " ").map(String.init)
    }.flatMap { $0 }

    let code = withoutComments(source).replacingOccurrences(of: "\\\n", with: " ")
    var macros: [String: (parameters: [String], body: String)] = [:]
    var objectMacros: [String: String] = [:]
    var topLevel = ""
    for line in code.split(separator: "\n", omittingEmptySubsequences: false) {
        let trimmed = line.trimmingCharacters(in: .whitespaces)
        if trimmed.hasPrefix("#define ") {
            if let macro = functionLikeMacro(trimmed) {
                macros[macro.name] = (macro.parameters, macro.body)
            } else {
                let parts = trimmed.dropFirst("#define ".count).split(separator: " ", maxSplits: 1)
                if parts.count == 2 { objectMacros[String(parts[0])] = String(parts[1]) }
            }
        }
        if !trimmed.hasPrefix("#") { topLevel += line + "\n" }
    }

    var groups: [String: [KernelParameter]] = [:]
    let expandGroup = { (macro: String, kernel: String) throws -> [KernelParameter]? in
        guard let body = objectMacros[macro] else { return nil }
        let parameters = try splitTopLevel(Substring(body)).map {
            var parameter = try parameter(String($0), kernel: kernel, file: name)
            parameter.group = macro
            return parameter
        }
        groups[macro] = parameters
        return parameters
    }
    var kernels = try kernelSignatures(in: topLevel, file: name, expandGroup: expandGroup)
    for (macroName, macro) in macros.sorted(by: { $0.key < $1.key }) where macro.body.contains("__kernel") {
        let invocations = try macroInvocations(of: macroName, in: topLevel)
        guard !invocations.isEmpty else { continue }
        for var signature in try kernelSignatures(in: macro.body, file: name, expandGroup: expandGroup) {
            guard let parameter = macro.parameters.first(where: { signature.name.contains("##\($0)") }) else {
                throw SignatureError(description: "\(name): kernel \(signature.name) in macro \(macroName) does not take its name from a macro parameter")
            }
            let index = macro.parameters.firstIndex(of: parameter) ?? 0
            signature.family = (macroName, parameter, invocations.map { $0[index] })
            kernels.append(signature)
        }
    }
    return KernelFile(name: name, prelude: prelude, kernels: kernels, enums: try sharedEnums(in: topLevel, file: name),
                      parameterGroups: groups.sorted { $0.key < $1.key }.map { ($0.key, $0.value) })
}

private func withoutComments(_ source: String) -> String {
    var result = ""
    var characters = Array(source)[...]
    while let first = characters.first {
        if first == "/", characters.dropFirst().first == "/" {
            while let c = characters.first, c != "\n" { characters = characters.dropFirst() }
        } else if first == "/", characters.dropFirst().first == "*" {
            characters = characters.dropFirst(2)
            while !characters.isEmpty, !(characters.first == "*" && characters.dropFirst().first == "/") {
                if characters.first == "\n" { result.append("\n") }
                characters = characters.dropFirst()
            }
            characters = characters.dropFirst(2)
            result.append(" ")
        } else {
            result.append(first)
            characters = characters.dropFirst()
        }
    }
    return result
}

private func functionLikeMacro(_ line: String) -> (name: String, parameters: [String], body: String)? {
    let rest = line.dropFirst("#define ".count)
    guard let open = rest.firstIndex(of: "("), rest[..<open].allSatisfy({ $0.isLetter || $0.isNumber || $0 == "_" }),
          let close = rest[open...].firstIndex(of: ")") else { return nil }
    let parameters = rest[rest.index(after: open)..<close].split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
    return (String(rest[..<open]), parameters, String(rest[rest.index(after: close)...]))
}

/// The argument lists of `NAME(...)` at the top level of `code`.
private func macroInvocations(of macro: String, in code: String) throws -> [[String]] {
    var result: [[String]] = []
    var searchStart = code.startIndex
    while let range = code.range(of: macro + "(", range: searchStart..<code.endIndex) {
        let before = range.lowerBound == code.startIndex ? " " : code[code.index(before: range.lowerBound)]
        searchStart = range.upperBound
        guard !(before.isLetter || before.isNumber || before == "_") else { continue }
        let (inside, end) = try balanced(code, from: code.index(before: range.upperBound))
        result.append(splitTopLevel(inside).map { $0.trimmingCharacters(in: .whitespacesAndNewlines) })
        searchStart = end
    }
    return result
}

/// The text between the parenthesis at `open` and its partner, and the index after the partner.
private func balanced(_ text: String, from open: String.Index) throws -> (Substring, String.Index) {
    var depth = 0
    var index = open
    while index < text.endIndex {
        switch text[index] {
        case "(": depth += 1
        case ")":
            depth -= 1
            if depth == 0 { return (text[text.index(after: open)..<index], text.index(after: index)) }
        default: break
        }
        index = text.index(after: index)
    }
    throw SignatureError(description: "unbalanced parentheses after \(text[open...].prefix(40))")
}

private func splitTopLevel(_ text: Substring) -> [Substring] {
    var parts: [Substring] = []
    var depth = 0
    var start = text.startIndex
    for index in text.indices {
        switch text[index] {
        case "(": depth += 1
        case ")": depth -= 1
        case "," where depth == 0:
            parts.append(text[start..<index])
            start = text.index(after: index)
        default: break
        }
    }
    parts.append(text[start...])
    return parts
}

/// `expandGroup(NAME, kernel)` gives the parameters of a parameter-list macro, or nil for any other word.
private func kernelSignatures(in code: String, file: String,
                              expandGroup: (String, String) throws -> [KernelParameter]?) throws -> [KernelSignature] {
    var result: [KernelSignature] = []
    var searchStart = code.startIndex
    while let range = code.range(of: "__kernel", range: searchStart..<code.endIndex) {
        var rest = code[range.upperBound...]
        var required: [String]?
        rest = rest.drop(while: \.isWhitespace)
        if rest.hasPrefix("__attribute__") {
            guard let open = rest.firstIndex(of: "(") else { throw SignatureError(description: "\(file): malformed __attribute__") }
            let (attribute, end) = try balanced(code, from: open)
            if let r = attribute.range(of: "reqd_work_group_size(") {
                // A substring shares its base's indices: the "(" of the attribute is at the same place in `code`.
                let (sizes, _) = try balanced(code, from: code.index(before: r.upperBound))
                required = splitTopLevel(sizes).map { $0.trimmingCharacters(in: .whitespaces) }
            }
            rest = code[end...].drop(while: \.isWhitespace)
        }
        guard rest.hasPrefix("void") else { throw SignatureError(description: "\(file): a __kernel that does not return void") }
        rest = rest.dropFirst(4).drop(while: \.isWhitespace)
        guard let open = rest.firstIndex(of: "(") else { throw SignatureError(description: "\(file): kernel without parameters") }
        let name = rest[..<open].trimmingCharacters(in: .whitespaces)
        let (list, end) = try balanced(code, from: open)
        let parameters = try splitTopLevel(list).flatMap { text -> [KernelParameter] in
            let word = text.trimmingCharacters(in: .whitespacesAndNewlines)
            if let group = try expandGroup(word, name) { return group }
            return [try parameter(String(text), kernel: name, file: file)]
        }
        result.append(KernelSignature(name: name, parameters: parameters, requiredWorkGroupSize: required))
        searchStart = end
    }
    return result
}

private func parameter(_ text: String, kernel: String, file: String) throws -> KernelParameter {
    let spaced = text.replacingOccurrences(of: "*", with: " * ")
    var words = spaced.split(whereSeparator: { $0.isWhitespace }).map(String.init)
    guard let name = words.popLast(), !words.isEmpty else {
        throw SignatureError(description: "\(file): cannot read parameter '\(text)' of \(kernel)")
    }
    var space = KernelParameter.Space.value
    var isPointer = false
    var type: [String] = []
    for word in words {
        switch word {
        case "__global", "global": space = .global
        case "__local", "local": space = .local
        case "*": isPointer = true
        case "const", "restrict", "__restrict", "volatile": continue
        default: type.append(word)
        }
    }
    guard type.count == 1 else { throw SignatureError(description: "\(file): cannot read the type of '\(text)' in \(kernel)") }
    return KernelParameter(space: space, type: type[0], name: name, isPointer: isPointer)
}

/// `enum tag { A = 0, B = 1 };` blocks whose tag is also a `typedef int tag;`.
private func sharedEnums(in code: String, file: String) throws -> [SharedEnum] {
    var result: [SharedEnum] = []
    var searchStart = code.startIndex
    while let range = code.range(of: "enum ", range: searchStart..<code.endIndex) {
        guard let brace = code[range.upperBound...].firstIndex(of: "{"),
              let close = code[brace...].firstIndex(of: "}") else { break }
        let tag = code[range.upperBound..<brace].trimmingCharacters(in: .whitespacesAndNewlines)
        var next = 0
        var cases: [(String, Int)] = []
        for entry in code[code.index(after: brace)..<close].split(separator: ",") {
            let parts = entry.split(separator: "=").map { $0.trimmingCharacters(in: .whitespacesAndNewlines) }
            guard let caseName = parts.first, !caseName.isEmpty else { continue }
            if parts.count == 2 {
                guard let value = Int(parts[1]) else {
                    throw SignatureError(description: "\(file): enum \(tag): \(caseName) needs an integer value")
                }
                next = value
            }
            cases.append((caseName, next))
            next += 1
        }
        guard code.contains("typedef int \(tag);") else {
            throw SignatureError(description: "\(file): enum \(tag) needs `typedef int \(tag);` so that kernels can take it")
        }
        result.append(SharedEnum(tag: tag, cases: cases))
        searchStart = close
    }
    return result
}
