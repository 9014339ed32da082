import Foundation
@testable import Kiln

/// The ranks of a data-parallel job as threads of the test process, so that `DataParallel`, the gradient
/// buckets and synchronised batch norm can be checked without MPI. The ranks take turns: a rank runs until
/// it reaches a collective, waits there (letting the next rank run) until every rank has given its part, and
/// the collective's result is computed from all parts as MPI would (sums in rank order). One rank runs at a
/// time, so the backends are never used from two threads at once.
final class ThreadRanks: @unchecked Sendable {
    let size: Int
    private let turn = NSCondition()
    private var parts: [Any?]
    private var arrived = 0
    private var generation = 0
    private var gathered: [Any] = []
    private var signatures: [String] = []
    private var failure: String?

    init(_ size: Int) {
        self.size = size
        parts = Array(repeating: nil, count: size)
    }

    /// Runs `body` once per rank, each on its own thread, and returns the results in rank order; a rank's
    /// error is rethrown (the other ranks' collectives then fail rather than wait for it).
    func run<T>(_ body: @escaping (ThreadCommunicator) throws -> T) throws -> [T] {
        // The ranks take turns (see above), so what they share is touched by one thread at a time.
        nonisolated(unsafe) let body = body
        nonisolated(unsafe) var results = [Result<T, Error>?](repeating: nil, count: size)
        let finished = DispatchGroup()
        for rank in 0..<size {
            finished.enter()
            let thread = Thread { [self] in
                turn.lock()
                let result = Result { try body(ThreadCommunicator(rank: rank, ranks: self)) }
                if case let .failure(error) = result, failure == nil {
                    failure = "rank \(rank) failed: \(error)"
                    turn.broadcast()
                }
                results[rank] = result
                turn.unlock()
                finished.leave()
            }
            thread.stackSize = 16 << 20
            thread.start()
        }
        finished.wait()
        return try results.map { try $0!.get() }
    }

    /// Every rank's `part` in rank order, once every rank has given one; `signature` names the collective
    /// and its size, and ranks that make different collectives at the same point (which MPI forbids) fail
    /// with both named. Called with `turn` held (by `run`).
    fileprivate func exchange(_ part: Any, signature: String, rank: Int) throws -> [Any] {
        let mine = generation
        parts[rank] = part
        if signatures.count < size { signatures = Array(repeating: "", count: size) }
        signatures[rank] = signature
        arrived += 1
        if arrived == size {
            gathered = parts.map { $0! }
            if Set(signatures).count > 1, failure == nil {
                failure = "collective \(generation) differs between the ranks: " + signatures.enumerated().map { "rank \($0): \($1)" }.joined(separator: ", ")
            }
            parts = Array(repeating: nil, count: size)
            arrived = 0
            generation += 1
            turn.broadcast()
            if let failure { throw DataParallelError.communication(failure) }
            return gathered
        }
        let deadline = Date(timeIntervalSinceNow: 120)
        while generation == mine, failure == nil {
            guard turn.wait(until: deadline) else { throw DataParallelError.communication("rank \(rank) waited 120 s for the others") }
        }
        if let failure { throw DataParallelError.communication(failure) }
        return gathered
    }
}

/// One rank of `ThreadRanks`.
final class ThreadCommunicator: Communicator, @unchecked Sendable {
    let rank: Int
    let ranks: ThreadRanks
    var size: Int { ranks.size }

    init(rank: Int, ranks: ThreadRanks) { (self.rank, self.ranks) = (rank, ranks) }

    func allReduceSum(_ values: UnsafeMutableBufferPointer<Float>) throws {
        let all = try ranks.exchange(Array(values), signature: "all-reduce of \(values.count) floats", rank: rank).map { $0 as! [Float] }
        for index in values.indices { values[index] = all.reduce(Float(0)) { $0 + $1[index] } }
    }

    func allReduceSum(_ values: UnsafeMutableBufferPointer<Double>) throws {
        let all = try ranks.exchange(Array(values), signature: "all-reduce of \(values.count) doubles", rank: rank).map { $0 as! [Double] }
        for index in values.indices { values[index] = all.reduce(0) { $0 + $1[index] } }
    }

    func startAllReduceSum(_ values: UnsafeMutableBufferPointer<Float>) throws -> any CommunicationRequest {
        try allReduceSum(values)
        return CompletedRequest()
    }

    func broadcast(_ bytes: UnsafeMutableRawBufferPointer, root: Int) throws {
        let all = try ranks.exchange(Array(bytes), signature: "broadcast of \(bytes.count) bytes from \(root)", rank: rank)
        let source = all[root] as! [UInt8]
        source.withUnsafeBytes { bytes.copyMemory(from: $0) }
    }

    func allGather(_ values: [Double]) throws -> [[Double]] {
        return try ranks.exchange(values, signature: "all-gather of \(values.count) doubles", rank: rank).map { $0 as! [Double] }
    }

    private final class CompletedRequest: CommunicationRequest {
        func test() throws -> Bool { true }
        func wait() throws {}
    }
}
