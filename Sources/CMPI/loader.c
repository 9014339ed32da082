// Kiln loads Open MPI at run time, the way it loads OpenBLAS: a Kiln built on a machine without MPI, or
// run on one, works as a single process and never needs libmpi. The constants of mpi.h (MPI_COMM_WORLD,
// MPI_FLOAT, MPI_SUM, ...) are, in Open MPI, the addresses of global objects of libmpi, so they are looked
// up by name like the functions. This is Open MPI's ABI (libmpi.so.40, Open MPI 3 to 5); MPICH names its
// constants differently and is refused with a message.
#include "KilnMPI.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

typedef void *handle;  // MPI_Comm, MPI_Datatype, MPI_Op, MPI_Request, MPI_Errhandler: pointers in Open MPI

enum { THREAD_FUNNELED = 1, MAX_ERROR_STRING = 256 };
#define IN_PLACE ((void *)1)

static int (*init_thread)(int *, char ***, int, int *);
static int (*initialized)(int *);
static int (*finalized)(int *);
static int (*finalize)(void);
static int (*abort_)(handle, int);
static int (*comm_rank)(handle, int *);
static int (*comm_size)(handle, int *);
static int (*comm_set_errhandler)(handle, handle);
static int (*allreduce)(const void *, void *, int, handle, handle, handle);
static int (*iallreduce)(const void *, void *, int, handle, handle, handle, handle *);
static int (*test)(handle *, int *, void *);
static int (*wait_)(handle *, void *);
static int (*bcast)(void *, int, handle, int, handle);
static int (*allgather)(const void *, int, handle, void *, int, handle, handle);
static int (*barrier)(handle);
static int (*error_string)(int, char *, int *);
static int (*library_version)(char *, int *);

static handle comm_world, errors_return;
static handle types[3], ops[3];

static pthread_once_t once = PTHREAD_ONCE_INIT;
static int loaded;
static char error_text[512];
static char version_text[512];

#define FIND(name, symbol)                                                                      \
    do {                                                                                        \
        *(void **)&name = dlsym(library, symbol);                                               \
        if (name == NULL) {                                                                     \
            snprintf(error_text, sizeof error_text, "libmpi has no %s: Kiln needs Open MPI", symbol); \
            return;                                                                             \
        }                                                                                       \
    } while (0)

static void load(void) {
    static const char *names[] = {"libmpi.so.40", "libmpi.so"};
    void *library = NULL;
    // RTLD_GLOBAL: Open MPI's components, which it loads itself, resolve their references into libmpi.
    for (size_t i = 0; i < sizeof names / sizeof names[0] && library == NULL; ++i)
        library = dlopen(names[i], RTLD_NOW | RTLD_GLOBAL);
    if (library == NULL) {
        snprintf(error_text, sizeof error_text, "Open MPI could not be loaded (%s); install openmpi-bin", dlerror());
        return;
    }
    FIND(init_thread, "MPI_Init_thread");
    FIND(initialized, "MPI_Initialized");
    FIND(finalized, "MPI_Finalized");
    FIND(finalize, "MPI_Finalize");
    FIND(abort_, "MPI_Abort");
    FIND(comm_rank, "MPI_Comm_rank");
    FIND(comm_size, "MPI_Comm_size");
    FIND(comm_set_errhandler, "MPI_Comm_set_errhandler");
    FIND(allreduce, "MPI_Allreduce");
    FIND(iallreduce, "MPI_Iallreduce");
    FIND(test, "MPI_Test");
    FIND(wait_, "MPI_Wait");
    FIND(bcast, "MPI_Bcast");
    FIND(allgather, "MPI_Allgather");
    FIND(barrier, "MPI_Barrier");
    FIND(error_string, "MPI_Error_string");
    FIND(library_version, "MPI_Get_library_version");
    FIND(comm_world, "ompi_mpi_comm_world");
    FIND(errors_return, "ompi_mpi_errors_return");
    FIND(types[KILN_MPI_FLOAT], "ompi_mpi_float");
    FIND(types[KILN_MPI_DOUBLE], "ompi_mpi_double");
    FIND(types[KILN_MPI_BYTE], "ompi_mpi_byte");
    FIND(ops[KILN_MPI_SUM], "ompi_mpi_op_sum");
    FIND(ops[KILN_MPI_MAX], "ompi_mpi_op_max");
    FIND(ops[KILN_MPI_MIN], "ompi_mpi_op_min");
    loaded = 1;
}

int kiln_mpi_load(void) {
    pthread_once(&once, load);
    return loaded ? 0 : -1;
}

const char *kiln_mpi_error(void) { return error_text[0] != 0 ? error_text : NULL; }

/// Records the text of a failed call's code; passes the code on.
static int checked(int code, const char *call) {
    if (code != 0) {
        char text[MAX_ERROR_STRING] = "";
        int length = 0;
        if (error_string(code, text, &length) != 0) snprintf(text, sizeof text, "error %d", code);
        snprintf(error_text, sizeof error_text, "%s failed: %s", call, text);
    }
    return code;
}

int kiln_mpi_init(void) {
    if (kiln_mpi_load() != 0) return -1;
    int already = 0, provided = 0;
    initialized(&already);
    if (!already) {
        if (checked(init_thread(NULL, NULL, THREAD_FUNNELED, &provided), "MPI_Init_thread") != 0) return -1;
    }
    // Errors come back as codes, so that Kiln can name the step and the rank, instead of aborting the job.
    return checked(comm_set_errhandler(comm_world, errors_return), "MPI_Comm_set_errhandler");
}

void kiln_mpi_finalize(void) {
    if (!loaded) return;
    int started = 0, ended = 0;
    initialized(&started);
    finalized(&ended);
    if (started && !ended) finalize();
}

void kiln_mpi_abort(int code) {
    if (loaded) abort_(comm_world, code);
}

int kiln_mpi_rank(void) {
    int rank = 0;
    if (loaded) comm_rank(comm_world, &rank);
    return rank;
}

int kiln_mpi_size(void) {
    int size = 1;
    if (loaded) comm_size(comm_world, &size);
    return size;
}

const char *kiln_mpi_library_version(void) {
    if (kiln_mpi_load() != 0) return "";
    int length = 0;
    if (version_text[0] == 0 && library_version(version_text, &length) != 0) version_text[0] = 0;
    // Open MPI's text has several lines; the first names the version.
    char *newline = strchr(version_text, '\n');
    if (newline != NULL) *newline = 0;
    return version_text;
}

int kiln_mpi_allreduce(void *buffer, int count, int type, int op) {
    return checked(allreduce(IN_PLACE, buffer, count, types[type], ops[op], comm_world), "MPI_Allreduce");
}

int kiln_mpi_iallreduce(void *buffer, int count, int type, int op, void **request) {
    return checked(iallreduce(IN_PLACE, buffer, count, types[type], ops[op], comm_world, request), "MPI_Iallreduce");
}

int kiln_mpi_test(void **request, int *done) { return checked(test(request, done, NULL), "MPI_Test"); }

int kiln_mpi_wait(void **request) { return checked(wait_(request, NULL), "MPI_Wait"); }

int kiln_mpi_bcast(void *buffer, int count, int type, int root) {
    return checked(bcast(buffer, count, types[type], root, comm_world), "MPI_Bcast");
}

int kiln_mpi_allgather(const void *send, void *receive, int count, int type) {
    return checked(allgather(send, count, types[type], receive, count, types[type], comm_world), "MPI_Allgather");
}

int kiln_mpi_barrier(void) { return checked(barrier(comm_world), "MPI_Barrier"); }
