/// Kiln's release.
public let kilnVersion = "0.9.0"

/// This build's identity: the release and a digest of its OpenCL kernels, which differ between builds of
/// different sources far more often than the release number does. Ranks of a data-parallel job compare it.
public let kilnBuild: String = {
    var hash = fnv1aStart
    for name in embeddedKernelSources.keys.sorted() { fnv1a(Array((name + (embeddedKernelSources[name] ?? "")).utf8), into: &hash) }
    return "\(kilnVersion) (kernels \(String(hash, radix: 16)))"
}()
