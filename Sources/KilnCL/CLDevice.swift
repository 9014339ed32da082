import COpenCL

/// One OpenCL device. Its context (with queue, allocator and program cache) is created on first use and
/// shared by every caller in the process.
public final class CLDevice: @unchecked Sendable {
    let id: cl_device_id
    public let platformIndex: Int
    public let deviceIndex: Int
    public let info: CLDeviceInfo
    private let sharedContext = Locked<CLContext?>(nil)

    init(id: cl_device_id, platformIndex: Int, deviceIndex: Int) throws {
        self.id = id
        self.platformIndex = platformIndex
        self.deviceIndex = deviceIndex
        let type = try deviceValue(id, CL_DEVICE_TYPE, as: cl_device_type.self)
        info = CLDeviceInfo(
            name: try deviceString(id, CL_DEVICE_NAME),
            vendor: try deviceString(id, CL_DEVICE_VENDOR),
            type: type & cl_device_type(CL_DEVICE_TYPE_GPU) != 0 ? .gpu
                : type & cl_device_type(CL_DEVICE_TYPE_CPU) != 0 ? .cpu
                : type & cl_device_type(CL_DEVICE_TYPE_ACCELERATOR) != 0 ? .accelerator : .other,
            driverVersion: try deviceString(id, CL_DRIVER_VERSION),
            deviceVersion: try deviceString(id, CL_DEVICE_VERSION),
            openCLCVersion: try deviceString(id, CL_DEVICE_OPENCL_C_VERSION),
            computeUnits: Int(try deviceValue(id, CL_DEVICE_MAX_COMPUTE_UNITS, as: cl_uint.self)),
            clockMHz: Int(try deviceValue(id, CL_DEVICE_MAX_CLOCK_FREQUENCY, as: cl_uint.self)),
            globalMemoryBytes: Int(try deviceValue(id, CL_DEVICE_GLOBAL_MEM_SIZE, as: cl_ulong.self)),
            maxAllocationBytes: Int(try deviceValue(id, CL_DEVICE_MAX_MEM_ALLOC_SIZE, as: cl_ulong.self)),
            localMemoryBytes: Int(try deviceValue(id, CL_DEVICE_LOCAL_MEM_SIZE, as: cl_ulong.self)),
            maxWorkGroupSize: try deviceValue(id, CL_DEVICE_MAX_WORK_GROUP_SIZE, as: Int.self),
            preferredFloatVectorWidth: Int(try deviceValue(id, CL_DEVICE_PREFERRED_VECTOR_WIDTH_FLOAT, as: cl_uint.self)),
            extensions: try deviceString(id, CL_DEVICE_EXTENSIONS).split(separator: " ").map(String.init))
    }

    /// The device string that selects this device: `cl:P:D`.
    public var identifier: String { "cl:\(platformIndex):\(deviceIndex)" }

    /// The process-wide context of this device, created on first use.
    public func context() throws -> CLContext {
        try sharedContext.withLock { shared in
            if let shared { return shared }
            let created = try CLContext(device: self)
            shared = created
            return created
        }
    }
}
