// Open MPI, loaded at run time. See loader.c for why it is not linked.
#ifndef KILN_MPI_H
#define KILN_MPI_H

#include <stddef.h>

/// Loads libmpi once (thread-safe). Returns 0 on success; otherwise kiln_mpi_error() says why.
int kiln_mpi_load(void);
/// Why loading or the last call failed, or NULL.
const char *kiln_mpi_error(void);

/// MPI_Init_thread asking for MPI_THREAD_FUNNELED (every MPI call comes from the thread that initialised).
/// Returns 0 on success.
int kiln_mpi_init(void);
/// MPI_Finalize, once, if initialised.
void kiln_mpi_finalize(void);
/// MPI_Abort on MPI_COMM_WORLD: ends every rank of the job.
void kiln_mpi_abort(int code);

int kiln_mpi_rank(void);
int kiln_mpi_size(void);
/// "Open MPI v4.1.4, ..." (MPI_Get_library_version).
const char *kiln_mpi_library_version(void);

/// Element types and reductions of the calls below.
enum { KILN_MPI_FLOAT = 0, KILN_MPI_DOUBLE = 1, KILN_MPI_BYTE = 2 };
enum { KILN_MPI_SUM = 0, KILN_MPI_MAX = 1, KILN_MPI_MIN = 2 };

/// In-place MPI_Allreduce over MPI_COMM_WORLD. Every call returns 0 on success, else an MPI error code
/// (kiln_mpi_error() then holds its text).
int kiln_mpi_allreduce(void *buffer, int count, int type, int op);
/// Starts an in-place MPI_Iallreduce; *request receives its handle.
int kiln_mpi_iallreduce(void *buffer, int count, int type, int op, void **request);
/// MPI_Test: *done is set to 1 once the request completed (the handle is then released).
int kiln_mpi_test(void **request, int *done);
/// MPI_Wait.
int kiln_mpi_wait(void **request);
/// MPI_Bcast from `root`.
int kiln_mpi_bcast(void *buffer, int count, int type, int root);
/// MPI_Allgather of `count` elements from every rank into `receive` (size · count elements).
int kiln_mpi_allgather(const void *send, void *receive, int count, int type);
/// MPI_Barrier.
int kiln_mpi_barrier(void);

#endif
