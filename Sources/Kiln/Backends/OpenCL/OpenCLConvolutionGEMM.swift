import KilnCL

/// Tile sizes of the implicit-GEMM kernels (Kernels/conv_gemm.cl), passed to the compiler as -D settings.
struct ImplicitGEMMTiles: Sendable {
    /// Output tile: rows (channels) x columns (pixels), and the reduction step staged in local memory.
    var m: Int, n: Int, k: Int
    /// Outputs per work-item along rows and columns.
    var rowsPerItem: Int, columnsPerItem: Int

    /// 64x64 tiles, 4x4 outputs per work-item: 256 work-items, 8.5 KiB of local memory.
    static let large = ImplicitGEMMTiles(m: 64, n: 64, k: 16, rowsPerItem: 4, columnsPerItem: 4)
    /// 16x128 tiles, 2x4 outputs per work-item, for passes with few rows (the first layers' channels), where
    /// most of a 64-row tile would be padding.
    static let narrow = ImplicitGEMMTiles(m: 16, n: 128, k: 16, rowsPerItem: 2, columnsPerItem: 4)
    /// 32x32 tiles for devices whose work-groups stop below 256 work-items: 64 work-items.
    static let small = ImplicitGEMMTiles(m: 32, n: 32, k: 16, rowsPerItem: 4, columnsPerItem: 4)

    /// The work-group: columns along dimension 0, rows along dimension 1.
    var local: [Int] { [n / columnsPerItem, m / rowsPerItem, 1] }
    var workGroupSize: Int { (n / columnsPerItem) * (m / rowsPerItem) }
    var localMemoryBytes: Int { 4 * k * (m + 1 + n + 1 + 3) }
    var options: String { "-DTILE_M=\(m) -DTILE_N=\(n) -DTILE_K=\(k) -DWPT_M=\(rowsPerItem) -DWPT_N=\(columnsPerItem)" }

    /// The ND-range covering an output of `rows` x `columns` per group, `depth` groups (or group slices).
    func global(rows: Int, columns: Int, depth: Int) -> [Int] {
        [(columns + n - 1) / n * local[0], (rows + m - 1) / m * local[1], depth]
    }

    /// The tiles for an output of `rows` rows per group on this device, or nil when it cannot run even the
    /// small ones.
    static func fitting(_ info: CLDeviceInfo, rows: Int = .max) -> ImplicitGEMMTiles? {
        (rows <= narrow.m ? [narrow, large, small] : [large, small])
            .first { $0.workGroupSize <= info.maxWorkGroupSize && $0.localMemoryBytes <= info.localMemoryBytes }
    }
}

/// Convolution as an implicit GEMM (Kernels/conv_gemm.cl): no im2col workspace, one launch per pass for
/// every group at once, bias fused into the forward pass.
extension OpenCLBackend {
    /// Smallest slice of the filter-gradient reduction worth a work-group of its own, in (image, pixel) pairs.
    static let minimumFilterSlice = 256
    /// Tiles to use instead of the chosen ones, so that tests run every configuration on one device.
    static let implicitGEMMTilesOverride = Locked<ImplicitGEMMTiles?>(nil)

    private func gemmTiles(rows: Int) throws -> ImplicitGEMMTiles {
        if let tiles = Self.implicitGEMMTilesOverride.withLock({ $0 }) { return tiles }
        guard let tiles = ImplicitGEMMTiles.fitting(context.device.info, rows: rows) else {
            throw KilnError.invalidArgument("conv2d: \(name) cannot run the implicit-GEMM kernels (work-group or local memory too small)")
        }
        return tiles
    }

    private func gemmKernels(_ tiles: ImplicitGEMMTiles) -> ConvGemmKernels {
        ConvGemmKernels(self, options: tiles.options)
    }

    /// The implicit GEMM, each pass.
    func implicitGEMM(_ call: ConvolutionCall, into output: Tensor) throws {
        try call.run(into: output, forward: implicitGEMMForward, backwardData: implicitGEMMBackwardData,
                     backwardFilter: implicitGEMMBackwardFilter)
    }

    private func implicitGEMMForward(_ x: Tensor, _ weight: Tensor, _ bias: Tensor?, _ s: Conv2DShape, _ y: Tensor) throws {
        let tiles = try gemmTiles(rows: s.groupOutputChannels)
        // Without a bias the weight stands in for the unused argument.
        try gemmKernels(tiles).convGemmForward(
            global: tiles.global(rows: s.groupOutputChannels, columns: s.batch * s.outputPixels, depth: s.geometry.groups),
            local: tiles.local, x: x, weight: weight, bias: bias ?? weight, hasBias: bias == nil ? 0 : 1, y: y,
            convGemmShape: ConvGemmShape(s), convWindow: ConvWindow(s))
    }

    private func implicitGEMMBackwardData(_ dy: Tensor, _ weight: Tensor, _ s: Conv2DShape, _ dx: Tensor) throws {
        let tiles = try gemmTiles(rows: s.groupInputChannels)
        // One slice of the range per stride phase (h mod s_h, w mod s_w), sized for the largest, phase (0, 0).
        let g = s.geometry
        let phaseRows = (s.inputHeight + g.strideHeight - 1) / g.strideHeight
        let phaseColumns = (s.inputWidth + g.strideWidth - 1) / g.strideWidth
        try gemmKernels(tiles).convGemmBackwardData(
            global: tiles.global(rows: s.groupInputChannels, columns: s.batch * phaseRows * phaseColumns,
                                 depth: s.geometry.groups * g.strideHeight * g.strideWidth),
            local: tiles.local, dy: dy, weight: weight, dx: dx, convGemmShape: ConvGemmShape(s), convWindow: ConvWindow(s))
    }

    private func implicitGEMMBackwardFilter(_ x: Tensor, _ dy: Tensor, _ s: Conv2DShape, _ dw: Tensor, _ accumulate: Bool) throws {
        let tiles = try gemmTiles(rows: s.groupOutputChannels)
        let splits = filterSplits(s, tiles)
        // With one slice the kernel writes dw itself and never touches the partials: dw's buffer stands in.
        let partials = splits > 1 ? try Tensor.empty([splits * dw.count], on: device) : Tensor(storage: dw.storage, offset: 0, shape: [1])
        try gemmKernels(tiles).convGemmBackwardFilter(
            global: tiles.global(rows: s.groupOutputChannels, columns: s.patchSize, depth: s.geometry.groups * splits),
            local: tiles.local, x: x, dy: dy, dweight: dw, accumulate: accumulate ? 1 : 0, partials: partials, splits: splits,
            convGemmShape: ConvGemmShape(s), convWindow: ConvWindow(s))
        if splits > 1 {
            try gemmKernels(tiles).convGemmSumSplits(items: dw.count, partials: partials, dweight: dw, count: dw.count, splits: splits,
                                                     accumulate: accumulate ? 1 : 0)
        }
    }

    /// Slices of the filter-gradient reduction: enough work-groups for about four per compute unit, each
    /// slice still long enough to amortise its tile loads, and the partial sums within the workspace bound.
    func filterSplits(_ s: Conv2DShape, _ tiles: ImplicitGEMMTiles) -> Int {
        let outputTiles = (s.groupOutputChannels + tiles.m - 1) / tiles.m * ((s.patchSize + tiles.n - 1) / tiles.n) * s.geometry.groups
        let wanted = (4 * Swift.max(context.device.info.computeUnits, 1) + outputTiles - 1) / outputTiles
        let longest = s.batch * s.outputPixels / Self.minimumFilterSlice
        let weights = s.outputChannels * s.patchSize
        let fitting = Self.convolutionWorkspaceElements / Swift.max(weights, 1)
        return Swift.max(1, Swift.min(wanted, longest, fitting))
    }

}

extension ConvGemmShape {
    init(_ s: Conv2DShape) {
        self.init(batch: s.batch, channels: s.inputChannels, height: s.inputHeight, width: s.inputWidth, cg: s.groupInputChannels,
                  outChannels: s.outputChannels, og: s.groupOutputChannels)
    }
}
