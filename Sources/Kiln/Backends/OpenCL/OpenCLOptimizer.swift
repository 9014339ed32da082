import Foundation
import KilnCL

extension OpenCLBackend: OptimizerBackend {
    public func applyUpdate(_ rule: UpdateRule, parameter: Tensor, gradient: Tensor, state: [Tensor], learningRate: Float,
                            step: Int, regularization: Regularization) throws {
        let (code, h) = rule.kernelCode
        let second = state.count > 1 ? state[1] : state[0]
        let (c1, c2) = (1 - Foundation.pow(h.0, Float(step)), 1 - Foundation.pow(h.1, Float(step)))
        try launch("optimizer_update", in: "optimizer.cl", count: parameter.count,
                   parameter.clArguments + gradient.clArguments + state[0].clArguments + second.clArguments
                   + [.uint(UInt32(parameter.count)), .int(code), .float(learningRate), .float(regularization.weightDecay),
                      .float(regularization.l1), .float(h.0), .float(h.1), .float(h.2), .float(c1), .float(c2)])
    }
}
