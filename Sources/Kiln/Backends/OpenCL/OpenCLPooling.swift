import KilnCL

extension OpenCLBackend: PoolingBackend {
    public func pool2dForward(_ kind: PoolKind, _ x: Tensor, geometry: Pool2DGeometry, into y: Tensor, argmax: Tensor?) throws {
        // Average pooling writes no arg-max; the output buffer stands in for the unused argument.
        let positions = argmax ?? y
        try launch("pool_forward", in: "pool.cl", count: y.count,
                   x.clArguments + y.clArguments + positions.clArguments
                   + [.uint(kind == .max ? 1 : 0), .uint(UInt32(y.count))] + poolArguments(input: x.shape, output: y.shape, geometry))
    }

    public func pool2dBackward(_ kind: PoolKind, dy: Tensor, argmax: Tensor?, geometry: Pool2DGeometry, into dx: Tensor) throws {
        let positions = argmax ?? dy
        try launch("pool_backward", in: "pool.cl", count: dx.count,
                   dy.clArguments + positions.clArguments + dx.clArguments
                   + [.uint(kind == .max ? 1 : 0), .uint(UInt32(dx.count))] + poolArguments(input: dx.shape, output: dy.shape, geometry))
    }

    private func poolArguments(input: [Int], output: [Int], _ g: Pool2DGeometry) -> [CLKernelArgument] {
        [.uint(UInt32(input[2])), .uint(UInt32(input[3])), .uint(UInt32(output[2])), .uint(UInt32(output[3])),
         .uint(UInt32(g.windowHeight)), .uint(UInt32(g.windowWidth)), .uint(UInt32(g.strideHeight)), .uint(UInt32(g.strideWidth)),
         .int(Int32(g.padHeight)), .int(Int32(g.padWidth))]
    }
}
