// Batch norm and local response normalisation: the op surface each backend implements, and the checked tensor-level API.

/// Batch norm and local response normalisation ops of a `Backend`.
public protocol NormalizationBackend {}
