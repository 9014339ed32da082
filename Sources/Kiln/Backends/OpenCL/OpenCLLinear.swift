import KilnCL

/// A fully connected layer's forward in one launch (Kernels/linear.cl): the product, the bias and the ReLU,
/// for layers of up to a million weights (a classifier head), where CLBlast's tiles cost more than the
/// product and the bias and ReLU would be two more launches. Larger layers keep CLBlast's GEMM.
extension OpenCLBackend: LinearBackend {
    public func linearForward(_ x: Tensor, weight: Tensor, bias: Tensor?, relu: Bool, into y: Tensor) throws {
        let (n, inputs, outputs) = (x.shape[0], x.shape[1], weight.shape[0])
        guard n > 0, outputs > 0, inputs > 0, inputs * outputs <= 1 << 20 else {
            return try linearForwardUnfused(x, weight: weight, bias: bias, relu: relu, into: y)
        }
        try fusedLinearForward(x, weight: weight, bias: bias, relu: relu, block: Self.linearBlock(on: context.device.info), into: y)
    }

    /// The one-launch kernel with a work-item block of `block` (tests run every block on one device).
    func fusedLinearForward(_ x: Tensor, weight: Tensor, bias: Tensor?, relu: Bool, block: LinearBlock, into y: Tensor) throws {
        let (n, inputs, outputs) = (x.shape[0], x.shape[1], weight.shape[0])
        let items = (n + block.rows - 1) / block.rows * ((outputs + block.columns - 1) / block.columns)
        // Without a bias the weight stands in for the unused argument.
        try LinearKernels(self, options: block.options).linearForward(
            items: items, x: x, weight: weight, bias: bias ?? weight, hasBias: bias == nil ? 0 : 1, y: y, batch: n,
            inFeatures: inputs, outFeatures: outputs, relu: relu ? 1 : 0)
    }

    /// A work-item's block: rows x columns of outputs, each a vector of `width` partial sums, within about
    /// half the vector registers of a CPU driver (16 with AVX-512, AVX2's 16 narrower ones); a GPU, whose
    /// lanes are work-items, gets a small block of short vectors.
    struct LinearBlock: CaseIterable {
        static let small = LinearBlock(width: 4, rows: 2, columns: 2)
        static let allCases = [LinearBlock(width: 16, rows: 4, columns: 4), LinearBlock(width: 8, rows: 2, columns: 4), small]

        let width: Int, rows: Int, columns: Int
        /// Made once per block, so that a launch builds no string.
        let options: String

        init(width: Int, rows: Int, columns: Int) {
            (self.width, self.rows, self.columns) = (width, rows, columns)
            options = "-DLINEAR_VEC=\(width) -DLINEAR_ROWS=\(rows) -DLINEAR_COLS=\(columns)"
        }
    }

    static func linearBlock(on device: CLDeviceInfo) -> LinearBlock {
        LinearBlock.allCases.first { $0.width <= device.preferredFloatVectorWidth } ?? .small
    }
}
