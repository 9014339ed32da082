import Foundation

/// The tuner's file: one line per (pass, shape) with the algorithm chosen and the time each one took, so a
/// later process on the same device and driver reuses the measurements.
extension ConvolutionTuner {
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
    func load() -> [(key: String, choice: ConvolutionChoice)] {
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
    func save() {
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
                return warnUnwritable(url, String(cString: strerror(errno)).lowercased())
            }
        } catch {
            try? FileManager.default.removeItem(at: temporary)
            warnUnwritable(url, "\((error as NSError).localizedDescription)")
        }
    }

    /// Says once per process and folder that the choices stay in memory.
    private func warnUnwritable(_ url: URL, _ reason: String) {
        let first = state.withLock { state in defer { state.warnedUnwritable = true }; return !state.warnedUnwritable }
        if first {
            FileHandle.standardError.write(Data("kiln: cannot write the tuning choices to \(url.path) (\(reason)); they are kept in memory only\n".utf8))
        }
    }
}
