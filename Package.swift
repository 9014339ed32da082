// swift-tools-version: 6.0
import PackageDescription

let package = Package(
    name: "Kiln",
    products: [
        .library(name: "Kiln", targets: ["Kiln"]),
        .library(name: "KilnCL", targets: ["KilnCL"]),
        .library(name: "KilnDistributed", targets: ["KilnDistributed"]),
        .executable(name: "kiln", targets: ["KilnCLI"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-protobuf", from: "1.39.0"),
    ],
    targets: [
        // C interop: the OpenCL 1.2 API and CLBlast's C API.
        .systemLibrary(
            name: "COpenCL",
            pkgConfig: "OpenCL",
            providers: [.apt(["ocl-icd-opencl-dev", "opencl-headers", "libclblast-dev"])]),
        // OpenBLAS's GEMM (host backend), loaded at run time so that it gets the CPU's best kernels.
        .target(name: "CBLAS", linkerSettings: [.linkedLibrary("dl")]),

        // Open MPI, loaded at run time, so that Kiln builds and runs without it (data-parallel training needs it).
        .target(name: "CMPI", linkerSettings: [.linkedLibrary("dl")]),

        // C interop: zlib, for gzip-compressed data sets.
        .systemLibrary(
            name: "CZlib",
            providers: [.apt(["zlib1g-dev"])]),
        // JPEG decoding through libjpeg-turbo (Debian libjpeg62-turbo-dev). A C target rather than a system
        // library: libjpeg reports errors by longjmp, which needs C on the far side of the jump.
        .target(name: "CJPEG", linkerSettings: [.linkedLibrary("jpeg")]),

        // The OpenCL runtime: devices, queues, buffers, programs, kernels. Knows nothing of tensors.
        .target(name: "KilnCL", dependencies: ["COpenCL"]),

        // Embeds Kernels/*.cl into the Kiln module at build time.
        .executableTarget(name: "KernelEmbedder", path: "Sources/KernelEmbedder"),
        .plugin(
            name: "EmbedKernels",
            capability: .buildTool(),
            dependencies: ["KernelEmbedder"],
            path: "Plugins/EmbedKernels"),

        // Tensors, the Backend protocol and its two implementations.
        .target(
            name: "Kiln",
            dependencies: ["KilnCL", "CBLAS", "CZlib", "CJPEG"],
            plugins: ["EmbedKernels"]),

        // ONNX export and TensorBoard event files: protobuf messages generated once from Protos/ (generate.sh)
        // and committed, so that builds never run the protobuf plugin.
        .target(
            name: "KilnInterop",
            dependencies: ["Kiln", .product(name: "SwiftProtobuf", package: "swift-protobuf")],
            exclude: ["Protos"]),

        // Data-parallel training over Open MPI: the Communicator Kiln's DataParallel runs on.
        .target(name: "KilnDistributed", dependencies: ["Kiln", "CMPI"]),

        .executableTarget(
            name: "KilnCLI",
            dependencies: ["Kiln", "KilnCL", "KilnInterop", "KilnDistributed", .product(name: "ArgumentParser", package: "swift-argument-parser")]),

        .executableTarget(
            name: "KilnBenchmarks",
            dependencies: ["Kiln"],
            path: "Benchmarks/KilnBenchmarks"),

        .testTarget(name: "KilnCLTests", dependencies: ["KilnCL"]),
        // Fixtures/ holds a checkpoint written by PyTorch and the script that made it; tests read it by path.
        .testTarget(name: "KilnTests", dependencies: ["Kiln", "KilnCL"], exclude: ["Fixtures"]),
        // The Python checks (onnxruntime, TensorBoard's reader) live in Checks/; tests run them by path.
        .testTarget(name: "KilnInteropTests", dependencies: ["Kiln", "KilnInterop"], exclude: ["Checks"]),
    ]
)
