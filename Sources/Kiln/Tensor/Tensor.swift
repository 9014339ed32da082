/// A dense Float32 tensor in row-major (NCHW for images) layout on one device.
///
/// A tensor is a view: (storage, offset, shape). Copies of a `Tensor` value share storage, like
/// PyTorch tensors; ops return new tensors unless their name says they work in place.
public struct Tensor: @unchecked Sendable {
    public let storage: TensorStorage
    /// Offset of the first element in `storage`, in elements.
    public let offset: Int
    public let shape: [Int]

    public init(storage: TensorStorage, offset: Int = 0, shape: [Int]) {
        precondition(offset >= 0 && offset + shape.reduce(1, *) <= storage.count, "view outside its storage")
        self.storage = storage
        self.offset = offset
        self.shape = shape
    }

    public var backend: any Backend { storage.backend }
    public var device: Device { storage.backend.device }
    public var rank: Int { shape.count }
    /// Number of elements.
    public var count: Int { shape.reduce(1, *) }

    // MARK: Creation

    /// An uninitialised tensor (its contents are whatever the allocator hands out).
    public static func empty(_ shape: [Int], on device: Device = .host) throws -> Tensor {
        try validate(shape, "Tensor.empty")
        let backend = try device.backend()
        return Tensor(storage: try backend.allocate(count: shape.reduce(1, *)), shape: shape)
    }

    public static func full(_ shape: [Int], value: Float, on device: Device = .host) throws -> Tensor {
        let tensor = try empty(shape, on: device)
        try tensor.backend.fill(tensor, value: value)
        return tensor
    }

    public static func zeros(_ shape: [Int], on device: Device = .host) throws -> Tensor {
        try full(shape, value: 0, on: device)
    }

    public static func ones(_ shape: [Int], on device: Device = .host) throws -> Tensor {
        try full(shape, value: 1, on: device)
    }

    /// A tensor holding `values` in row-major order.
    public init(_ values: [Float], shape: [Int], on device: Device = .host) throws {
        try Tensor.validate(shape, "Tensor(_:shape:)")
        guard values.count == shape.reduce(1, *) else {
            throw KilnError.shapeMismatch(operation: "Tensor(_:shape:)", expected: "\(describe(shape)) (\(shape.reduce(1, *)) values)",
                                          got: "\(values.count) values")
        }
        self = try Tensor.empty(shape, on: device)
        try values.withUnsafeBufferPointer { try backend.write($0, to: self) }
    }

    /// Uniform values in [low, high) from the counter-based stream (seed, offset): the same on every device.
    public static func uniform(_ shape: [Int], low: Float = 0, high: Float = 1, seed: UInt64, offset: UInt64 = 0,
                               on device: Device = .host) throws -> Tensor {
        let tensor = try empty(shape, on: device)
        try tensor.fillUniform(low: low, high: high, seed: seed, offset: offset)
        return tensor
    }

    /// Normal values from the counter-based stream (seed, offset): the same on every device.
    public static func normal(_ shape: [Int], mean: Float = 0, std: Float = 1, seed: UInt64, offset: UInt64 = 0,
                              on device: Device = .host) throws -> Tensor {
        let tensor = try empty(shape, on: device)
        try tensor.fillNormal(mean: mean, std: std, seed: seed, offset: offset)
        return tensor
    }

    // MARK: Moving and reading

    /// The values in row-major order (waits for pending work on the tensor's device).
    public func toArray() throws -> [Float] {
        try [Float](unsafeUninitializedCapacity: count) { buffer, initialized in
            try backend.read(self, into: buffer)
            initialized = count
        }
    }

    /// The single value of a one-element tensor.
    public func item() throws -> Float {
        guard count == 1 else {
            throw KilnError.shapeMismatch(operation: "item", expected: "one element", got: describe(shape))
        }
        return try toArray()[0]
    }

    /// A copy of this tensor on `device` (self if it is already there).
    public func to(_ device: Device) throws -> Tensor {
        if device == self.device { return self }
        let moved = try Tensor.empty(shape, on: device)
        let values = try toArray()
        try values.withUnsafeBufferPointer { try moved.backend.write($0, to: moved) }
        return moved
    }

    /// A new tensor with the same values on the same device.
    public func copy() throws -> Tensor {
        let result = try Tensor.empty(shape, on: device)
        try backend.copy(self, to: result)
        return result
    }

    /// Copies the values of `source` (same shape, any device) into this tensor.
    public func assign(_ source: Tensor) throws {
        guard source.shape == shape else {
            throw KilnError.shapeMismatch(operation: "assign", expected: describe(shape), got: describe(source.shape))
        }
        if source.device == device {
            try backend.copy(source, to: self)
        } else {
            let values = try source.toArray()
            try values.withUnsafeBufferPointer { try backend.write($0, to: self) }
        }
    }

    // MARK: Views

    /// The same elements with another shape; one dimension may be -1 and is then inferred.
    public func reshaped(_ newShape: [Int]) throws -> Tensor {
        var resolved = newShape
        let inferred = newShape.indices.filter { newShape[$0] == -1 }
        let known = newShape.filter { $0 != -1 }.reduce(1, *)
        if inferred.count == 1, known > 0, count % known == 0 { resolved[inferred[0]] = count / known }
        guard inferred.count <= 1, resolved.allSatisfy({ $0 >= 0 }), resolved.reduce(1, *) == count else {
            throw KilnError.shapeMismatch(operation: "reshape", expected: describe(shape), got: describe(newShape))
        }
        return Tensor(storage: storage, offset: offset, shape: resolved)
    }

    /// The sub-tensor of rows `range` along the first axis (a view sharing storage), e.g. a batch slice.
    public func slice(_ range: Range<Int>) throws -> Tensor {
        guard rank >= 1, range.lowerBound >= 0, range.upperBound <= shape[0] else {
            throw KilnError.invalidArgument("slice \(range) out of bounds for shape \(describe(shape))")
        }
        let rowSize = shape.dropFirst().reduce(1, *)
        return Tensor(storage: storage, offset: offset + range.lowerBound * rowSize,
                      shape: [range.count] + shape.dropFirst())
    }

    /// The view of the `index`-th entry along the first axis, one rank lower.
    public subscript(index: Int) -> Tensor {
        get throws {
            let row = try slice(index..<(index + 1))
            return Tensor(storage: row.storage, offset: row.offset, shape: Array(shape.dropFirst()))
        }
    }

    static func validate(_ shape: [Int], _ operation: String) throws {
        guard shape.allSatisfy({ $0 >= 0 }) else {
            throw KilnError.invalidArgument("\(operation): negative dimension in shape \(describe(shape))")
        }
    }
}

extension Tensor: CustomStringConvertible {
    public var description: String { "Tensor(\(describe(shape)), \(device))" }
}
