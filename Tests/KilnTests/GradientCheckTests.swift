import XCTest
@testable import Kiln

/// The gradient checker itself must fail on a wrong gradient, or it proves nothing.
final class GradientCheckTests: XCTestCase {
    func testTheCheckerAcceptsARightGradientAndRejectsAWrongOne() throws {
        let x = try Tensor([0.5, -1, 2], shape: [3])
        let right = try x * 2  // d/dx sum(x^2) = 2x
        try assertGradient("x²", of: x, analytic: right) { try weightedSum(x.map(.square), Tensor.ones([3])) }
        let wrong = try x * 2.2
        let failure = try gradientMismatch("x²", of: x, analytic: wrong) { try weightedSum(x.map(.square), Tensor.ones([3])) }
        XCTAssertNotNil(failure, "a wrong gradient must be reported")
    }
}
