// OpenBLAS picks its kernels once, when it is loaded, from the CPU's family and model. Hypervisors often
// report a generic model ("Intel Xeon Processor"), and then it falls back to its Prescott (SSE3) kernels:
// about a fifth of the AVX-512 kernels' speed on the same cores (58 vs 297 GFLOP/s measured here). So Kiln
// loads it itself, on first use, after naming the core type that the CPU's feature flags support, unless
// the user already chose one with OPENBLAS_CORETYPE.
#include "KilnBLAS.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

enum { ROW_MAJOR = 101, NO_TRANS = 111, TRANS = 112 };

typedef void (*sgemm_fn)(int, int, int, int, int, int, float, const float *, int, const float *, int, float, float *, int);
typedef void (*set_threads_fn)(int);
typedef int (*get_threads_fn)(void);
typedef char *(*corename_fn)(void);

static pthread_once_t once = PTHREAD_ONCE_INIT;
static sgemm_fn sgemm;
static set_threads_fn set_threads;
static get_threads_fn get_threads;
static corename_fn corename;
static const char *requested_core;
static char error_text[512];

static const char *core_for_this_cpu(void) {
#if defined(__x86_64__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq")
        && __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512cd"))
        return "SkylakeX";
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return "Haswell";
#endif
    return NULL;  // let OpenBLAS decide
}

static void load(void) {
    if (getenv("OPENBLAS_CORETYPE") == NULL) {
        requested_core = core_for_this_cpu();
        if (requested_core != NULL) setenv("OPENBLAS_CORETYPE", requested_core, 0);
    }
    static const char *names[] = {"libopenblas.so.0", "libopenblas.so", "libopenblasp.so.0", "libblas.so.3"};
    void *library = NULL;
    for (size_t i = 0; i < sizeof names / sizeof names[0] && library == NULL; ++i)
        library = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
    if (library == NULL) {
        snprintf(error_text, sizeof error_text, "OpenBLAS could not be loaded (%s); install libopenblas0", dlerror());
        return;
    }
    sgemm = (sgemm_fn)dlsym(library, "cblas_sgemm");
    set_threads = (set_threads_fn)dlsym(library, "openblas_set_num_threads");
    get_threads = (get_threads_fn)dlsym(library, "openblas_get_num_threads");
    corename = (corename_fn)dlsym(library, "openblas_get_corename");
    if (sgemm == NULL) snprintf(error_text, sizeof error_text, "the loaded BLAS library has no cblas_sgemm");
}

int kiln_blas_load(void) {
    pthread_once(&once, load);
    return sgemm != NULL ? 0 : -1;
}

const char *kiln_blas_error(void) { return error_text[0] != 0 ? error_text : NULL; }

void kiln_sgemm(int transpose_a, int transpose_b, int m, int n, int k, float alpha, const float *a, int lda,
                const float *b, int ldb, float beta, float *c, int ldc) {
    sgemm(ROW_MAJOR, transpose_a ? TRANS : NO_TRANS, transpose_b ? TRANS : NO_TRANS, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

int kiln_blas_threads(void) { return kiln_blas_load() == 0 && get_threads != NULL ? get_threads() : 1; }

void kiln_blas_set_threads(int threads) {
    if (kiln_blas_load() == 0 && set_threads != NULL) set_threads(threads);
}

const char *kiln_blas_core(void) { return kiln_blas_load() == 0 && corename != NULL ? corename() : "unknown"; }

const char *kiln_blas_requested_core(void) {
    kiln_blas_load();
    return requested_core;
}
