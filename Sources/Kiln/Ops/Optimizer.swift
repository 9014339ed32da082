// Optimiser updates: the op surface each backend implements, and the checked tensor-level API.

/// Fused optimiser update ops of a `Backend`.
public protocol OptimizerBackend {}
