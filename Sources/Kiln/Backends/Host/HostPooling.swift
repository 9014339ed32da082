extension HostBackend: PoolingBackend {
    public func pool2dForward(_ kind: PoolKind, _ x: Tensor, geometry g: Pool2DGeometry, into y: Tensor, argmax: Tensor?) throws {
        // x: [N, C, H, W] -> y: [N, C, OH, OW]
        let (height, width) = (x.shape[2], x.shape[3])
        let (outHeight, outWidth) = (y.shape[2], y.shape[3])
        let planes = x.shape[0] * x.shape[1]
        let (x, y, argmax) = (x.hostBuffer, y.hostBuffer, argmax?.hostBuffer)
        for plane in 0..<planes {
            for oh in 0..<outHeight {
                for ow in 0..<outWidth {
                    var best = -Float.infinity, bestIndex = -1, sum: Float = 0
                    for i in 0..<g.windowHeight {
                        let h = oh * g.strideHeight - g.padHeight + i
                        guard h >= 0, h < height else { continue }
                        for j in 0..<g.windowWidth {
                            let w = ow * g.strideWidth - g.padWidth + j
                            guard w >= 0, w < width else { continue }
                            let value = x[plane * height * width + h * width + w]
                            sum += value
                            if bestIndex < 0 || value > best { (best, bestIndex) = (value, h * width + w) }
                        }
                    }
                    let out = (plane * outHeight + oh) * outWidth + ow
                    switch kind {
                    case .max:
                        y[out] = best
                        argmax?[out] = Float(bestIndex)
                    case .average:
                        y[out] = sum / Float(g.windowHeight * g.windowWidth)
                    }
                }
            }
        }
    }

    public func pool2dBackward(_ kind: PoolKind, dy: Tensor, argmax: Tensor?, geometry g: Pool2DGeometry, into dx: Tensor) throws {
        // dy: [N, C, OH, OW] -> dx: [N, C, H, W]
        let (height, width) = (dx.shape[2], dx.shape[3])
        let (outHeight, outWidth) = (dy.shape[2], dy.shape[3])
        let planes = dx.shape[0] * dx.shape[1]
        let (dy, dx) = (dy.hostBuffer, dx.hostBuffer)
        let argmax = argmax?.hostBuffer
        let windowSize = Float(g.windowHeight * g.windowWidth)
        dx.update(repeating: 0)
        for plane in 0..<planes {
            for oh in 0..<outHeight {
                for ow in 0..<outWidth {
                    let out = (plane * outHeight + oh) * outWidth + ow
                    switch kind {
                    case .max:
                        guard let index = argmax.map({ Int($0[out]) }), index >= 0 else { continue }
                        dx[plane * height * width + index] += dy[out]
                    case .average:
                        for i in 0..<g.windowHeight {
                            let h = oh * g.strideHeight - g.padHeight + i
                            guard h >= 0, h < height else { continue }
                            for j in 0..<g.windowWidth {
                                let w = ow * g.strideWidth - g.padWidth + j
                                if w >= 0, w < width { dx[plane * height * width + h * width + w] += dy[out] / windowSize }
                            }
                        }
                    }
                }
            }
        }
    }
}
