import XCTest
@testable import Kiln

/// Every op of the tensor API on the OpenCL backend against the host reference, on random shapes with odd
/// sizes and size-1 dimensions.
final class TensorOpsTests: XCTestCase {
    private var random = TestRandom(seed: 2024)

    /// The same values on the host and on the device.
    private func pair(_ shape: [Int], _ low: Float = -1, _ high: Float = 1) throws -> (host: Tensor, device: Tensor) {
        let values = random.floats(shape.reduce(1, *), low, high)
        return (try Tensor(values, shape: shape), try Tensor(values, shape: shape, on: try openCLDevice()))
    }

    private func compare(_ device: Tensor, _ host: Tensor, atol: Float = 1e-5, rtol: Float = 1e-4, _ context: String,
                         file: StaticString = #filePath, line: UInt = #line) throws {
        XCTAssertEqual(device.shape, host.shape, context, file: file, line: line)
        XCTAssertNotEqual(device.device, .host)
        assertClose(try device.toArray(), try host.toArray(), atol: atol, rtol: rtol, context, file: file, line: line)
    }

    func testCreationAndMoves() throws {
        let gpu = try openCLDevice()
        for _ in 0..<10 {
            let shape = random.shape()
            XCTAssertEqual(try Tensor.zeros(shape, on: gpu).toArray(), [Float](repeating: 0, count: shape.reduce(1, *)))
            XCTAssertEqual(try Tensor.ones(shape, on: gpu).toArray(), [Float](repeating: 1, count: shape.reduce(1, *)))
            XCTAssertEqual(try Tensor.full(shape, value: -2.5, on: gpu).toArray(), [Float](repeating: -2.5, count: shape.reduce(1, *)))
            let values = random.floats(shape.reduce(1, *))
            let host = try Tensor(values, shape: shape)
            let moved = try host.to(gpu)
            XCTAssertEqual(moved.device, gpu)
            XCTAssertEqual(try moved.toArray(), values)
            XCTAssertEqual(try moved.copy().toArray(), values)
            XCTAssertEqual(try moved.to(.host).toArray(), values)
            let target = try Tensor.zeros(shape, on: gpu)
            try target.assign(host)
            XCTAssertEqual(try target.toArray(), values)
        }
    }

    func testViewsShareStorage() throws {
        for device in try testDevices() {
            let t = try Tensor((0..<24).map(Float.init), shape: [4, 6], on: device)
            let rows = try t.slice(1..<3)
            XCTAssertEqual(rows.shape, [2, 6])
            XCTAssertEqual(try rows.toArray(), (6..<18).map(Float.init))
            XCTAssertEqual(try t[3].toArray(), (18..<24).map(Float.init))
            let reshaped = try t.reshaped([2, -1, 3])
            XCTAssertEqual(reshaped.shape, [2, 4, 3])
            try rows.fill(0)  // writes through the view
            XCTAssertEqual(Array(try t.toArray()[6..<18]), [Float](repeating: 0, count: 12))
            XCTAssertEqual(try t.toArray()[5], 5)
            XCTAssertEqual(try t.toArray()[18], 18)
            // Ops on views read and write at the view's offset.
            let doubled = try t[3] * 2
            XCTAssertEqual(try doubled.toArray(), (18..<24).map { Float($0 * 2) })
        }
    }

    func testBinaryOpsMatchTheHost() throws {
        for trial in 0..<20 {
            let shape = random.shape()
            let (a, da) = try pair(shape)
            var (b, db) = try pair(shape)
            for op in BinaryOp.allCases {
                if op == .div { (b, db) = try pair(shape, 0.5, 2) }
                try compare(try da.binary(op, db), try a.binary(op, b), "\(op) \(shape) trial \(trial)")
                let scalar = random.float(0.5, 2)
                try compare(try da.binary(op, scalar), try a.binary(op, scalar), "\(op) scalar \(scalar) \(shape)")
            }
        }
    }

    func testPerChannelBroadcastMatchesTheHost() throws {
        for trial in 0..<15 {
            let shape = [random.int(1...4), random.int(1...9)] + (trial % 3 == 0 ? [] : [random.int(1...7), random.int(1...7)])
            let (a, da) = try pair(shape)
            let (v, dv) = try pair([shape[1]], 0.5, 2)
            for op in BinaryOp.allCases {
                try compare(try da.binary(op, dv), try a.binary(op, v), "per-channel \(op) \(shape)")
            }
            // Spot-check the host reference itself: out[n, c, ...] = a[n, c, ...] + v[c].
            let sum = try (a + v).toArray(), av = try a.toArray(), vv = try v.toArray()
            let inner = shape.dropFirst(2).reduce(1, *)
            for i in stride(from: 0, to: sum.count, by: 7) { XCTAssertEqual(sum[i], av[i] + vv[(i / inner) % shape[1]]) }
        }
    }

    func testAxpbyMatchesTheHost() throws {
        for _ in 0..<10 {
            let shape = random.shape()
            let (x, dx) = try pair(shape)
            let (y, dy) = try pair(shape)
            let (alpha, beta) = (random.float(), random.float())
            try y.axpby(alpha: alpha, x, beta: beta)
            try dy.axpby(alpha: alpha, dx, beta: beta)
            try compare(dy, y, "axpby \(shape)")
        }
    }

    func testUnaryMapsMatchTheHost() throws {
        let positiveOnly: Set<UnaryOp> = [.sqrt, .rsqrt, .log, .reciprocal]
        for _ in 0..<10 {
            let shape = random.shape()
            let (a, da) = try pair(shape, -3, 3)
            let (p, dp) = try pair(shape, 0.1, 4)
            for op in UnaryOp.allCases {
                let (x, dx) = positiveOnly.contains(op) ? (p, dp) : (a, da)
                try compare(try dx.map(op), try x.map(op), atol: 1e-5, rtol: 1e-5, "\(op) \(shape)")
            }
        }
    }

    func testReductionsMatchTheHost() throws {
        for _ in 0..<12 {
            let shape = random.shape()
            let (a, da) = try pair(shape)
            for op in ReduceOp.allCases {
                for axis in 0..<shape.count {
                    try compare(try da.reduce(op, axis: axis), try a.reduce(op, axis: axis), "\(op) axis \(axis) of \(shape)")
                }
                try compare(try da.reduce(op), try a.reduce(op), "\(op) over all of \(shape)")
            }
        }
        // A long axis: more elements than one work-group has items.
        let (a, da) = try pair([3, 1000, 2])
        try compare(try da.sum(axis: 1), try a.sum(axis: 1), atol: 1e-4, "sum over 1000")
        XCTAssertEqual(try da.argmax(), try a.argmax())
    }

    func testReductionsAreRight() throws {
        for device in try testDevices() {
            let t = try Tensor([1, 5, 5, -2, 0, 3], shape: [2, 3], on: device)
            XCTAssertEqual(try t.sum(axis: 1).toArray(), [11, 1])
            XCTAssertEqual(try t.mean(axis: 0).toArray(), [-0.5, 2.5, 4])
            XCTAssertEqual(try t.max(axis: 1).toArray(), [5, 3])
            XCTAssertEqual(try t.min(axis: 0).toArray(), [-2, 0, 3])
            XCTAssertEqual(try t.argmax(axis: 1).toArray(), [1, 2], "ties go to the first index")
            XCTAssertEqual(try t.argmax(), 1)
            XCTAssertEqual(try t.sum(), 12)
            XCTAssertEqual(try t.reduce(.sum, axis: 1, keepingDimension: true).shape, [2, 1])
        }
    }

    func testMatmulWithEveryTransposeMatchesTheHost() throws {
        for trial in 0..<16 {
            let (m, n, k) = (random.int(1...37), random.int(1...41), random.int(1...29))
            let (ta, tb) = (trial % 2 == 1, (trial / 2) % 2 == 1)
            let (a, da) = try pair(ta ? [k, m] : [m, k])
            let (b, db) = try pair(tb ? [n, k] : [k, n])
            let expected = try matmul(a, b, transposeA: ta, transposeB: tb)
            XCTAssertEqual(expected.shape, [m, n])
            try compare(try matmul(da, db, transposeA: ta, transposeB: tb), expected, atol: 1e-4,
                        "matmul m \(m) n \(n) k \(k) transposeA \(ta) transposeB \(tb)")
        }
        // The host GEMM against a naive triple loop.
        let (a, b) = (try Tensor(random.floats(6), shape: [2, 3]), try Tensor(random.floats(12), shape: [3, 4]))
        let (av, bv) = (try a.toArray(), try b.toArray())
        let c = try matmul(a, b).toArray()
        for i in 0..<2 {
            for j in 0..<4 {
                XCTAssertEqual(c[i * 4 + j], (0..<3).map { av[i * 3 + $0] * bv[$0 * 4 + j] }.reduce(0, +), accuracy: 1e-5)
            }
        }
    }

    func testMatmulOnViews() throws {
        let gpu = try openCLDevice()
        let values = random.floats(5 * 12)
        let host = try Tensor(values, shape: [5, 12]).slice(2..<5).reshaped([6, 6])
        let device = try Tensor(values, shape: [5, 12], on: gpu).slice(2..<5).reshaped([6, 6])
        try compare(try device.matmul(device, transposeOther: true), try host.matmul(host, transposeOther: true),
                    atol: 1e-4, "matmul of an offset view")
    }

    func testTransposeMatchesTheHost() throws {
        for _ in 0..<10 {
            let shape = [random.int(1...40), random.int(1...40)]
            let (a, da) = try pair(shape)
            let t = try a.transposed()
            XCTAssertEqual(t.shape, [shape[1], shape[0]])
            XCTAssertEqual(try t.toArray()[0 * shape[0] + (shape[0] - 1)], try a.toArray()[(shape[0] - 1) * shape[1]])
            try compare(try da.transposed(), t, atol: 0, rtol: 0, "transpose \(shape)")
        }
    }
}
