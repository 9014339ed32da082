import Foundation
import KilnCL

extension OpenCLBackend: OptimizerBackend {
    public func applyUpdate(_ rule: UpdateRule, parameter: Tensor, gradient: Tensor, state: [Tensor], learningRate: Float,
                            step: Int, regularization: Regularization) throws {
        let (kind, h) = rule.kernelCode
        let second = state.count > 1 ? state[1] : state[0]
        let (c1, c2) = (1 - Foundation.pow(h.0, Float(step)), 1 - Foundation.pow(h.1, Float(step)))
        try optimizerKernels.optimizerUpdate(items: parameter.count, p: parameter, grad: gradient, s0: state[0], s1: second,
                                             n: parameter.count, rule: kind, lr: learningRate,
                                             weightDecay: regularization.weightDecay, l1: regularization.l1,
                                             h0: h.0, h1: h.1, h2: h.2, c1: c1, c2: c2)
    }
}
