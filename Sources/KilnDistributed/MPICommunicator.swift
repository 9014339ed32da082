import CMPI
import Foundation
import Kiln

/// Where this process sits in a job started by Open MPI's `mpirun`, from the variables it sets.
public struct MPIJob: Equatable, Sendable {
    public var rank: Int
    public var size: Int
    /// The rank among the job's processes on this machine, and how many there are: what picks a GPU.
    public var localRank: Int
    public var localSize: Int

    public init(rank: Int, size: Int, localRank: Int, localSize: Int) {
        (self.rank, self.size, self.localRank, self.localSize) = (rank, size, localRank, localSize)
    }

    /// The job `mpirun` started this process in, or nil when it was not started by Open MPI's launcher.
    public static func fromEnvironment(_ environment: [String: String] = ProcessInfo.processInfo.environment) -> MPIJob? {
        let number = { (name: String) in environment[name].flatMap { Int($0) } }
        guard let rank = number("OMPI_COMM_WORLD_RANK"), let size = number("OMPI_COMM_WORLD_SIZE") else { return nil }
        return MPIJob(rank: rank, size: size, localRank: number("OMPI_COMM_WORLD_LOCAL_RANK") ?? rank,
                      localSize: number("OMPI_COMM_WORLD_LOCAL_SIZE") ?? size)
    }

    /// Whether the environment says another MPI's launcher (MPICH's Hydra, Slurm's PMI) started the process.
    public static func startedByAnotherMPI(_ environment: [String: String] = ProcessInfo.processInfo.environment) -> Bool {
        environment["OMPI_COMM_WORLD_SIZE"] == nil && (environment["PMI_SIZE"] != nil || environment["PMIX_RANK"] != nil)
    }
}

/// The collectives of data-parallel training over Open MPI's MPI_COMM_WORLD. libmpi is loaded when the
/// first communicator starts (Sources/CMPI), so that Kiln runs without MPI installed. Every call must come
/// from the thread that called `start` (MPI_THREAD_FUNNELED).
public final class MPICommunicator: Communicator, @unchecked Sendable {
    public let rank: Int
    public let size: Int

    private init(rank: Int, size: Int) {
        self.rank = rank
        self.size = size
    }

    /// Loads Open MPI and initialises it (MPI_Init_thread), or raises an error that says what is missing.
    public static func start() throws -> MPICommunicator {
        guard kiln_mpi_load() == 0 else { throw DataParallelError.communication(lastError("Open MPI could not be loaded")) }
        guard kiln_mpi_init() == 0 else { throw DataParallelError.communication(lastError("MPI_Init_thread failed")) }
        return MPICommunicator(rank: Int(kiln_mpi_rank()), size: Int(kiln_mpi_size()))
    }

    /// The MPI library's own description ("Open MPI v4.1.4, package: ...").
    public var libraryVersion: String { String(cString: kiln_mpi_library_version()) }

    /// MPI_Finalize: the last MPI call of the process.
    public func finish() { kiln_mpi_finalize() }

    /// Ends every rank of the job (MPI_Abort) with exit code `code`: what a rank that failed alone does, so
    /// that the others do not wait for it in their next collective.
    public func abort(code: Int32) -> Never {
        kiln_mpi_abort(code)
        exit(code)
    }

    public func allReduceSum(_ values: UnsafeMutableBufferPointer<Float>) throws {
        try check(kiln_mpi_allreduce(values.baseAddress, try count(values.count), Int32(KILN_MPI_FLOAT), Int32(KILN_MPI_SUM)))
    }

    public func allReduceSum(_ values: UnsafeMutableBufferPointer<Double>) throws {
        try check(kiln_mpi_allreduce(values.baseAddress, try count(values.count), Int32(KILN_MPI_DOUBLE), Int32(KILN_MPI_SUM)))
    }

    public func startAllReduceSum(_ values: UnsafeMutableBufferPointer<Float>) throws -> any CommunicationRequest {
        var handle: UnsafeMutableRawPointer?
        try check(kiln_mpi_iallreduce(values.baseAddress, try count(values.count), Int32(KILN_MPI_FLOAT), Int32(KILN_MPI_SUM), &handle))
        return MPIRequest(handle: handle)
    }

    public func broadcast(_ bytes: UnsafeMutableRawBufferPointer, root: Int) throws {
        try check(kiln_mpi_bcast(bytes.baseAddress, try count(bytes.count), Int32(KILN_MPI_BYTE), Int32(root)))
    }

    public func allGather(_ values: [Double]) throws -> [[Double]] {
        var received = [Double](repeating: 0, count: values.count * size)
        let sent = try count(values.count)
        try values.withUnsafeBufferPointer { send in
            try received.withUnsafeMutableBufferPointer { receive in
                try check(kiln_mpi_allgather(send.baseAddress, receive.baseAddress, sent, Int32(KILN_MPI_DOUBLE)))
            }
        }
        return (0..<size).map { Array(received[($0 * values.count)..<(($0 + 1) * values.count)]) }
    }

    /// MPI_Barrier: returns once every rank has called it.
    public func barrier() throws { try check(kiln_mpi_barrier()) }

    /// MPI counts are 32-bit.
    private func count(_ value: Int) throws -> Int32 {
        guard let count = Int32(exactly: value) else {
            throw DataParallelError.communication("a message of \(value) elements is beyond MPI's 32-bit counts")
        }
        return count
    }

    fileprivate static func lastError(_ fallback: String) -> String {
        kiln_mpi_error().map { String(cString: $0) } ?? fallback
    }
}

private func check(_ code: Int32) throws {
    guard code == 0 else { throw DataParallelError.communication(MPICommunicator.lastError("error \(code)")) }
}

/// A started MPI_Iallreduce.
private final class MPIRequest: CommunicationRequest {
    private var handle: UnsafeMutableRawPointer?
    private var done = false

    init(handle: UnsafeMutableRawPointer?) { self.handle = handle }

    func test() throws -> Bool {
        guard !done else { return true }
        var flag: Int32 = 0
        try check(kiln_mpi_test(&handle, &flag))
        done = flag != 0
        return done
    }

    func wait() throws {
        guard !done else { return }
        try check(kiln_mpi_wait(&handle))
        done = true
    }
}
