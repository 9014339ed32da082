// OpenBLAS, loaded at run time. See loader.c for why it is not linked.
#ifndef KILN_BLAS_H
#define KILN_BLAS_H

/// Loads OpenBLAS once (thread-safe). Returns 0 on success; otherwise kiln_blas_error() says why.
int kiln_blas_load(void);
/// Why loading failed, or NULL.
const char *kiln_blas_error(void);

/// Row-major C = alpha·op(A)·op(B) + beta·C, op(X) = Xᵀ when transpose_x is nonzero. Needs kiln_blas_load() == 0.
void kiln_sgemm(int transpose_a, int transpose_b, int m, int n, int k, float alpha, const float *a, int lda,
                const float *b, int ldb, float beta, float *c, int ldc);

/// OpenBLAS's own thread count, and setting it.
int kiln_blas_threads(void);
void kiln_blas_set_threads(int threads);
/// The kernel set OpenBLAS runs ("SkylakeX", "Haswell", ...), or "unknown".
const char *kiln_blas_core(void);
/// The core type Kiln asked for through OPENBLAS_CORETYPE, or NULL when OpenBLAS chose by itself.
const char *kiln_blas_requested_core(void);

#endif
