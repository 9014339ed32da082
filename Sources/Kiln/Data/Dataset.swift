import Foundation

/// An image classification data set in host memory: images as [N, C, H, W] Float32 and integer labels.
public struct Dataset: Sendable {
    /// [C, H, W] of one image.
    public var imageShape: [Int]
    /// All images, image after image, in CHW order.
    public var pixels: [Float]
    public var labels: [Int]
    public var classNames: [String]
    /// How many images loading converted between grey and colour to give them all `imageShape[0]` channels
    /// (an image folder that mixes the two); 0 for the other data sets. Subsets do not carry it.
    public var convertedImages = 0

    public init(imageShape: [Int], pixels: [Float], labels: [Int], classNames: [String]) {
        self.imageShape = imageShape
        self.pixels = pixels
        self.labels = labels
        self.classNames = classNames
    }

    public var count: Int { labels.count }
    public var imageSize: Int { imageShape.reduce(1, *) }

    /// The samples at `indices`, in that order.
    public func subset(_ indices: [Int]) -> Dataset {
        Dataset(imageShape: imageShape, pixels: pixels(of: indices), labels: indices.map { labels[$0] }, classNames: classNames)
    }

    /// The images of `classes` alone, in the stored order, relabelled 0, 1, ... in the order `classes` lists
    /// them and named so: a data set split by class, as transfer experiments use.
    public func restricted(toClasses classes: [Int]) throws -> Dataset {
        guard !classes.isEmpty, Set(classes).count == classes.count else {
            throw KilnError.invalidArgument("the classes to keep must be distinct and at least one, not \(classes)")
        }
        if let bad = classes.first(where: { !classNames.indices.contains($0) }) {
            throw KilnError.invalidArgument("class \(bad) is not one of the data set's \(classNames.count) classes (0–\(classNames.count - 1))")
        }
        let newLabel = Dictionary(uniqueKeysWithValues: classes.enumerated().map { ($1, $0) })
        let kept = labels.indices.filter { newLabel[labels[$0]] != nil }
        var result = subset(kept)
        result.labels = kept.compactMap { newLabel[labels[$0]] }
        result.classNames = classes.map { classNames[$0] }
        result.convertedImages = convertedImages
        return result
    }

    /// At most `limit` images of every class, in the stored order: the first of each class in one seeded
    /// shuffle (its own stream, apart from the validation split's and the epochs'), so that a small labelled
    /// set is a random sample that depends on the seed alone.
    public func limited(perClass limit: Int, seed: UInt64) -> Dataset {
        let quotas = Array(repeating: limit, count: Swift.max(classNames.count, (labels.max() ?? -1) + 1))
        let kept = firstOfEachClass(quotas, stream: Philox.mix(seed, Self.perClassStream))
        var result = subset((0..<count).filter { kept[$0] })
        result.convertedImages = convertedImages
        return result
    }

    /// The stream of `limited(perClass:seed:)`'s shuffle.
    static let perClassStream: UInt64 = 0x7065_7263_6c61_7373  // "perclass"

    /// The class indices a list such as "0-4" or "5,7,9" or "0-2,8" names, in that order.
    public static func classList(_ text: String) throws -> [Int] {
        var classes: [Int] = []
        for part in text.split(separator: ",", omittingEmptySubsequences: false) {
            let bounds = part.split(separator: "-", omittingEmptySubsequences: false).map { Int($0.trimmingCharacters(in: .whitespaces)) }
            guard (1...2).contains(bounds.count), let low = bounds.first ?? nil, let high = bounds.last ?? nil, low >= 0, low <= high else {
                throw KilnError.invalidArgument("'\(text)' is not a list of class indices such as 0-4 or 5,7,9 (at '\(part)')")
            }
            classes += Array(low...high)
        }
        return classes
    }

    /// The pixels of the images at `indices`, one after another in that order ([indices.count, C, H, W]).
    public func pixels(of indices: [Int]) -> [Float] {
        let size = imageSize
        var gathered = [Float](repeating: 0, count: indices.count * size)
        gathered.withUnsafeMutableBufferPointer { target in
            pixels.withUnsafeBufferPointer { source in
                for (row, index) in indices.enumerated() {
                    _ = UnsafeMutableBufferPointer(rebasing: target[(row * size)..<((row + 1) * size)])
                        .update(fromContentsOf: source[(index * size)..<((index + 1) * size)])
                }
            }
        }
        return gathered
    }

    /// Holds out `validationCount` samples as a validation set, stratified and seeded: (train, validation),
    /// each in the stored order. See `validationSplit(count:seed:)` for which samples.
    public func splitValidation(count validationCount: Int, seed: UInt64) throws -> (train: Dataset, validation: Dataset) {
        let (train, validation) = try validationSplit(count: validationCount, seed: seed)
        return (subset(train), subset(validation))
    }

    /// The indices of a stratified, seeded split: `count` indices for validation and the rest for training,
    /// both ascending. Each class gives its share of `count` in proportion to its images, rounded by largest
    /// remainder (ties to the lower class) so that the shares add up to `count` exactly; within a class, the
    /// first images of one Fisher–Yates shuffle of all indices are held out. The shuffle is keyed by `seed`
    /// alone, so the split depends on the seed and the data set only and a resumed run holds out the same
    /// images; it draws from a stream of its own, apart from the epochs' shuffles.
    public func validationSplit(count validationCount: Int, seed: UInt64) throws -> (train: [Int], validation: [Int]) {
        guard validationCount >= 0, validationCount <= count else {
            throw KilnError.invalidArgument("cannot hold out \(validationCount) of \(count) images for validation")
        }
        if let bad = labels.first(where: { $0 < 0 }) { throw KilnError.invalidArgument("label \(bad) is negative: the data set cannot be stratified") }
        var perClass = Array(repeating: 0, count: Swift.max(classNames.count, (labels.max() ?? -1) + 1))
        for label in labels { perClass[label] += 1 }
        let shares = Self.largestRemainderShares(of: validationCount, counts: perClass)

        let heldOut = firstOfEachClass(shares, stream: Philox.mix(seed, Self.validationStream))
        return ((0..<count).filter { !heldOut[$0] }, (0..<count).filter { heldOut[$0] })
    }

    /// Marks, for every class c, the first `quotas[c]` of its images in one Fisher–Yates shuffle of all indices
    /// drawn from `stream`.
    private func firstOfEachClass(_ quotas: [Int], stream: UInt64) -> [Bool] {
        var left = quotas, chosen = Array(repeating: false, count: count)
        for index in Philox.shuffledIndices(count, stream: stream) where left[labels[index]] > 0 {
            left[labels[index]] -= 1
            chosen[index] = true
        }
        return chosen
    }

    /// The index given to `Philox.mix` for the validation split's stream: far from the epoch numbers that
    /// key the training shuffles (`DataLoader.order`), so the two never share a stream.
    static let validationStream: UInt64 = 0x7661_6c69_6461_7465  // "validate"

    /// `total` shared among classes in proportion to `counts`: each gets the floor of its exact share, and
    /// the units left go to the largest remainders (the lower class first on a tie). No class gets more than
    /// its count when `total` is at most their sum.
    static func largestRemainderShares(of total: Int, counts: [Int]) -> [Int] {
        let sum = counts.reduce(0, +)
        guard sum > 0 else { return counts.map { _ in 0 } }
        // Exact integer shares: total · count / sum as a quotient and a remainder (no rounding of Doubles).
        var shares = counts.map { total * $0 / sum }
        let remainders = counts.map { total * $0 % sum }
        let left = total - shares.reduce(0, +)
        let byRemainder = counts.indices.sorted { remainders[$0] != remainders[$1] ? remainders[$0] > remainders[$1] : $0 < $1 }
        for index in byRemainder.prefix(left) { shares[index] += 1 }
        return shares
    }

    /// Standardises every channel: (x − mean) / std.
    public mutating func normalize(mean: [Float], std: [Float]) throws {
        let channels = imageShape[0], plane = imageSize / channels
        guard mean.count == channels, std.count == channels, std.allSatisfy({ $0 > 0 }) else {
            throw KilnError.invalidArgument("normalize: need \(channels) means and positive standard deviations")
        }
        for i in pixels.indices {
            let c = (i / plane) % channels
            pixels[i] = (pixels[i] - mean[c]) / std[c]
        }
    }

    public static let fashionMNISTClasses = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                                             "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
    public static let cifar10Classes = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    /// Where Debian's dataset-fashion-mnist package puts the files.
    public static let fashionMNISTDirectory = URL(fileURLWithPath: "/usr/share/datasets/fashion-mnist")
}

/// Which part of a data set to load.
public enum DatasetSplit: String, Sendable { case train, test }

extension Dataset {
    /// A data set named by a spec: `fashion-mnist`, `mnist:DIR`, `cifar10:DIR`, `folder:DIR` (an image folder,
    /// `ImageFolder`), or a folder of MNIST-format IDX files. `imageSize` resizes every image to
    /// imageSize × imageSize (bilinear, `ImageFile.resized`). `imageShape` matters to image folders alone:
    /// it fixes their channels and, without `imageSize`, their size (a test split takes its training split's).
    public static func load(_ spec: String, split: DatasetSplit, imageSize: Int? = nil, imageShape: [Int]? = nil) throws -> Dataset {
        if spec.hasPrefix("folder:") {
            return try ImageFolder.load(URL(fileURLWithPath: String(spec.dropFirst(7))), split: split, imageSize: imageSize, imageShape: imageShape)
        }
        if let imageSize, imageSize < 1 { throw KilnError.invalidArgument("--image-size must be at least 1, not \(imageSize)") }
        let dataset: Dataset
        if spec == "fashion-mnist" {
            dataset = try mnistFamily(directory: fashionMNISTDirectory, split: split, classNames: fashionMNISTClasses)
        } else if spec.hasPrefix("cifar10:") {
            dataset = try cifar10(directory: URL(fileURLWithPath: String(spec.dropFirst(8))), split: split)
        } else {
            let path = spec.hasPrefix("mnist:") ? String(spec.dropFirst(6)) : spec
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), isDirectory.boolValue else {
                throw KilnError.invalidArgument("data set '\(spec)': not fashion-mnist, mnist:DIR, cifar10:DIR, folder:DIR or an existing folder")
            }
            let names = path.lowercased().contains("fashion") ? fashionMNISTClasses : (0..<10).map(String.init)
            dataset = try mnistFamily(directory: URL(fileURLWithPath: path), split: split, classNames: names)
        }
        return imageSize.map { dataset.resized(toSize: $0) } ?? dataset
    }

    /// Every image resized to `size` × `size` (bilinear, `ImageFile.resized`).
    public func resized(toSize size: Int) -> Dataset {
        let (channels, height, width) = (imageShape[0], imageShape[1], imageShape[2])
        guard (height, width) != (size, size) else { return self }
        var pixels: [Float] = []
        pixels.reserveCapacity(count * channels * size * size)
        for index in 0..<count {
            let image = ImageFile(channels: channels, height: height, width: width,
                                  pixels: Array(self.pixels[(index * imageSize)..<((index + 1) * imageSize)]))
            pixels += image.resized(width: size, height: size).pixels
        }
        var result = Dataset(imageShape: [channels, size, size], pixels: pixels, labels: labels, classNames: classNames)
        result.convertedImages = convertedImages
        return result
    }

    /// MNIST-format IDX files (`train-images-idx3-ubyte[.gz]`, `train-labels-idx1-ubyte[.gz]`, `t10k-...`),
    /// scaled to [0, 1] as torchvision's ToTensor does.
    public static func mnistFamily(directory: URL, split: DatasetSplit, classNames: [String]) throws -> Dataset {
        let prefix = split == .train ? "train" : "t10k"
        func file(_ stem: String) throws -> URL {
            for name in [stem, stem + ".gz"] {
                let url = directory.appending(path: name)
                if FileManager.default.fileExists(atPath: url.path) { return url }
            }
            throw KilnError.corruptFile(path: directory.appending(path: stem).path, reason: "missing (also looked for .gz)")
        }
        let imagesURL = try file("\(prefix)-images-idx3-ubyte"), labelsURL = try file("\(prefix)-labels-idx1-ubyte")
        let images = try IDXFile.read(imagesURL, expectedRank: 3)
        let labels = try IDXFile.read(labelsURL, expectedRank: 1)
        guard images.dimensions[0] == labels.dimensions[0] else {
            throw KilnError.corruptFile(path: labelsURL.path, reason: "\(labels.dimensions[0]) labels for \(images.dimensions[0]) images in \(imagesURL.lastPathComponent)")
        }
        if let bad = labels.bytes.first(where: { Int($0) >= classNames.count }) {
            throw KilnError.corruptFile(path: labelsURL.path, reason: "label \(bad) is outside 0..<\(classNames.count)")
        }
        return Dataset(imageShape: [1, images.dimensions[1], images.dimensions[2]], pixels: images.bytes.map { Float($0) / 255 },
                       labels: labels.bytes.map(Int.init), classNames: classNames)
    }

    /// The CIFAR-10 binary version: records of one label byte and 3,072 CHW pixel bytes.
    public static func cifar10(directory: URL, split: DatasetSplit) throws -> Dataset {
        let files = split == .train ? (1...5).map { "data_batch_\($0).bin" } : ["test_batch.bin"]
        var pixels: [Float] = [], labels: [Int] = []
        for name in files {
            let url = directory.appending(path: name)
            let batch = try cifar10Batch(bytes: readPossiblyCompressed(url), path: url.path)
            pixels += batch.pixels
            labels += batch.labels
        }
        return Dataset(imageShape: [3, 32, 32], pixels: pixels, labels: labels, classNames: cifar10Classes)
    }

    /// The bytes of one CIFAR-10 batch file, already inflated (`path` names it in errors): a non-zero whole
    /// number of 3,073-byte records, each label below 10.
    static func cifar10Batch(bytes: [UInt8], path: String) throws -> (pixels: [Float], labels: [Int]) {
        let recordSize = 1 + 3 * 32 * 32
        guard !bytes.isEmpty else { throw KilnError.corruptFile(path: path, reason: "empty: no 3,073-byte records") }
        guard bytes.count % recordSize == 0 else {
            throw KilnError.corruptFile(path: path, reason: "\(bytes.count) bytes is not a whole number of 3,073-byte records "
                                        + "(\(bytes.count / recordSize) records and \(bytes.count % recordSize) bytes over)")
        }
        var pixels: [Float] = [], labels: [Int] = []
        pixels.reserveCapacity(bytes.count)
        for record in 0..<(bytes.count / recordSize) {
            let start = record * recordSize
            guard bytes[start] < 10 else {
                throw KilnError.corruptFile(path: path, reason: "label \(bytes[start]) in record \(record) (at byte \(start)) is outside 0..<10")
            }
            labels.append(Int(bytes[start]))
            pixels += bytes[(start + 1)..<(start + recordSize)].map { Float($0) / 255 }
        }
        return (pixels, labels)
    }
}

/// The IDX format of the MNIST family: zero bytes, a type code (0x08: unsigned bytes), the rank, big-endian
/// dimensions, then the data.
struct IDXFile {
    var dimensions: [Int]
    var bytes: [UInt8]

    static func read(_ url: URL, expectedRank: Int) throws -> IDXFile {
        try parse(bytes: readPossiblyCompressed(url), path: url.path, expectedRank: expectedRank)
    }

    /// An IDX file's bytes, already inflated (`path` names it in errors): the magic for unsigned bytes and
    /// `expectedRank`, the dimensions, and exactly their product of data bytes.
    static func parse(bytes data: [UInt8], path: String, expectedRank: Int) throws -> IDXFile {
        func corrupt(_ reason: String) -> KilnError { .corruptFile(path: path, reason: reason) }
        guard data.count >= 4 else { throw corrupt("truncated: \(data.count) bytes, no IDX header") }
        let magic = String(format: "0x%02x%02x%02x%02x", data[0], data[1], data[2], data[3])
        let wanted = String(format: "0x000008%02x", expectedRank)
        guard data[0] == 0, data[1] == 0 else {
            throw corrupt("bad magic \(magic) (expected \(wanted)): an IDX file starts with two zero bytes")
        }
        let types: [UInt8: String] = [0x09: "signed bytes", 0x0B: "16-bit integers", 0x0C: "32-bit integers", 0x0D: "32-bit floats", 0x0E: "64-bit floats"]
        guard data[2] == 0x08 else {
            throw corrupt("bad magic \(magic) (expected \(wanted)): type code 0x\(String(data[2], radix: 16)) (\(types[data[2]] ?? "not an IDX type")); Kiln reads unsigned bytes (0x08)")
        }
        guard Int(data[3]) == expectedRank else {
            throw corrupt("bad magic \(magic) (expected \(wanted)): rank \(data[3]), expected \(expectedRank) (\(expectedRank == 3 ? "images" : "labels"))")
        }
        let headerSize = 4 + 4 * expectedRank
        guard data.count >= headerSize else { throw corrupt("truncated: the header needs \(headerSize) bytes, the file has \(data.count)") }
        let dimensions = (0..<expectedRank).map { d in
            (0..<4).reduce(0) { $0 << 8 | Int(data[4 + 4 * d + $1]) }
        }
        var expected = headerSize
        var product = 1
        for dimension in dimensions {
            let (next, overflow) = product.multipliedReportingOverflow(by: dimension)
            guard !overflow else { throw corrupt("dimensions \(describe(dimensions)) multiply beyond what an Int counts") }
            product = next
        }
        let (total, overflow) = expected.addingReportingOverflow(product)
        guard !overflow else { throw corrupt("dimensions \(describe(dimensions)) multiply beyond what an Int counts") }
        expected = total
        guard data.count == expected else {
            throw corrupt("\(data.count < expected ? "truncated" : "too long"): expected \(expected) bytes for dimensions \(describe(dimensions)), got \(data.count)")
        }
        if expectedRank == 3, let empty = dimensions.dropFirst().firstIndex(of: 0) {
            throw corrupt("images of \(dimensions[1])×\(dimensions[2]) pixels (\(empty == 1 ? "rows" : "columns") is zero)")
        }
        return IDXFile(dimensions: dimensions, bytes: Array(data[headerSize...]))
    }
}
