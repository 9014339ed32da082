// Pooling: the op surface each backend implements, and the checked tensor-level API.

/// Pooling ops of a `Backend`.
public protocol PoolingBackend {}
