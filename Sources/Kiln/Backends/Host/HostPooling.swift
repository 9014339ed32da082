/// Pooling on the host, the (sample, channel) planes split across threads. Each output's window is clipped
/// to the image once, so the inner loops carry no bounds checks.
extension HostBackend: PoolingBackend {
    public func pool2dForward(_ kind: PoolKind, _ x: Tensor, geometry g: Pool2DGeometry, relu: Bool, into y: Tensor, argmax: Tensor?) throws {
        // x: [N, C, H, W] -> y: [N, C, OH, OW]; argmax holds the winner's index h·W + w within its plane
        let (height, width) = (x.shape[2], x.shape[3])
        let (outHeight, outWidth) = (y.shape[2], y.shape[3])
        let planeCount = x.shape[0] * x.shape[1]
        let (x, y, argmax) = (x.hostBuffer.baseAddress!, y.hostBuffer.baseAddress!, argmax?.hostBuffer.baseAddress)
        let windowSize = Float(g.windowHeight * g.windowWidth)
        let halving = kind == .max && g == (try? Pool2DGeometry(window: 2))
        parallelRanges(planeCount, grain: Self.elementGrain / Swift.max(height * width, 1)) { planes in
            for plane in planes {
                let input = x + plane * height * width
                // max(pool(x), 0) = pool(max(x, 0)): the ReLU goes over the (smaller) output.
                defer { if relu { for out in (plane * outHeight * outWidth)..<((plane + 1) * outHeight * outWidth) { y[out] = Swift.max(y[out], 0) } } }
                if halving {
                    Self.maxPoolHalving(input, width: width, into: y + plane * outHeight * outWidth,
                                        argmax: argmax.map { $0 + plane * outHeight * outWidth }, outHeight: outHeight, outWidth: outWidth)
                    continue
                }
                for oh in 0..<outHeight {
                    let rows = window(oh, stride: g.strideHeight, pad: g.padHeight, size: g.windowHeight, limit: height)
                    for ow in 0..<outWidth {
                        let columns = window(ow, stride: g.strideWidth, pad: g.padWidth, size: g.windowWidth, limit: width)
                        let out = (plane * outHeight + oh) * outWidth + ow
                        switch kind {
                        case .max:
                            // Row-major scan with a strict ">": ties keep the first maximum.
                            var best = -Float.infinity, bestIndex = -1
                            var h = rows.lowerBound
                            while h < rows.upperBound {
                                var w = columns.lowerBound
                                while w < columns.upperBound {
                                    let value = input[h * width + w]
                                    if value > best || bestIndex < 0 { best = value; bestIndex = h * width + w }
                                    w += 1
                                }
                                h += 1
                            }
                            y[out] = best
                            argmax?[out] = Float(bestIndex)
                        case .average:
                            var sum: Float = 0
                            for h in rows { for w in columns { sum += input[h * width + w] } }
                            y[out] = sum / windowSize
                        }
                    }
                }
            }
        }
    }

    public func pool2dBackward(_ kind: PoolKind, dy: Tensor, argmax: Tensor?, geometry g: Pool2DGeometry, reluOutput: Tensor?,
                               into dx: Tensor) throws {
        // dy: [N, C, OH, OW] -> dx: [N, C, H, W]
        let (height, width) = (dx.shape[2], dx.shape[3])
        let (outHeight, outWidth) = (dy.shape[2], dy.shape[3])
        let planeCount = dx.shape[0] * dx.shape[1]
        let (dy, dx) = (dy.hostBuffer.baseAddress!, dx.hostBuffer.baseAddress!)
        let argmax = argmax?.hostBuffer.baseAddress
        let reluOutput = reluOutput?.hostBuffer.baseAddress
        let windowSize = Float(g.windowHeight * g.windowWidth)
        parallelRanges(planeCount, grain: Self.elementGrain / Swift.max(height * width, 1)) { planes in
            for plane in planes {
                let gradient = dx + plane * height * width
                gradient.update(repeating: 0, count: height * width)
                for oh in 0..<outHeight {
                    let rows = window(oh, stride: g.strideHeight, pad: g.padHeight, size: g.windowHeight, limit: height)
                    for ow in 0..<outWidth {
                        let out = (plane * outHeight + oh) * outWidth + ow
                        switch kind {
                        case .max:
                            guard let index = argmax.map({ Int($0[out]) }), index >= 0, (reluOutput?[out] ?? 1) > 0 else { continue }
                            gradient[index] += dy[out]
                        case .average:
                            let columns = window(ow, stride: g.strideWidth, pad: g.padWidth, size: g.windowWidth, limit: width)
                            let share = dy[out] / windowSize
                            for h in rows { for w in columns { gradient[h * width + w] += share } }
                        }
                    }
                }
            }
        }
    }

    /// 2x2 windows with stride 2, the pooling of most networks: eight outputs at a time from sixteen-lane
    /// rows, the candidates compared in the same row-major order as the general loop (a strict ">", so
    /// ties keep the first).
    private static func maxPoolHalving(_ input: UnsafeMutablePointer<Float>, width: Int, into y: UnsafeMutablePointer<Float>,
                                       argmax: UnsafeMutablePointer<Float>?, outHeight: Int, outWidth: Int) {
        let raw = UnsafeRawPointer(input)
        let lanes = SIMD8<Float>(0, 2, 4, 6, 8, 10, 12, 14)
        for oh in 0..<outHeight {
            let top = 2 * oh * width
            var ow = 0
            while ow + 8 <= outWidth {
                let upper = raw.loadUnaligned(fromByteOffset: 4 * (top + 2 * ow), as: SIMD16<Float>.self)
                let lower = raw.loadUnaligned(fromByteOffset: 4 * (top + width + 2 * ow), as: SIMD16<Float>.self)
                var best = upper.evenHalf
                var offset = SIMD8<Float>(repeating: 0)
                func challenge(_ candidate: SIMD8<Float>, at shift: Int) {
                    let wins = candidate .> best
                    best.replace(with: candidate, where: wins)
                    offset.replace(with: Float(shift), where: wins)
                }
                challenge(upper.oddHalf, at: 1)
                challenge(lower.evenHalf, at: width)
                challenge(lower.oddHalf, at: width + 1)
                for lane in 0..<8 { y[oh * outWidth + ow + lane] = best[lane] }
                if let argmax {
                    let index = SIMD8<Float>(repeating: Float(top + 2 * ow)) + lanes + offset
                    for lane in 0..<8 { argmax[oh * outWidth + ow + lane] = index[lane] }
                }
                ow += 8
            }
            for ow in ow..<outWidth {
                let topLeft = top + 2 * ow
                var (best, index) = (input[topLeft], topLeft)
                if input[topLeft + 1] > best { (best, index) = (input[topLeft + 1], topLeft + 1) }
                if input[topLeft + width] > best { (best, index) = (input[topLeft + width], topLeft + width) }
                if input[topLeft + width + 1] > best { (best, index) = (input[topLeft + width + 1], topLeft + width + 1) }
                y[oh * outWidth + ow] = best
                argmax?[oh * outWidth + ow] = Float(index)
            }
        }
    }

    /// The input rows (or columns) of output position `o`'s window that lie inside the image.
    private func window(_ o: Int, stride: Int, pad: Int, size: Int, limit: Int) -> Range<Int> {
        let start = o * stride - pad
        return Swift.max(start, 0)..<Swift.min(start + size, limit)
    }
}
