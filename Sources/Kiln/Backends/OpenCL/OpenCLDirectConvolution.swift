import KilnCL

/// Direct convolution (Kernels/conv_direct.cl) for layers with few channels per group, every pass. Each
/// layer shape gets its own program with the sizes compiled in: for the handful of layers it applies to,
/// one compile of about a second buys loops that unroll and constant index arithmetic, several times
/// faster than the GEMM paths on a reduction of 25 or 150.
extension OpenCLBackend {
    /// Whether the direct kernels take `shape`: few input channels per group (the work-item's loop over
    /// them runs unrolled), a window of at most 7x7 (the filter gradient keeps every tap in registers), and
    /// neither depthwise nor pointwise (which have kernels of their own).
    static func directConvolutionApplies(to shape: Conv2DShape) -> Bool {
        let g = shape.geometry
        return !shape.isDepthwise && !shape.isPointwise && shape.groupInputChannels <= 16 && shape.groupOutputChannels <= 256
            && g.kernelHeight * g.kernelWidth <= 49
    }

    /// The program of `shape` (all but the batch compiled in) on `device`, and its forward's channel vectors:
    /// made once per layer shape and device kind, so that a launch only looks them up.
    static func directProgram(for shape: Conv2DShape, on device: CLDeviceInfo) -> DirectProgram {
        var key = DirectProgramKey(shape: shape, vectorWidth: device.preferredFloatVectorWidth, localMemoryBytes: device.localMemoryBytes)
        key.shape.batch = 1
        if let program = directPrograms.withLock({ $0[key] }) { return program }
        let vector = channelVectors(for: key.shape, on: device)
        let program = DirectProgram(options: makeDirectConvolutionOptions(for: key.shape, vector: vector), vector: vector)
        directPrograms.withLock { $0[key] = program }
        return program
    }

    struct DirectProgram {
        /// The -D options every launch of the direct kernels names its program by.
        var options: String
        /// The forward's channel vectors; nil where it keeps pixel blocks.
        var vector: ChannelVectors?
    }

    /// What a direct program depends on: the layer's shape and the device's properties `channelVectors` reads.
    private struct DirectProgramKey: Hashable {
        var shape: Conv2DShape
        var vectorWidth: Int
        var localMemoryBytes: Int
    }

    private static let directPrograms = Locked<[DirectProgramKey: DirectProgram]>([:])

    private static func makeDirectConvolutionOptions(for s: Conv2DShape, vector: ChannelVectors?) -> String {
        let g = s.geometry
        // Without channel vectors the vector kernels are still compiled, with sizes that fit any device.
        let vector = vector ?? ChannelVectors(width: 4, pooledColumns: 1)
        let sizes: [(String, Int)] = [
            ("C_IN", s.inputChannels), ("C_OUT", s.outputChannels), ("GROUPS", g.groups), ("IN_H", s.inputHeight),
            ("IN_W", s.inputWidth), ("OUT_H", s.outputHeight), ("OUT_W", s.outputWidth), ("KH", g.kernelHeight),
            ("KW", g.kernelWidth), ("SH", g.strideHeight), ("SW", g.strideWidth), ("PT", g.padTop), ("PL", g.padLeft),
            ("DH", g.dilationHeight), ("DW", g.dilationWidth),
            ("OUT_BLOCK", registerBlock(s.groupOutputChannels)), ("IN_BLOCK", registerBlock(s.groupInputChannels)),
            ("PIXEL_BLOCK", pixelBlock), ("XP_H", paddedInput(s).height), ("XP_W", paddedInput(s).width),
            ("VEC", vector.width), ("PCOLS", vector.pooledColumns),
        ]
        return sizes.map { "-D\($0.0)=\($0.1)" }.joined(separator: " ")
    }

    /// The forward kernels with output channels in vector lanes (direct_vector_forward*): VEC channels per
    /// vector, and a work-item's block of 2 rows x 2·PCOLS columns.
    struct ChannelVectors: Hashable {
        var width: Int
        var pooledColumns: Int
    }

    /// Channel vectors for `shape` on `device`, or nil where the forward keeps its pixel blocks: vectors of 16
    /// or 8 lanes, whichever the group's output channels fill best, at least 3/4 full (6 channels take 8
    /// lanes: measured on POCL, still faster than pixel blocks), and the transposed weights of a vector in at
    /// most half the device's local memory. The block keeps its 4·PCOLS vectors of sums within about 24 of
    /// the device's vector registers (CPU drivers; a GPU, whose preferred width is 1, gets one pooled column).
    static func channelVectors(for shape: Conv2DShape, on device: CLDeviceInfo) -> ChannelVectors? {
        let outputs = shape.groupOutputChannels, g = shape.geometry
        func fill(_ width: Int) -> Double { Double(outputs) / Double((outputs + width - 1) / width * width) }
        guard let width = [16, 8].max(by: { fill($0) < fill($1) }), fill(width) >= 0.75 else { return nil }
        guard shape.groupInputChannels * g.kernelHeight * g.kernelWidth * width * 4 <= device.localMemoryBytes / 2 else { return nil }
        let registerFloats = 24 * max(1, device.preferredFloatVectorWidth)
        let widest = max(1, min(7, registerFloats / (4 * width)))
        let halfRow = (shape.outputWidth + 1) / 2
        let blocks = (halfRow + widest - 1) / widest
        return ChannelVectors(width: width, pooledColumns: (halfRow + blocks - 1) / blocks)
    }

    /// Neighbouring pixels of a row per work-item (forward and backward data).
    private static let pixelBlock = 4

    /// Work-items per row of `width` pixels.
    private static func rowBlocks(_ width: Int) -> Int { (width + pixelBlock - 1) / pixelBlock }

    /// The zero-padded input plane the filter gradient reads: every row and column a window of a vector
    /// of four output pixels touches (Kernels/conv_direct.cl, LOAD4), with room for the 8-wide load of
    /// stride 2.
    private static func paddedInput(_ s: Conv2DShape) -> (height: Int, width: Int) {
        let g = s.geometry
        let vectors = (s.outputWidth + 3) / 4
        return ((s.outputHeight - 1) * g.strideHeight + (g.kernelHeight - 1) * g.dilationHeight + 1,
                vectors * 4 * g.strideWidth + (g.kernelWidth - 1) * g.dilationWidth + 4)
    }

    /// Channels per work-item: the largest of 8, 6, 4, 3, 2, 1 that divides the group's channels.
    private static func registerBlock(_ channels: Int) -> Int {
        [8, 6, 4, 3, 2, 1].first { channels % $0 == 0 } ?? 1
    }

    /// The forward pass and 2x2 max pooling in one kernel: y is [N, C_out, ⌊OH/2⌋, ⌊OW/2⌋]. A work-item
    /// covers PIXEL_BLOCK convolution columns (half as many pooled ones), or 2·PCOLS with channel vectors.
    func directConvolutionMaxPooled(_ call: ConvolutionCall, relu: Bool, into y: Tensor) throws {
        let s = call.shape
        let program = Self.directProgram(for: s, on: context.device.info)
        let kernels = ConvDirectKernels(self, options: program.options)
        // Without a bias the weight stands in for the unused argument.
        let bias = call.bias ?? call.second, hasBias = call.bias == nil ? 0 : 1
        if let vector = program.vector {
            let blocks = s.batch * (s.outputHeight / 2) * ((s.outputWidth / 2 + vector.pooledColumns - 1) / vector.pooledColumns)
            let range = vectorRange(blocks, s, vector)
            try kernels.directVectorForwardMaxPool(global: range.global, local: range.local, x: call.first, weight: call.second,
                                                   bias: bias, hasBias: hasBias, y: y, batch: s.batch, relu: relu ? 1 : 0)
            return
        }
        let blocks = s.outputChannels / Self.registerBlock(s.groupOutputChannels)
        let pooledRowBlocks = (s.outputWidth / 2 + Self.pixelBlock / 2 - 1) / (Self.pixelBlock / 2)
        try kernels.directForwardMaxPool(items: s.batch * blocks * (s.outputHeight / 2) * pooledRowBlocks, x: call.first,
                                         weight: call.second, bias: bias, hasBias: hasBias, y: y, batch: s.batch,
                                         relu: relu ? 1 : 0)
    }

    /// The range of a channel-vector launch: `blocks` work-items along dimension 0, one row of them per
    /// (group, channel vector) along dimension 1, so that a work-group shares one vector's weights.
    private func vectorRange(_ blocks: Int, _ s: Conv2DShape, _ vector: ChannelVectors) -> (global: [Int], local: [Int]) {
        let vectors = s.geometry.groups * ((s.groupOutputChannels + vector.width - 1) / vector.width)
        return ([(blocks + reduceGroupSize - 1) / reduceGroupSize * reduceGroupSize, vectors], [reduceGroupSize, 1])
    }

    /// The direct kernels, each pass. A `relu` forward applies max(·, 0) to the result.
    func directConvolution(_ call: ConvolutionCall, into output: Tensor, relu: Bool = false) throws {
        let s = call.shape
        let program = Self.directProgram(for: s, on: context.device.info)
        let kernels = ConvDirectKernels(self, options: program.options)
        switch call.pass {
        case .forward:
            if let vector = program.vector {
                let columns = 2 * vector.pooledColumns
                let range = vectorRange(s.batch * ((s.outputHeight + 1) / 2) * ((s.outputWidth + columns - 1) / columns), s, vector)
                try kernels.directVectorForward(global: range.global, local: range.local, x: call.first, weight: call.second,
                                                bias: call.bias ?? call.second, hasBias: call.bias == nil ? 0 : 1, y: output,
                                                batch: s.batch, relu: relu ? 1 : 0)
                return
            }
            let block = Self.registerBlock(s.groupOutputChannels)
            // Without a bias the weight stands in for the unused argument.
            try kernels.directForward(items: s.batch * (s.outputChannels / block) * s.outputHeight * Self.rowBlocks(s.outputWidth),
                                      x: call.first, weight: call.second, bias: call.bias ?? call.second,
                                      hasBias: call.bias == nil ? 0 : 1, y: output, batch: s.batch, relu: relu ? 1 : 0)
        case .backwardData:
            let block = Self.registerBlock(s.groupInputChannels)
            try kernels.directBackwardData(items: s.batch * (s.inputChannels / block) * s.inputHeight * Self.rowBlocks(s.inputWidth),
                                           dy: call.first, weight: call.second, dx: output, batch: s.batch)
        case .backwardFilter:
            let plane = Self.paddedInput(s)
            let padded = try Tensor.empty([s.batch * s.inputChannels * plane.height * plane.width], on: device)
            try kernels.directPadInput(items: padded.count, x: call.first, xp: padded, batch: s.batch)
            try kernels.directBackwardFilter(groups: s.outputChannels * s.groupInputChannels, xp: padded, dy: call.second,
                                             dweight: output, batch: s.batch, accumulate: call.accumulate ? 1 : 0)
        }
    }
}
