/// The gradients of a model's trainable parameters, packed into buckets of about `bucketBytes` in the order
/// the backward pass completes them (the last layers first), and averaged over the ranks bucket by bucket,
/// as DistributedDataParallel does: as soon as the backward pass has finished every parameter of a bucket,
/// its gradients are copied into the bucket's host buffer (without waiting, on an OpenCL device) and, once
/// copied, all-reduced with a non-blocking call, while the backward pass goes on with the layers before.
/// `finish` waits for the rest and writes the averages back into the gradients.
///
/// MPI needs every rank to start its collectives in the same order, but when a copy completes depends on
/// the device's timing: a collective of the backward pass's own (synchronised batch norm's) is therefore
/// preceded by `startCompleteBuckets`, which starts every bucket complete at that point, the same set on
/// every rank.
///
/// The last bucket carries one more value: whether any rank asked to stop, read as that bucket's all-reduce
/// starts, so that every rank stops after the same step without a message of its own.
final class GradientBuckets {
    private enum Phase { case waiting, copying, reducing, reduced }
    /// How far `progress` waits: for nothing, for the copies of the buckets complete so far, or for every reduction.
    private enum Progress { case poll, startComplete, finish }

    private final class Bucket {
        /// Parameters in the order their gradients complete; each at its offset in `staging`.
        let parameters: [Parameter]
        let offsets: [Int]
        /// The gradients, then (in the last bucket) the stop flag.
        let staging: UnsafeMutableBufferPointer<Float>
        var finished = 0
        var phase = Phase.waiting
        var copies: [any PendingTransfer] = []
        var request: (any CommunicationRequest)?

        init(parameters: [Parameter], extra: Int) {
            self.parameters = parameters
            var offsets: [Int] = [], total = 0
            for parameter in parameters {
                offsets.append(total)
                total += parameter.value.count
            }
            self.offsets = offsets
            staging = .allocate(capacity: total + extra)
            staging.initialize(repeating: 0)
        }

        deinit { staging.deallocate() }
    }

    private let communicator: any Communicator
    private let buckets: [Bucket]
    private let bucketOfParameter: [ObjectIdentifier: Int]
    private let parameterIDs: [ObjectIdentifier]
    private var stopRequested: () -> Bool = { false }

    /// `parameters` in the model's order (the backward pass completes them roughly in reverse).
    init(parameters: [Parameter], communicator: any Communicator, bucketBytes: Int) {
        self.communicator = communicator
        parameterIDs = parameters.map(ObjectIdentifier.init)
        var groups: [[Parameter]] = [[]]
        var bytes = 0
        for parameter in parameters.reversed() {
            if bytes >= bucketBytes, !groups[groups.count - 1].isEmpty {
                groups.append([])
                bytes = 0
            }
            groups[groups.count - 1].append(parameter)
            bytes += parameter.value.count * MemoryLayout<Float>.size
        }
        buckets = groups.enumerated().map { Bucket(parameters: $0.element, extra: $0.offset == groups.count - 1 ? 1 : 0) }
        var map: [ObjectIdentifier: Int] = [:]
        for (index, bucket) in buckets.enumerated() {
            for parameter in bucket.parameters { map[ObjectIdentifier(parameter)] = index }
        }
        bucketOfParameter = map
    }

    /// Bytes of gradients in each bucket, in the order they are reduced.
    var bucketSizes: [Int] { buckets.map { $0.parameters.map(\.value.count).reduce(0, +) * MemoryLayout<Float>.size } }

    /// Whether these buckets hold exactly `parameters`, in the model's order.
    func matches(_ parameters: [Parameter]) -> Bool { parameters.map(ObjectIdentifier.init) == parameterIDs }

    /// Starts a step: no gradient is complete yet. `stopRequested` says whether this rank asks to stop.
    func beginStep(stopRequested: @escaping () -> Bool) {
        self.stopRequested = stopRequested
        for bucket in buckets {
            bucket.finished = 0
            bucket.phase = .waiting
            bucket.copies = []
            bucket.request = nil
        }
    }

    /// The backward pass has finished these parameters' gradients (those of a layer it just went through).
    func finished(_ parameters: [Parameter]) throws {
        for parameter in parameters {
            guard let index = bucketOfParameter[ObjectIdentifier(parameter)] else { continue }
            let bucket = buckets[index]
            bucket.finished += 1
            if bucket.finished == bucket.parameters.count, bucket.phase == .waiting { try startCopies(bucket) }
        }
        try progress(.poll)
    }

    /// Starts the all-reduce of every bucket whose gradients are complete, waiting for their copies.
    func startCompleteBuckets() throws { try progress(.startComplete) }

    /// Finishes the averaging (starting what no layer announced), and writes the mean gradients back.
    /// Returns whether any rank asked to stop.
    func finish() throws -> Bool {
        for bucket in buckets where bucket.phase == .waiting { try startCopies(bucket) }
        try progress(.finish)
        let scale = 1 / Float(communicator.size)
        for bucket in buckets {
            for (parameter, offset) in zip(bucket.parameters, bucket.offsets) {
                let count = parameter.value.count
                let part = UnsafeMutableBufferPointer(rebasing: bucket.staging[offset..<(offset + count)])
                for index in part.indices { part[index] *= scale }
                let gradient = try parameter.gradientForAccumulation()
                try gradient.backend.write(UnsafeBufferPointer(part), to: gradient)
            }
        }
        guard let last = buckets.last else { return stopRequested() }
        return last.staging[last.staging.count - 1] > 0
    }

    private func startCopies(_ bucket: Bucket) throws {
        bucket.copies = try zip(bucket.parameters, bucket.offsets).map { parameter, offset in
            let count = parameter.value.count
            let part = UnsafeMutableBufferPointer(rebasing: bucket.staging[offset..<(offset + count)])
            guard let gradient = parameter.gradient else {
                part.update(repeating: 0)
                return CompletedTransfer()
            }
            return try gradient.backend.startRead(gradient, into: part)
        }
        bucket.phase = .copying
    }

    /// Starts the all-reduce of every copied bucket, in bucket order (every rank must start collectives in
    /// the same order), and lets MPI progress those under way; `mode` says how long to wait.
    private func progress(_ mode: Progress) throws {
        for bucket in buckets {
            if bucket.phase == .copying {
                if mode == .poll {
                    guard try bucket.copies.allSatisfy({ try $0.isComplete() }) else { break }
                } else {
                    for copy in bucket.copies { try copy.wait() }
                }
                bucket.copies = []
                if bucket === buckets.last { bucket.staging[bucket.staging.count - 1] = stopRequested() ? 1 : 0 }
                bucket.request = try communicator.startAllReduceSum(bucket.staging)
                bucket.phase = .reducing
            }
            if bucket.phase == .reducing, let request = bucket.request {
                if mode == .finish {
                    try request.wait()
                    bucket.phase = .reduced
                } else if try request.test() {
                    bucket.phase = .reduced
                }
            }
            if bucket.phase == .waiting { break }
        }
    }
}
