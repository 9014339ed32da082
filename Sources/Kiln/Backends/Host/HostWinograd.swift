/// Winograd F(2x2, 3x3) on the host, for 3x3 stride-1 convolutions with enough channels: each 2x2 block of
/// outputs comes from a 4x4 block of inputs with 16 products per (input, output) channel pair instead of 36,
/// so the 16 GEMMs that do the work need 2.25x fewer multiplications than im2col's one. Forward, and backward
/// data as the forward pass of dy with the filters rotated by 180° and C_in and C_out swapped, padded by 2 − p
/// (as Kernels/winograd.cl does on a device).
///
/// For a 4x4 input tile d, a 3x3 filter g and the tile's 4x4 products m (k = 4i + j indexes entry [i, j]):
///   U = G g Gᵀ,   G  = [1 0 0; ½ ½ ½; ½ −½ ½; 0 0 1]              filters  U [16, rows, channels]
///   V = Bᵀ d B,   Bᵀ = [1 0 −1 0; 0 1 1 0; 0 −1 1 0; 0 1 0 −1]    inputs   V [16, channels, T]
///   M[k] = U[k] · V[k]                                             products M [16, rows, T]
///   Y = Aᵀ M A,   Aᵀ = [1 1 1 0; 0 1 −1 −1]                        the tile's 2x2 outputs
/// where T counts the tiles of a chunk, in (image, tile row, tile column) order (⌈OH/2⌉·⌈OW/2⌉ per image).
extension HostBackend {
    /// Below this many channels on either side the 16 GEMMs are too thin to beat im2col's one.
    static let winogradMinimumChannels = 16
    /// Tiles per chunk (whole tile rows, across image boundaries): enough columns for OpenBLAS's kernels to
    /// pay for packing U, few enough that the chunk's V and M stay near the caches; more for the wide layers,
    /// whose U is larger (tried 32 to 256 on ResNet-18's layers: 128, and 256 for 512 channels, were best).
    fileprivate static func winogradChunkTiles(_ p: WinogradProblem) -> Int { Swift.max(128, (p.channels + p.rows) / 4) }

    /// Whether the host computes this convolution's forward and data-gradient passes with Winograd.
    static func winogradApplies(to s: Conv2DShape) -> Bool {
        s.isWinogradShape && s.inputChannels >= winogradMinimumChannels && s.outputChannels >= winogradMinimumChannels
    }

    func winogradForward(_ x: Tensor, weight: Tensor, bias: Tensor?, shape s: Conv2DShape, relu: Bool, into y: Tensor) {
        winograd(WinogradProblem(batch: s.batch, channels: s.inputChannels, height: s.inputHeight, width: s.inputWidth,
                                 rows: s.outputChannels, outputHeight: s.outputHeight, outputWidth: s.outputWidth,
                                 padTop: s.geometry.padTop, padLeft: s.geometry.padLeft, flip: false),
                 input: x.hostBuffer.baseAddress!, weight: weight.hostBuffer.baseAddress!, bias: bias?.hostBuffer.baseAddress,
                 relu: relu, into: y.hostBuffer.baseAddress!)
    }

    func winogradBackwardData(_ dy: Tensor, weight: Tensor, shape s: Conv2DShape, into dx: Tensor) {
        // dx[h] = Σ_i w[i] · dy[h + p − i] = Σ_i' w[2 − i'] · dy[h − (2 − p) + i']. A padding above 2 makes the
        // new one negative: the windows then start inside dy, which the input transform handles alike.
        winograd(WinogradProblem(batch: s.batch, channels: s.outputChannels, height: s.outputHeight, width: s.outputWidth,
                                 rows: s.inputChannels, outputHeight: s.inputHeight, outputWidth: s.inputWidth,
                                 padTop: 2 - s.geometry.padTop, padLeft: 2 - s.geometry.padLeft, flip: true),
                 input: dy.hostBuffer.baseAddress!, weight: weight.hostBuffer.baseAddress!, bias: nil, relu: false,
                 into: dx.hostBuffer.baseAddress!)
    }

    /// One 3x3 stride-1 convolution of `input` [batch, channels, height, width] into `output` [batch, rows,
    /// outputHeight, outputWidth].
    fileprivate struct WinogradProblem {
        var batch: Int, channels: Int, height: Int, width: Int
        var rows: Int, outputHeight: Int, outputWidth: Int
        var padTop: Int, padLeft: Int
        /// Whether the weight is [channels, rows, 3, 3] to be rotated (backward data) rather than [rows, channels, 3, 3].
        var flip: Bool

        var tilesHigh: Int { (outputHeight + 1) / 2 }
        var tilesWide: Int { (outputWidth + 1) / 2 }
        /// The width of an input row as the tiles read it: 2 columns per tile and the last tile's 2 more.
        var paddedWidth: Int { 2 * tilesWide + 2 }
    }

    private func winograd(_ p: WinogradProblem, input: UnsafePointer<Float>, weight: UnsafePointer<Float>,
                          bias: UnsafePointer<Float>?, relu: Bool, into output: UnsafeMutablePointer<Float>) {
        let filterCount = 16 * p.rows * p.channels
        let u = HostMemoryCache.shared.take(count: filterCount)
        defer { HostMemoryCache.shared.give(u, count: filterCount) }
        transformFilters(p, weight, into: u)
        parallelRanges(p.batch, grain: 1) { images in
            // This thread's tile rows, (image, tile row) flattened, in chunks of whole tile rows.
            let tileRows = (images.lowerBound * p.tilesHigh)..<(images.upperBound * p.tilesHigh)
            let chunk = Swift.min(tileRows.count, Swift.max(1, Self.winogradChunkTiles(p) / p.tilesWide))
            let tiles = chunk * p.tilesWide
            // V [16, channels, T], M [16, rows, T] and one entry more, and scratch: the padded input rows of a
            // chunk for the input transform, the 4 outputs of every tile (and one more) for the output transform.
            let count = 16 * (p.channels + p.rows) * tiles + 1 + Swift.max((2 * chunk + 2) * p.paddedWidth, 4 * (tiles + 1))
            let block = HostMemoryCache.shared.take(count: count)
            defer { HostMemoryCache.shared.give(block, count: count) }
            let (v, m) = (block, block + 16 * p.channels * tiles)
            let scratch = m + 16 * p.rows * tiles + 1
            for first in stride(from: tileRows.lowerBound, to: tileRows.upperBound, by: chunk) {
                let rows = first..<Swift.min(first + chunk, tileRows.upperBound)
                let columns = rows.count * p.tilesWide
                transformInputs(p, input, tileRows: rows, tiles: columns, scratch: scratch, into: v)
                for k in 0..<16 {
                    BLAS.sgemm(m: p.rows, n: columns, k: p.channels, a: u + k * p.rows * p.channels, lda: p.channels,
                               b: v + k * p.channels * columns, ldb: columns, beta: 0, c: m + k * p.rows * columns, ldc: columns)
                }
                transformOutputs(p, m, tileRows: rows, tiles: columns, bias: bias, relu: relu, scratch: scratch, into: output)
            }
        }
    }

    /// Calls `body(image, tile rows of it, index of the first one in the chunk)` for the images that the
    /// chunk's tile rows, flattened over (image, tile row), fall in.
    private func forEachImage(_ p: WinogradProblem, of tileRows: Range<Int>, _ body: (Int, Range<Int>, Int) -> Void) {
        var row = tileRows.lowerBound
        while row < tileRows.upperBound {
            let (n, top) = row.quotientAndRemainder(dividingBy: p.tilesHigh)
            let bottom = Swift.min(p.tilesHigh, top + tileRows.upperBound - row)
            body(n, top..<bottom, row - tileRows.lowerBound)
            row += bottom - top
        }
    }

    /// U[k, r, c] = (G g Gᵀ)[k] for the filter g that maps channel c to row r, 4 channels at once (one per
    /// lane), so that each of the 16 entries is stored as one vector.
    private func transformFilters(_ p: WinogradProblem, _ weight: UnsafePointer<Float>, into u: UnsafeMutablePointer<Float>) {
        let plane = p.rows * p.channels
        // Filter (r, c) starts at weight + r·rowStep + c·channelStep: the weight is [rows, channels, 3, 3], or
        // for backward data [channels, rows, 3, 3] and rotated by 180°.
        let (rowStep, channelStep) = p.flip ? (9, 9 * p.rows) : (9 * p.channels, 9)
        parallelRanges(p.rows, grain: 16) { rows in
            for r in rows {
                for c in stride(from: 0, to: p.channels, by: 4) {
                    let lanes = Swift.min(4, p.channels - c)
                    // g[i, j] of channels c ..< c + 4; a short last group repeats its last channel.
                    func g(_ i: Int, _ j: Int) -> SIMD4<Float> {
                        let tap = weight + r * rowStep + (p.flip ? (2 - i) * 3 + 2 - j : i * 3 + j)
                        func channel(_ lane: Int) -> Float { tap[Swift.min(c + lane, p.channels - 1) * channelStep] }
                        return SIMD4(channel(0), channel(1), channel(2), channel(3))
                    }
                    // Column j of t = G g, from column j of g.
                    func column(_ j: Int) -> (SIMD4<Float>, SIMD4<Float>, SIMD4<Float>, SIMD4<Float>) {
                        let (g0, g1, g2) = (g(0, j), g(1, j), g(2, j))
                        return (g0, (g0 + g1 + g2) / 2, (g0 - g1 + g2) / 2, g2)
                    }
                    // Row i of U = t Gᵀ, from row i of t.
                    func store(_ i: Int, _ t0: SIMD4<Float>, _ t1: SIMD4<Float>, _ t2: SIMD4<Float>) {
                        let row = u + 4 * i * plane + r * p.channels + c
                        func put(_ j: Int, _ value: SIMD4<Float>) {
                            if lanes == 4 {
                                UnsafeMutableRawPointer(row + j * plane).storeBytes(of: value, as: SIMD4<Float>.self)
                            } else {
                                for lane in 0..<lanes { row[j * plane + lane] = value[lane] }
                            }
                        }
                        put(0, t0)
                        put(1, (t0 + t1 + t2) / 2)
                        put(2, (t0 - t1 + t2) / 2)
                        put(3, t2)
                    }
                    let (a, b, d) = (column(0), column(1), column(2))
                    store(0, a.0, b.0, d.0)
                    store(1, a.1, b.1, d.1)
                    store(2, a.2, b.2, d.2)
                    store(3, a.3, b.3, d.3)
                }
            }
        }
    }

    /// V[k, c, t] = (Bᵀ d B)[k] for the chunk's tile rows. Image by image and channel by channel: the input
    /// rows they read, padded with zeros; then a tile row at a time its 4 rows combined vertically (Bᵀ d) and
    /// each tile's 4 columns horizontally (· B), 4 tiles at once.
    private func transformInputs(_ p: WinogradProblem, _ input: UnsafePointer<Float>, tileRows: Range<Int>, tiles: Int,
                                 scratch: UnsafeMutablePointer<Float>, into v: UnsafeMutablePointer<Float>) {
        let width = p.paddedWidth
        // Padded entry [row, q] is input [top + row − padTop, q − padLeft], zero outside the input.
        let firstColumn = Swift.max(0, Swift.min(width, p.padLeft)), lastColumn = Swift.max(firstColumn, Swift.min(width, p.padLeft + p.width))
        let plane = p.channels * tiles
        forEachImage(p, of: tileRows) { n, tileRowsOfImage, firstRow in
            // The padded rows these tile rows read: from 2 per tile row above them on.
            let (top, paddedRows) = (2 * tileRowsOfImage.lowerBound, 2 * tileRowsOfImage.count + 2)
            for c in 0..<p.channels {
                let channel = input + (n * p.channels + c) * p.height * p.width
                for row in 0..<paddedRows {
                    let target = scratch + row * width, ih = top + row - p.padTop
                    guard ih >= 0, ih < p.height else {
                        for q in 0..<width { target[q] = 0 }
                        continue
                    }
                    let source = channel + ih * p.width - p.padLeft
                    for q in 0..<firstColumn { target[q] = 0 }
                    for q in firstColumn..<lastColumn { target[q] = source[q] }
                    for q in lastColumn..<width { target[q] = 0 }
                }
                for index in 0..<tileRowsOfImage.count {
                    let d0 = scratch + 2 * index * width
                    let (d1, d2, d3) = (d0 + width, d0 + 2 * width, d0 + 3 * width)
                    let first = c * tiles + (firstRow + index) * p.tilesWide
                    /// Writes V[4i ..< 4i + 4] of tiles tx ..< tx + lanes, from row i of Bᵀ d.
                    func put<Lanes: SIMD>(_ i: Int, _ tx: Int, _ e0: Lanes, _ o0: Lanes, _ e1: Lanes, _ o1: Lanes) where Lanes.Scalar == Float {
                        let target = v + 4 * i * plane + first + tx
                        UnsafeMutableRawPointer(target).storeBytes(of: e0 - e1, as: Lanes.self)
                        UnsafeMutableRawPointer(target + plane).storeBytes(of: o0 + e1, as: Lanes.self)
                        UnsafeMutableRawPointer(target + 2 * plane).storeBytes(of: e1 - o0, as: Lanes.self)
                        UnsafeMutableRawPointer(target + 3 * plane).storeBytes(of: o0 - o1, as: Lanes.self)
                    }
                    // Bᵀ d combines the 4 rows: d0 − d2, d1 + d2, d2 − d1, d1 − d3. Columns 2tx ..< 2tx + 2n of a
                    // row hold the even (e0) and odd (o0) columns of tiles tx ..< tx + n; 2 columns on, those of
                    // the next tiles (e1, o1); · B combines them. n tiles at once: 4 (SIMD8 loads), then 2. Forced
                    // inline: left as a call per step it is not, and the call costs about what the step does.
                    var tx = 0
                    @inline(__always) func nextTiles<Wide: SIMD, Half: SIMD>(_ wide: Wide.Type, _ split: (Wide) -> (Half, Half))
                        where Wide.Scalar == Float, Half.Scalar == Float {
                        func load(_ row: UnsafeMutablePointer<Float>, _ offset: Int) -> Wide {
                            UnsafeRawPointer(row + 2 * tx + offset).loadUnaligned(as: Wide.self)
                        }
                        func combine(_ offset: Int) -> (Wide, Wide, Wide, Wide) {
                            let (a0, a1, a2, a3) = (load(d0, offset), load(d1, offset), load(d2, offset), load(d3, offset))
                            return (a0 - a2, a1 + a2, a2 - a1, a1 - a3)
                        }
                        let (h0, h1, h2, h3) = combine(0), (n0, n1, n2, n3) = combine(2)
                        func putRow(_ i: Int, _ here: Wide, _ next: Wide) {
                            let ((e0, o0), (e1, o1)) = (split(here), split(next))
                            put(i, tx, e0, o0, e1, o1)
                        }
                        putRow(0, h0, n0)
                        putRow(1, h1, n1)
                        putRow(2, h2, n2)
                        putRow(3, h3, n3)
                    }
                    while tx + 4 <= p.tilesWide {
                        nextTiles(SIMD8<Float>.self) { ($0.evenHalf, $0.oddHalf) }
                        tx += 4
                    }
                    while tx + 2 <= p.tilesWide {
                        nextTiles(SIMD4<Float>.self) { ($0.evenHalf, $0.oddHalf) }
                        tx += 2
                    }
                    while tx < p.tilesWide {
                        // Column q of the tile's Bᵀ d, one entry per row i.
                        func column(_ q: Int) -> SIMD4<Float> {
                            let (a0, a1, a2, a3) = (d0[2 * tx + q], d1[2 * tx + q], d2[2 * tx + q], d3[2 * tx + q])
                            return SIMD4(a0 - a2, a1 + a2, a2 - a1, a1 - a3)
                        }
                        let (e0, o0, e1, o1) = (column(0), column(1), column(2), column(3))
                        let (w0, w1, w2, w3) = (e0 - e1, o0 + e1, e1 - o0, o0 - o1)
                        for i in 0..<4 {
                            let target = v + 4 * i * plane + first + tx
                            (target[0], target[plane], target[2 * plane], target[3 * plane]) = (w0[i], w1[i], w2[i], w3[i])
                        }
                        tx += 1
                    }
                }
            }
        }
    }

    /// y[n, r, 2ty + a, 2tx + b] = (Aᵀ M A)[a, b] + bias[r], then max(·, 0) with `relu`; a tile's outputs past
    /// an odd edge are not written. Row by row of M: the 4 outputs of every tile of the chunk, 8 tiles at once,
    /// then those outputs put in place.
    private func transformOutputs(_ p: WinogradProblem, _ m: UnsafePointer<Float>, tileRows: Range<Int>, tiles: Int,
                                  bias: UnsafePointer<Float>?, relu: Bool, scratch: UnsafeMutablePointer<Float>,
                                  into output: UnsafeMutablePointer<Float>) {
        let plane = p.rows * tiles
        let floor: Float = relu ? 0 : -.infinity
        // The tile's outputs [a, b] at scratch[(2a + b)·(tiles + 1) + t].
        let stride = tiles + 1
        let (y00, y01, y10, y11) = (scratch, scratch + stride, scratch + 2 * stride, scratch + 3 * stride)
        let wholeTiles = p.outputWidth / 2
        for r in 0..<p.rows {
            let shift = bias?[r] ?? 0
            let products = m + r * tiles
            func tileOutputs<Lanes: SIMD>(_ t: Int, _ lanes: Lanes.Type) where Lanes.Scalar == Float {
                func entry(_ k: Int) -> Lanes { UnsafeRawPointer(products + k * plane + t).loadUnaligned(as: Lanes.self) }
                // Aᵀ M: row 0 is M0j + M1j + M2j, row 1 is M1j − M2j − M3j; then · A along each row.
                let (m4, m5, m6, m7) = (entry(4), entry(5), entry(6), entry(7))
                let (m8, m9, m10, m11) = (entry(8), entry(9), entry(10), entry(11))
                let (s00, s01) = (entry(0) + m4 + m8, entry(1) + m5 + m9)
                let (s02, s03) = (entry(2) + m6 + m10, entry(3) + m7 + m11)
                let (s10, s11) = (m4 - m8 - entry(12), m5 - m9 - entry(13))
                let (s12, s13) = (m6 - m10 - entry(14), m7 - m11 - entry(15))
                func store(_ value: Lanes, _ target: UnsafeMutablePointer<Float>) {
                    UnsafeMutableRawPointer(target + t).storeBytes(of: value + shift, as: Lanes.self)
                }
                store(s00 + s01 + s02, y00)
                store(s01 - s02 - s03, y01)
                store(s10 + s11 + s12, y10)
                store(s11 - s12 - s13, y11)
            }
            var t = 0
            while t + 8 <= tiles {
                tileOutputs(t, SIMD8<Float>.self)
                t += 8
            }
            // Past an odd count, the second lane reads the next entry of M (its allocation has one to spare)
            // and writes the one spare entry after each output array.
            while t < tiles {
                tileOutputs(t, SIMD2<Float>.self)
                t += 2
            }
            forEachImage(p, of: tileRows) { n, tileRowsOfImage, firstRow in
                let channel = output + (n * p.rows + r) * p.outputHeight * p.outputWidth
                for ty in tileRowsOfImage {
                    let first = (firstRow + ty - tileRowsOfImage.lowerBound) * p.tilesWide
                    let top = channel + 2 * ty * p.outputWidth
                    for tx in 0..<wholeTiles {
                        (top[2 * tx], top[2 * tx + 1]) = (Swift.max(y00[first + tx], floor), Swift.max(y01[first + tx], floor))
                    }
                    if wholeTiles < p.tilesWide { top[2 * wholeTiles] = Swift.max(y00[first + wholeTiles], floor) }
                    guard 2 * ty + 1 < p.outputHeight else { continue }
                    let bottom = top + p.outputWidth
                    for tx in 0..<wholeTiles {
                        (bottom[2 * tx], bottom[2 * tx + 1]) = (Swift.max(y10[first + tx], floor), Swift.max(y11[first + tx], floor))
                    }
                    if wholeTiles < p.tilesWide { bottom[2 * wholeTiles] = Swift.max(y10[first + wholeTiles], floor) }
                }
            }
        }
    }
}
