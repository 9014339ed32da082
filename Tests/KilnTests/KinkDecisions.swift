import XCTest
@testable import Kiln

/// The number of activation inputs that the host and device copies of one model, after the same forward
/// pass, put on opposite sides of a kink (0 for ReLU and leaky ReLU, 0 and 6 for ReLU6). At such an input
/// float32 rounding (about 1e-5 apart between the backends) decides which branch's derivative the backward
/// pass takes, so the two gradients differ by a whole term there: a property of the input, not of either
/// backend. Whole-network gradient comparisons draw inputs until this is zero, then compare tightly.
func kinkDecisionsDiffering(host: any Layer, device: any Layer) throws -> Int {
    var differing = 0
    if let h = host as? ActivationLayer, let d = device as? ActivationLayer, let hostInput = h.input, let deviceInput = d.input {
        let kinks: [Float]
        switch h.activation {
        case .relu, .leakyReLU: kinks = [0]
        case .relu6: kinks = [0, 6]
        case .elu, .sigmoid, .tanh, .softplus, .swish: kinks = []
        }
        if !kinks.isEmpty {
            for (a, b) in zip(try hostInput.toArray(), try deviceInput.toArray()) where kinks.contains(where: { (a > $0) != (b > $0) }) {
                differing += 1
            }
        }
    }
    for (hostChild, deviceChild) in zip(host.children, device.children) {
        differing += try kinkDecisionsDiffering(host: hostChild.layer, device: deviceChild.layer)
    }
    return differing
}
