import Foundation

/// Augmentation on the host, the images (or planes) split across threads. The arithmetic of each op is
/// written in the order of Kernels/augment.cl, so the exact ops agree with the device bit for bit.
extension HostBackend: AugmentationBackend {
    public func shiftFlip(_ x: Tensor, params: Tensor, border: AugmentBorder, into y: Tensor) throws {
        // x, y: [N, C, H, W]; params: [N, 4] = (dx, dy, flip x, flip y)
        let (channels, height, width) = (x.shape[1], x.shape[2], x.shape[3])
        let (x, y, p) = (x.hostBuffer, y.hostBuffer, params.hostBuffer)
        parallelRanges(x.count / Swift.max(height * width, 1), grain: Self.elementGrain / Swift.max(height * width, 1)) { planes in
            for plane in planes {
                let row = 4 * (plane / channels)
                let (dx, dy) = (Int(p[row]), Int(p[row + 1]))
                let (flipX, flipY) = (p[row + 2] != 0, p[row + 3] != 0)
                let base = plane * height * width
                for h in 0..<height {
                    for w in 0..<width {
                        var sw = (flipX ? width - 1 - w : w) + dx
                        var sh = (flipY ? height - 1 - h : h) + dy
                        switch border {
                        case .reflect:
                            sw = reflectIndex(sw, width)
                            sh = reflectIndex(sh, height)
                        case let .constant(fill):
                            if sw < 0 || sw >= width || sh < 0 || sh >= height {
                                y[base + h * width + w] = fill
                                continue
                            }
                        }
                        y[base + h * width + w] = x[base + sh * width + sw]
                    }
                }
            }
        }
    }

    public func warpAffine(_ x: Tensor, matrices: Tensor, interpolation: Interpolation, fill: Float, into y: Tensor) throws {
        // x: [N, C, H, W]; matrices: [N, 6]; y: [N, C, OH, OW]
        let (channels, height, width) = (x.shape[1], x.shape[2], x.shape[3])
        let (outHeight, outWidth) = (y.shape[2], y.shape[3])
        let (x, y, m) = (x.hostBuffer, y.hostBuffer, matrices.hostBuffer)
        func tap(_ plane: Int, _ r: Int, _ c: Int) -> Float {
            r < 0 || r >= height || c < 0 || c >= width ? fill : x[plane * height * width + r * width + c]
        }
        parallelRanges(y.count / Swift.max(outHeight * outWidth, 1), grain: Self.elementGrain / Swift.max(outHeight * outWidth, 1)) { planes in
            for plane in planes {
                let row = 6 * (plane / channels)
                for oh in 0..<outHeight {
                    for ow in 0..<outWidth {
                        let (u, v) = (Float(ow) + 0.5, Float(oh) + 0.5)
                        let sx = m[row] * u + m[row + 1] * v + m[row + 2]
                        let sy = m[row + 3] * u + m[row + 4] * v + m[row + 5]
                        let out = (plane * outHeight + oh) * outWidth + ow
                        switch interpolation {
                        case .nearest:
                            y[out] = tap(plane, Int(sy.rounded(.down)), Int(sx.rounded(.down)))
                        case .bilinear:
                            let (cx, cy) = (sx - 0.5, sy - 0.5)
                            let (x0, y0) = (cx.rounded(.down), cy.rounded(.down))
                            let (fx, fy) = (cx - x0, cy - y0)
                            let (c0, r0) = (Int(x0), Int(y0))
                            let top = tap(plane, r0, c0) * (1 - fx) + tap(plane, r0, c0 + 1) * fx
                            let bottom = tap(plane, r0 + 1, c0) * (1 - fx) + tap(plane, r0 + 1, c0 + 1) * fx
                            y[out] = top * (1 - fy) + bottom * fy
                        }
                    }
                }
            }
        }
    }

    public func colorJitter(_ x: Tensor, factors: Tensor, into y: Tensor) throws {
        // x, y: [N, C, H, W]; factors: [N, 3] = (brightness, contrast, saturation)
        let (channels, plane) = (x.shape[1], x.shape[2] * x.shape[3])
        let (x, y, f) = (x.hostBuffer, y.hostBuffer, factors.hostBuffer)
        // fmin/fmax in the kernel take NaN to 0, as `unitClamped` does.
        let unit = unitClamped
        parallelRanges(factors.shape[0], grain: Swift.max(1, Self.elementGrain / Swift.max(channels * plane, 1))) { samples in
            for sample in samples {
                let image = sample * channels * plane
                let (b, c, s) = (f[3 * sample], f[3 * sample + 1], f[3 * sample + 2])
                // The mean grey of the brightened image, which contrast blends towards.
                var sum: Float = 0
                for q in 0..<plane {
                    sum += channels == 3
                        ? 0.299 * unit(x[image + q] * b) + 0.587 * unit(x[image + plane + q] * b) + 0.114 * unit(x[image + 2 * plane + q] * b)
                        : unit(x[image + q] * b)
                }
                let mean = sum / Float(plane)
                for q in 0..<plane {
                    // Contrast on every channel, then (for RGB) saturation towards the pixel's own grey.
                    for k in 0..<channels {
                        y[image + k * plane + q] = unit(c * unit(x[image + k * plane + q] * b) + (1 - c) * mean)
                    }
                    guard channels == 3 else { continue }
                    let (r, g, bl) = (y[image + q], y[image + plane + q], y[image + 2 * plane + q])
                    let grey = 0.299 * r + 0.587 * g + 0.114 * bl
                    y[image + q] = unit(s * r + (1 - s) * grey)
                    y[image + plane + q] = unit(s * g + (1 - s) * grey)
                    y[image + 2 * plane + q] = unit(s * bl + (1 - s) * grey)
                }
            }
        }
    }

    public func eraseBoxes(_ x: Tensor, boxes: Tensor, value: Float, into y: Tensor) throws {
        // x, y: [N, C, H, W]; boxes: [N, 4] = (x0, y0, x1, y1)
        let (channels, height, width) = (x.shape[1], x.shape[2], x.shape[3])
        let (x, y, box) = (x.hostBuffer, y.hostBuffer, boxes.hostBuffer)
        parallelRanges(x.count / Swift.max(height * width, 1), grain: Self.elementGrain / Swift.max(height * width, 1)) { planes in
            for plane in planes {
                let row = 4 * (plane / channels)
                for h in 0..<height {
                    for w in 0..<width {
                        let i = (plane * height + h) * width + w
                        let inside = Float(w) >= box[row] && Float(w) < box[row + 2] && Float(h) >= box[row + 1] && Float(h) < box[row + 3]
                        y[i] = inside ? value : x[i]
                    }
                }
            }
        }
    }

    public func mixPairs(_ a: Tensor, _ b: Tensor, params: Tensor, into y: Tensor) throws {
        // a, b, y: [N, C, H, W]; params: [N, 5] = (λ, x0, y0, x1, y1)
        let (channels, height, width) = (a.shape[1], a.shape[2], a.shape[3])
        let (a, b, y, p) = (a.hostBuffer, b.hostBuffer, y.hostBuffer, params.hostBuffer)
        parallelRanges(a.count / Swift.max(height * width, 1), grain: Self.elementGrain / Swift.max(height * width, 1)) { planes in
            for plane in planes {
                let row = 5 * (plane / channels)
                let lambda = p[row]
                for h in 0..<height {
                    for w in 0..<width {
                        let i = (plane * height + h) * width + w
                        let inside = Float(w) >= p[row + 1] && Float(w) < p[row + 3] && Float(h) >= p[row + 2] && Float(h) < p[row + 4]
                        y[i] = inside ? b[i] : lambda * a[i] + (1 - lambda) * b[i]
                    }
                }
            }
        }
    }

    public func scaleShiftChannels(_ x: Tensor, scale: Tensor, shift: Tensor, into y: Tensor) throws {
        // x, y: [N, C, inner]; scale, shift: [C]
        let channels = x.shape[1], inner = x.count / Swift.max(x.shape[0] * channels, 1)
        let (x, y, scale, shift) = (x.hostBuffer, y.hostBuffer, scale.hostBuffer, shift.hostBuffer)
        parallelRanges(x.count, grain: Self.elementGrain) { range in
            for i in range {
                let c = (i / inner) % channels
                y[i] = x[i] * scale[c] + shift[c]
            }
        }
    }

    public func standardizeImages(_ x: Tensor, into y: Tensor) throws {
        // x, y: [N, size]
        let size = x.count / Swift.max(x.shape[0], 1)
        let (x, y) = (x.hostBuffer, y.hostBuffer)
        parallelRanges(x.count / Swift.max(size, 1), grain: Swift.max(1, Self.elementGrain / Swift.max(size, 1))) { images in
            for image in images {
                let values = UnsafeMutableBufferPointer(rebasing: x[(image * size)..<((image + 1) * size)])
                let mean = values.reduce(0, +) / Float(size)
                let variance = values.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Float(size)
                let scale = 1 / Swift.max(variance.squareRoot(), 1 / Float(size).squareRoot())
                for q in 0..<size { y[image * size + q] = (values[q] - mean) * scale }
            }
        }
    }
}

/// Reflection without repeating the edge (numpy's "reflect"): −1 → 1, size → size − 2.
func reflectIndex(_ i: Int, _ size: Int) -> Int {
    guard size > 1 else { return 0 }
    let period = 2 * (size - 1)
    var i = i % period
    if i < 0 { i += period }
    return i < size ? i : period - i
}
