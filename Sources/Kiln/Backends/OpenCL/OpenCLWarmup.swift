import Foundation
import KilnCL

/// What a stretch of work needs on an OpenCL device before it can run at speed: the programs to build, the
/// CLBlast products whose kernels CLBlast compiles on first use, and the convolution shapes the tuner will
/// time.
public struct KernelPlan: Sendable {
    var work = CLWorkPlan()
    var tunings: [PlannedTuning] = []

    public var programCount: Int { work.programs.count }
    public var tuningCount: Int { tunings.count }
}

/// What `prepare` did.
public struct PreparationReport: Sendable {
    /// Programs compiled from source, and loaded from a binary cache (Kiln's or the driver's: both read as
    /// loaded only when Kiln's own cache served them).
    public var compiledPrograms = 0
    public var loadedPrograms = 0
    /// CLBlast products computed once so that CLBlast compiled their kernels.
    public var libraryProducts = 0
    public var tunedShapes = 0
    public var compileSeconds = 0.0
    public var tuneSeconds = 0.0
    /// `Warmup.prepareAhead` only: the real training and inference step after the preparation.
    public var firstRunSeconds = 0.0
    /// `Warmup.prepareAhead` only: programs built and shapes tuned by those steps, which the plan should
    /// have left none of.
    public var workLeftToTheSteps = 0
    /// Where the built programs are kept between processes (`OpenCLBackend.programCacheFolder`).
    public var cacheFolder: URL?
    /// Each program built, in the order they finished.
    public var builds: [CLBuildReport] = []
}

/// Progress of a preparation, as `prepare` reports it.
public enum PreparationProgress: Sendable {
    case compiling(done: Int, total: Int)
    case tuning(done: Int, total: Int)
}

extension OpenCLBackend {
    /// Records what `body` would build and tune, with every launch skipped (see `CLContext.plan`: device
    /// memory `body` writes holds undefined values afterwards).
    public func plan(_ body: () throws -> Void) throws -> KernelPlan {
        plannedTunings.withLock { $0 = [] }
        defer { plannedTunings.withLock { $0 = [] } }
        let work = try context.plan(body)
        return KernelPlan(work: work, tunings: plannedTunings.withLock { $0 })
    }

    /// The programs (CLBlast counted as one) and tunings of `plan` not done yet in this process.
    public func remainingWork(in plan: KernelPlan) -> (programs: Int, tunings: Int) {
        let remaining = remainingDetail(in: plan)
        return (remaining.programs, remaining.tunings)
    }

    /// `remainingWork` with the CLBlast products counted apart too.
    private func remainingDetail(in plan: KernelPlan) -> (programs: Int, products: Int, tunings: Int) {
        let (programs, products) = context.remainingWork(in: plan.work)
        let tunings = plan.tunings.filter { tuning in
            if case .tune = convolutionDecision(for: tuning.shape, pass: tuning.pass) { return true } else { return false }
        }
        return (programs.count + (products.isEmpty ? 0 : 1), products.count, tunings.count)
    }

    /// Builds the programs of `plan` on as many threads as the machine has cores, while CLBlast compiles
    /// its kernels on one of them, then has the tuner time every planned convolution shape it has not met.
    public func prepare(_ plan: KernelPlan, progress: (@Sendable (PreparationProgress) -> Void)? = nil) throws -> PreparationReport {
        var report = PreparationReport(cacheFolder: programCacheFolder)
        let remaining = remainingDetail(in: plan)
        let (programTotal, tuningTotal) = (remaining.programs, remaining.tunings)
        report.libraryProducts = remaining.products
        let before = context.buildCounts
        let start = ContinuousClock.now
        if programTotal > 0 {
            let done = Locked(0)
            let builds = Locked<[CLBuildReport]>([])
            let observer = context.buildObserver
            context.buildObserver = { build in
                builds.withLock { $0.append(build) }
                observer?(build)
            }
            defer { context.buildObserver = observer }
            progress?(.compiling(done: 0, total: programTotal))
            try context.prepare(plan.work, threads: ProcessInfo.processInfo.activeProcessorCount) {
                let count = done.withLock { count in count += 1; return count }
                progress?(.compiling(done: count, total: programTotal))
            }
            report.builds = builds.withLock { $0 }
        }
        let after = context.buildCounts
        report.compiledPrograms = after.compiled - before.compiled
        report.loadedPrograms = after.loaded - before.loaded
        report.compileSeconds = Kiln.seconds(ContinuousClock.now - start)
        let tuneStart = ContinuousClock.now
        if tuningTotal > 0 {
            progress?(.tuning(done: 0, total: tuningTotal))
            for tuning in plan.tunings where try tune(tuning) {
                report.tunedShapes += 1
                progress?(.tuning(done: report.tunedShapes, total: tuningTotal))
            }
        }
        report.tuneSeconds = Kiln.seconds(ContinuousClock.now - tuneStart)
        return report
    }

    /// Programs built and shapes tuned so far in this process: a training step that changes it did work
    /// that later steps will not repeat.
    public var warmupWorkDone: Int {
        let builds = context.buildCounts
        return builds.compiled + builds.loaded + convolutionTuner.tunedCount
    }

    /// Where compiled programs are kept between processes: the driver's own cache where it keeps whole
    /// builds (POCL), else Kiln's.
    public var programCacheFolder: URL? {
        context.device.info.driverCachesWholeBuilds ? context.device.info.driverProgramCache : context.diskCache?.directory
    }
}
