import COpenCL

// CLBlast compiles and caches its kernels on first use, and that path is not safe when several threads
// reach it at once (seen on POCL as CLBlastUnexpectedError and heap corruption). Enqueueing is cheap, so
// every CLBlast call of the process goes through this lock.
private let clblastLock = Locked(())

/// A matrix operand for `CLContext.sgemm`: a row-major matrix inside a buffer.
public struct CLMatrix {
    /// Elements from one matrix of a batch to the next (strided-batched GEMM only; 0 reuses one matrix).
    public var batchStride: Int
    public var buffer: CLBuffer
    /// Offset of the first element, in elements.
    public var offset: Int
    /// Distance between rows, in elements.
    public var leadingDimension: Int
    /// Whether the operand is used transposed.
    public var transposed: Bool

    public init(_ buffer: CLBuffer, offset: Int = 0, leadingDimension: Int, transposed: Bool = false, batchStride: Int = 0) {
        (self.buffer, self.offset, self.leadingDimension, self.transposed, self.batchStride) =
            (buffer, offset, leadingDimension, transposed, batchStride)
    }
}

extension CLContext {
    /// C = alpha * op(A) * op(B) + beta * C, row-major, through CLBlast on this context's queue.
    /// op(A) is m x k, op(B) is k x n, C is m x n; m, n and k are positive.
    public func sgemm(m: Int, n: Int, k: Int, alpha: Float = 1, a: CLMatrix, b: CLMatrix,
                      beta: Float = 0, c: CLMatrix) throws {
        precondition(m > 0 && n > 0 && k > 0, "sgemm needs positive sizes")
        if planned(.init(m: m, n: n, k: k, transposedA: a.transposed, transposedB: b.transposed, batch: nil)) { return }
        let status = try clblastLock.withLock { _ in try enqueueLibraryCall("CLBlast sgemm") { queue, event in
            CLBlastSgemm(
                CLBlastLayoutRowMajor,
                a.transposed ? CLBlastTransposeYes : CLBlastTransposeNo,
                b.transposed ? CLBlastTransposeYes : CLBlastTransposeNo,
                m, n, k, alpha,
                a.buffer.mem, a.offset, a.leadingDimension,
                b.buffer.mem, b.offset, b.leadingDimension,
                beta, c.buffer.mem, c.offset, c.leadingDimension,
                &queue, event)
        } }
        try check(status.rawValue, "CLBlastSgemm(m: \(m), n: \(n), k: \(k))")
    }

    /// `batch` independent products C_i = alpha * op(A_i) * op(B_i) + beta * C_i, where operand i starts
    /// `batchStride * i` elements after the operand's offset, in one CLBlast call.
    public func sgemmStridedBatched(m: Int, n: Int, k: Int, batch: Int, alpha: Float = 1, a: CLMatrix, b: CLMatrix,
                                    beta: Float = 0, c: CLMatrix) throws {
        precondition(m > 0 && n > 0 && k > 0 && batch > 0, "sgemmStridedBatched needs positive sizes")
        if planned(.init(m: m, n: n, k: k, transposedA: a.transposed, transposedB: b.transposed, batch: batch)) { return }
        let status = try clblastLock.withLock { _ in try enqueueLibraryCall("CLBlast sgemm (strided batched)") { queue, event in
            CLBlastSgemmStridedBatched(
                CLBlastLayoutRowMajor,
                a.transposed ? CLBlastTransposeYes : CLBlastTransposeNo,
                b.transposed ? CLBlastTransposeYes : CLBlastTransposeNo,
                m, n, k, alpha,
                a.buffer.mem, a.offset, a.leadingDimension, a.batchStride,
                b.buffer.mem, b.offset, b.leadingDimension, b.batchStride,
                beta, c.buffer.mem, c.offset, c.leadingDimension, c.batchStride,
                batch, &queue, event)
        } }
        try check(status.rawValue, "CLBlastSgemmStridedBatched(m: \(m), n: \(n), k: \(k), batch: \(batch))")
    }
}
