import KilnCL

/// A kernel file of Kernels/ and the files compiled in front of it (shared helpers such as random.cl).
struct KernelSource: Sendable {
    var file: String
    var prelude: [String]
}

/// How many work-items a launch runs. The generated wrappers (KernelWrappers.swift, made from the kernels'
/// signatures by Sources/KernelEmbedder) ask for the form the kernel's attributes call for.
enum WorkSize {
    /// One work-item per item, in work-groups of the backend's fixed size (the kernel ignores ids from
    /// `count` on). Left to the driver, POCL compiles a new variant for every global size.
    case items(Int)
    /// One work-group of `reqd_work_group_size(REDUCE_WG, 1, 1)` per item.
    case groups(Int)
    /// An explicit range, for kernels with a work-group shape of their own.
    case range(global: [Int], local: [Int])
}

extension OpenCLBackend {
    /// Launches `name` of `source`, building its program on first use; what the generated wrappers call.
    func launch(_ name: String, in source: KernelSource, options: String, _ size: WorkSize, _ arguments: [CLKernelArgument]) throws {
        if context.isPlanning { return try planProgram(source.file, prelude: source.prelude, options: options) }
        let kernel = try launchKernel(name, in: source, options: options)
        switch size {
        case let .items(count):
            guard count > 0 else { return }
            try context.launch(kernel, global: [count], local: [reduceGroupSize], arguments: arguments)
        case let .groups(count):
            guard count > 0 else { return }
            try context.launch(kernel, global: [count * reduceGroupSize], local: [reduceGroupSize], arguments: arguments)
        case let .range(global, local):
            try context.launch(kernel, global: global, local: local, arguments: arguments)
        }
    }
}

/// A kernel as the launch path finds it: by the strings the generated wrappers already hold, so that a
/// steady-state launch builds no program key and looks up no program, only this one entry.
struct LaunchKey: Hashable {
    var name: String
    var file: String
    var options: String
}

extension OpenCLBackend {
    /// The kernel `name` of `source` built with `options`, from the launch cache after its first use.
    func launchKernel(_ name: String, in source: KernelSource, options: String) throws -> CLKernel {
        let key = LaunchKey(name: name, file: source.file, options: options)
        if let kernel = launchKernels.withLock({ $0[key] }) { return kernel }
        let kernel = try kernel(name, in: source.file, prelude: source.prelude, options: options)
        launchKernels.withLock { $0[key] = kernel }
        return kernel
    }
}

extension CLKernelArgument {
    /// `value` as a kernel's `uint` parameter, or an error naming the kernel and parameter when it does not fit.
    static func uint(_ value: Int, _ parameter: String, of kernel: String) throws -> CLKernelArgument {
        guard let narrow = UInt32(exactly: value) else {
            throw KilnError.invalidArgument("\(kernel): \(parameter) = \(value) does not fit the kernel's 32-bit unsigned integer")
        }
        return .uint(narrow)
    }

    /// `value` as a kernel's `int` parameter, or an error naming the kernel and parameter when it does not fit.
    static func int(_ value: Int, _ parameter: String, of kernel: String) throws -> CLKernelArgument {
        guard let narrow = Int32(exactly: value) else {
            throw KilnError.invalidArgument("\(kernel): \(parameter) = \(value) does not fit the kernel's 32-bit integer")
        }
        return .int(narrow)
    }
}

extension Tensor {
    /// The buffer of a tensor that starts at its buffer's first element, for a kernel parameter that has no
    /// offset of its own (scratch buffers).
    func clBufferAtStart(_ parameter: String, of kernel: String) throws -> CLBuffer {
        guard offset == 0 else {
            throw KilnError.invalidArgument("\(kernel): \(parameter) takes no offset, but the tensor starts at element \(offset)")
        }
        return clBuffer
    }
}

/// One kernel as the generated wrappers launch it: the test in KernelSignatureTests compares the count and
/// types of its parameters with what the OpenCL compiler reports for the built program.
struct GeneratedKernel: Sendable {
    var source: KernelSource
    var name: String
    /// OpenCL spellings as in the signature: "float*", "uint", "int", "float", or a shared enum's typedef.
    var argumentTypes: [String]
}
