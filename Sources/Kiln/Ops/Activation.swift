// Activations: the op surface each backend implements, and the checked tensor-level API.

/// Activations ops of a `Backend`.
public protocol ActivationBackend {}
