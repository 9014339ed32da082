import XCTest
@testable import Kiln

/// Finite-difference gradient check on the host.
///
/// `loss` maps the input to a scalar, typically `sum(forward(x) * upstream)` for a fixed random `upstream`
/// (use `weightedSum`), so that the backward's result for that upstream gradient is `analytic`. Checks
/// `samples` randomly chosen elements (all if fewer) with central differences of step `eps`.
func assertGradient(_ name: String, of input: Tensor, analytic: Tensor, eps: Float = 1e-2,
                    atol: Double = 2e-3, rtol: Double = 2e-2, samples: Int = 40, seed: UInt64 = 1,
                    loss: () throws -> Double, file: StaticString = #filePath, line: UInt = #line) throws {
    if let failure = try gradientMismatch(name, of: input, analytic: analytic, eps: eps, atol: atol, rtol: rtol,
                                          samples: samples, seed: seed, loss: loss) {
        XCTFail(failure, file: file, line: line)
    }
}

/// The first element where backward and finite differences disagree, described; nil when all agree.
func gradientMismatch(_ name: String, of input: Tensor, analytic: Tensor, eps: Float = 1e-2,
                      atol: Double = 2e-3, rtol: Double = 2e-2, samples: Int = 40, seed: UInt64 = 1,
                      loss: () throws -> Double) throws -> String? {
    guard input.device == .host else { return "\(name): gradient checks run on the host" }
    guard input.shape == analytic.shape else {
        return "\(name): gradient shape \(analytic.shape) differs from input shape \(input.shape)"
    }
    let values = input.hostBuffer
    let gradient = try analytic.toArray()
    var random = TestRandom(seed: seed)
    let indices = values.count <= samples ? Array(values.indices) : (0..<samples).map { _ in random.int(0...(values.count - 1)) }
    for i in indices {
        let original = values[i]
        values[i] = original + eps
        let plus = try loss()
        values[i] = original - eps
        let minus = try loss()
        values[i] = original
        let numeric = (plus - minus) / (2 * Double(eps))
        let exact = Double(gradient[i])
        if !(abs(numeric - exact) <= atol + rtol * abs(numeric)) {
            return "\(name): d/dx[\(i)] is \(exact) by backward, \(numeric) by finite differences"
        }
    }
    return nil
}

/// `sum(t * weights)` in Double: a scalar loss whose gradient with respect to `t` is `weights`.
func weightedSum(_ t: Tensor, _ weights: Tensor) throws -> Double {
    zip(try t.toArray(), try weights.toArray()).reduce(0) { $0 + Double($1.0) * Double($1.1) }
}
