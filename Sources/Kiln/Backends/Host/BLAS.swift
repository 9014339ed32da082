import CBLAS

/// OpenBLAS's single-precision GEMM, loaded on first use (see Sources/CBLAS/loader.c for why Kiln loads it
/// itself).
enum BLAS {
    /// Loads OpenBLAS, or throws why it cannot be.
    static func load() throws {
        guard kiln_blas_load() == 0 else {
            throw KilnError.invalidArgument(kiln_blas_error().map { String(cString: $0) } ?? "OpenBLAS could not be loaded")
        }
    }

    /// The kernel set in use, e.g. "SkylakeX", and whether Kiln chose it because OpenBLAS's own detection
    /// would not have.
    static var core: String {
        let core = String(cString: kiln_blas_core())
        return kiln_blas_requested_core() == nil ? core : "\(core), chosen from the CPU's features"
    }

    static func setThreads(_ threads: Int) { kiln_blas_set_threads(Int32(threads)) }

    /// Row-major `c = alpha · op(a) · op(b) + beta · c`. The caller has loaded OpenBLAS.
    static func sgemm(transposeA: Bool = false, transposeB: Bool = false, m: Int, n: Int, k: Int, alpha: Float = 1,
                      a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
                      beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int) {
        kiln_sgemm(transposeA ? 1 : 0, transposeB ? 1 : 0, Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb),
                   beta, c, Int32(ldc))
    }
}
