// Dropout family: the op surface each backend implements, and the checked tensor-level API.

/// Dropout family ops of a `Backend`.
public protocol DropoutBackend {}
