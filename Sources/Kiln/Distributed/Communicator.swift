/// The collective operations that data-parallel training needs, over the ranks (processes) of one job.
/// Kiln's implementation is `MPICommunicator` (KilnDistributed, Open MPI); every call is made from the
/// thread that trains, and every rank makes the same calls in the same order.
public protocol Communicator: AnyObject, Sendable {
    /// This process's rank, 0..<size.
    var rank: Int { get }
    /// The number of ranks.
    var size: Int { get }
    /// Replaces `values` on every rank by their element-wise sum over the ranks.
    func allReduceSum(_ values: UnsafeMutableBufferPointer<Float>) throws
    /// The same in double precision.
    func allReduceSum(_ values: UnsafeMutableBufferPointer<Double>) throws
    /// Starts `allReduceSum` without waiting for it: `values` must stay untouched until the request completes.
    func startAllReduceSum(_ values: UnsafeMutableBufferPointer<Float>) throws -> any CommunicationRequest
    /// Replaces `bytes` on every rank by rank `root`'s.
    func broadcast(_ bytes: UnsafeMutableRawBufferPointer, root: Int) throws
    /// Every rank's `values` (each rank gives as many), in rank order.
    func allGather(_ values: [Double]) throws -> [[Double]]
}

/// A started non-blocking collective.
public protocol CommunicationRequest: AnyObject {
    /// Whether it completed; also lets the library progress it (MPI progresses non-blocking collectives
    /// inside its calls).
    func test() throws -> Bool
    /// Waits for it to complete.
    func wait() throws
}

extension Communicator {
    /// The element-wise sum over the ranks of `values`.
    public func allReduceSum(_ values: [Double]) throws -> [Double] {
        var result = values
        try result.withUnsafeMutableBufferPointer { try allReduceSum($0) }
        return result
    }

    /// Rank `root`'s `values` on every rank (every rank gives an array of the same length).
    public func broadcast(_ values: [Float], root: Int = 0) throws -> [Float] {
        var result = values
        try result.withUnsafeMutableBytes { try broadcast($0, root: root) }
        return result
    }

    /// Rank `root`'s bytes on every rank, whatever their length elsewhere.
    public func broadcast(bytes: [UInt8], root: Int = 0) throws -> [UInt8] {
        var count = [Float(bitPattern: UInt32(truncatingIfNeeded: bytes.count))]
        count = try broadcast(count, root: root)
        var result = rank == root ? bytes : [UInt8](repeating: 0, count: Int(count[0].bitPattern))
        try result.withUnsafeMutableBytes { try broadcast($0, root: root) }
        return result
    }
}
