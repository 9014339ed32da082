import Foundation
import PackagePlugin

/// Embeds every `Kernels/*.cl` file of the package into the target as a generated Swift source, with typed
/// launch methods generated from the kernels' signatures.
@main
struct EmbedKernels: BuildToolPlugin {
    func createBuildCommands(context: PluginContext, target: Target) throws -> [Command] {
        let kernelsDirectory = context.package.directoryURL.appending(path: "Kernels")
        let kernelFiles = try FileManager.default
            .contentsOfDirectory(at: kernelsDirectory, includingPropertiesForKeys: nil)
            .filter { $0.pathExtension == "cl" }
            .sorted { $0.lastPathComponent < $1.lastPathComponent }
        let embedded = context.pluginWorkDirectoryURL.appending(path: "EmbeddedKernels.swift")
        let wrappers = context.pluginWorkDirectoryURL.appending(path: "KernelWrappers.swift")
        return [
            .buildCommand(
                displayName: "Embedding \(kernelFiles.count) OpenCL kernel files and their typed launches",
                executable: try context.tool(named: "KernelEmbedder").url,
                arguments: [embedded.path, wrappers.path] + kernelFiles.map(\.path),
                inputFiles: kernelFiles,
                outputFiles: [embedded, wrappers])
        ]
    }
}
