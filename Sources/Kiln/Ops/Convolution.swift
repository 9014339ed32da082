// Convolution: the op surface each backend implements, and the checked tensor-level API.

/// Convolution ops of a `Backend`.
public protocol ConvolutionBackend {}
