import ArgumentParser
import Foundation
import Kiln
import KilnDistributed

/// `--distributed`: whether `kiln train` started by mpirun trains data-parallel over the job's ranks.
enum DistributedMode: String, ExpressibleByArgument, CaseIterable {
    case auto, off
}

/// The options of data-parallel training, which are not part of a run's configuration: a checkpoint resumes
/// under any number of ranks.
struct DistributedArguments: ParsableArguments {
    @Option(help: ArgumentHelp("auto: under mpirun -np N (N ≥ 2), train data-parallel over the ranks; off: one process, as without mpirun.",
                               valueName: "auto|off"))
    var distributed: DistributedMode = .auto
    @Flag(name: .customLong("sync-bn"), help: "Data-parallel only: batch norms use the statistics of the global batch, not each rank's.")
    var syncBatchNorm = false
    @Option(name: .customLong("bucket-mb"), help: "Data-parallel only: megabytes of gradients per all-reduce (default: 25, as PyTorch's DDP).")
    var bucketMegabytes: Double = 25

    func validate() throws {
        guard bucketMegabytes > 0, bucketMegabytes.isFinite else { throw ValidationError("--bucket-mb must be positive, not \(bucketMegabytes)") }
    }
}

/// The job a `kiln train` process is a rank of: Open MPI started, the rank's output and threads set.
final class DistributedTraining {
    let job: MPIJob
    let communicator: MPICommunicator
    let dataParallel: DataParallel
    /// Set when the job failed with an error every rank reached at the same point (`DataParallelError.isReachedByEveryRank`).
    var failedTogether = false

    private init(job: MPIJob, communicator: MPICommunicator, dataParallel: DataParallel) {
        (self.job, self.communicator, self.dataParallel) = (job, communicator, dataParallel)
    }

    /// Starts data-parallel training when mpirun started this process with two ranks or more and the
    /// arguments allow it; nil for a single process (with a warning for the options that then do nothing).
    static func start(_ arguments: DistributedArguments, threads: Int?) throws -> DistributedTraining? {
        let job = MPIJob.fromEnvironment()
        guard arguments.distributed == .auto, let job, job.size > 1 else {
            if MPIJob.startedByAnotherMPI() {
                printWarning("this process was started by an MPI other than Open MPI, which Kiln does not support: training as a single process")
            }
            if arguments.syncBatchNorm {
                printWarning("--sync-bn has no effect in a single process (start kiln train with mpirun -np N to train data-parallel)")
            }
            return nil
        }
        let communicator = try MPICommunicator.start()
        if communicator.rank != 0 {
            // Rank 0 speaks for the job; the others keep standard error, with their rank on each line.
            fflush(nil)
            let null = open("/dev/null", O_WRONLY)
            if null >= 0 { dup2(null, STDOUT_FILENO) }
            errorLabel = "rank \(communicator.rank): "
        }
        // Each rank's host backend gets its share of this machine's cores.
        if threads == nil {
            HostBackend.shared.threads = Swift.max(1, ProcessInfo.processInfo.activeProcessorCount / Swift.max(job.localSize, 1))
        }
        let dataParallel = DataParallel(communicator: communicator, bucketBytes: Int(arguments.bucketMegabytes * 1_048_576),
                                        synchronizesBatchNorm: arguments.syncBatchNorm)
        return DistributedTraining(job: job, communicator: communicator, dataParallel: dataParallel)
    }

    /// The device of this rank for the configuration's device string: `auto` picks by the local rank.
    func device(for option: String) throws -> Device {
        option.lowercased() == "auto" ? Device.auto(localRank: job.localRank) : try DeviceOption.parse(option)
    }

    /// What the job's first lines say.
    func describe(device: Device, batchSize: Int) throws -> String {
        let share = batchSize / job.size
        return "data-parallel: \(job.size) ranks (\(communicator.libraryVersion)); global batch \(batchSize) = \(job.size) × \(share); "
            + "gradients all-reduced in buckets of \(String(format: "%g", Double(dataParallel.bucketBytes) / 1_048_576)) MB; "
            + "batch norm \(dataParallel.synchronizesBatchNorm ? "synchronised over the ranks (--sync-bn)" : "per rank")"
    }

    /// Ends the job after `kiln train` returned or failed. Outcomes every rank reaches together (a stop, a
    /// non-finite loss) end MPI normally; any other failure may be this rank's alone, and the others would
    /// wait for it in their next collective, so it aborts the whole job with the exit code.
    func end(after error: Error?) -> Error? {
        fflush(nil)
        guard let error else {
            communicator.finish()
            return nil
        }
        if failedTogether || (error as? ExitCode).map({ TrainCommand.exitCodesReachedTogether.contains($0.rawValue) }) == true {
            communicator.finish()
            return error
        }
        let code = (error as? ExitCode)?.rawValue ?? ExitCode.failure.rawValue
        communicator.abort(code: code == 0 ? 1 : code)
    }
}
