// Losses: the op surface each backend implements, and the checked tensor-level API.

/// Losses ops of a `Backend`.
public protocol LossBackend {}
