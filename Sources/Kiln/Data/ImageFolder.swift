import Foundation

/// A folder of images in torchvision's `ImageFolder` layout: one sub-folder per class, named by the class,
/// holding that class's images (at any depth below it). Classes are the sub-folder names sorted by code
/// point, as Python's `sorted` orders them, so label k means the same class in Kiln and torchvision. A
/// folder with `train/` and `test/` sub-folders, each laid out so, holds both splits; any other folder is a
/// training set alone.
///
/// Only files with the extensions Kiln decodes are taken (as torchvision takes only its known ones), so
/// notes and lists beside the images are passed over; names starting with "." (hidden files, `.DS_Store`,
/// `.ipynb_checkpoints`) are passed over too, where torchvision would make a class of a hidden folder.
public enum ImageFolder {
    /// The extensions of the files read, lower case (matched case-insensitively).
    public static let extensions = ["jpeg", "jpg", "pgm", "png"]

    /// The folder that holds `split` of the data set in `directory`.
    public static func splitDirectory(_ directory: URL, split: DatasetSplit) throws -> URL {
        guard isDirectory(directory) else {
            throw KilnError.corruptFile(path: directory.path, reason: FileManager.default.fileExists(atPath: directory.path)
                                        ? "is not a folder: an image folder holds one sub-folder per class" : "does not exist")
        }
        let train = directory.appending(path: "train"), test = directory.appending(path: "test")
        switch (isDirectory(train), isDirectory(test)) {
        case (true, true):
            return split == .train ? train : test
        case (true, false), (false, true):
            let (present, missing) = isDirectory(train) ? ("train", "test") : ("test", "train")
            throw KilnError.corruptFile(path: directory.path, reason: "has a \(present)/ folder but no \(missing)/: give both splits as "
                                        + "\(directory.path)/train and \(directory.path)/test, each with one sub-folder per class")
        case (false, false):
            guard split == .train else {
                throw KilnError.corruptFile(path: directory.path, reason: "has no test split: it has no train/ and test/ sub-folders, so it is "
                                            + "a training set alone; for a test set, lay the images out as \(directory.path)/train/CLASS/… "
                                            + "and \(directory.path)/test/CLASS/…")
            }
            return directory
        }
    }

    /// The classes of the folder `directory` of one split, in label order, each with its image files in the
    /// order torchvision lists them (folder by folder, sorted, then file names sorted).
    public static func classes(in directory: URL) throws -> [(name: String, files: [URL])] {
        let names = try visibleEntries(of: directory).filter { isDirectory(directory.appending(path: $0)) }.sorted(by: precedesInCodePoints)
        guard !names.isEmpty else {
            throw KilnError.corruptFile(path: directory.path, reason: "holds no class sub-folders: an image folder has one sub-folder per class "
                                        + "(\(directory.path)/CLASS/IMAGE.png), or train/ and test/ folders laid out so")
        }
        return try names.map { name in
            let folder = directory.appending(path: name)
            let files = try imageFiles(under: folder)
            guard !files.isEmpty else {
                throw KilnError.corruptFile(path: folder.path, reason: "class '\(name)' holds no image (no file ending in "
                                            + extensions.map { ".\($0)" }.joined(separator: ", ") + ")")
            }
            return (name, files)
        }
    }

    /// The `split` of the image folder `directory` as a data set, every image scaled to [0, 1].
    ///
    /// - `imageSize` resizes every image to imageSize × imageSize (`ImageFile.resized`); without it every
    ///   image must already have one size.
    /// - `imageShape` [C, H, W], when given (a test split takes its training split's), fixes the channels and,
    ///   without `imageSize`, the size the images must have.
    /// - Channels otherwise follow the data: three when any image is in colour (grey ones repeated), one when
    ///   all are grey; alpha is dropped. `convertedImages` of the result counts the images converted between
    ///   grey and colour.
    public static func load(_ directory: URL, split: DatasetSplit, imageSize: Int? = nil, imageShape: [Int]? = nil) throws -> Dataset {
        if let imageSize, imageSize < 1 { throw KilnError.invalidArgument("--image-size must be at least 1, not \(imageSize)") }
        let folder = try splitDirectory(directory, split: split)
        let classes = try classes(in: folder)
        let wanted: (width: Int, height: Int)? = imageSize.map { ($0, $0) } ?? imageShape.map { ($0[2], $0[1]) }
        var images: [ImageFile] = [], labels: [Int] = []
        var first: (file: URL, width: Int, height: Int)?
        for (label, entry) in classes.enumerated() {
            for file in entry.files {
                var image = try ImageFile.read(file)
                if let imageSize {
                    image = image.resized(width: imageSize, height: imageSize)
                } else if let wanted, (image.width, image.height) != wanted {
                    throw KilnError.invalidArgument("\(file.path) is \(image.width)×\(image.height) but the training images are "
                                                    + "\(wanted.width)×\(wanted.height): pass --image-size N to resize every image to N×N")
                } else if let first, (image.width, image.height) != (first.width, first.height) {
                    throw KilnError.invalidArgument("the images of \(folder.path) differ in size: \(first.file.path) is \(first.width)×\(first.height), "
                                                    + "\(file.path) is \(image.width)×\(image.height): pass --image-size N to resize every image to N×N")
                }
                if first == nil { first = (file, image.width, image.height) }
                images.append(image)
                labels.append(label)
            }
        }
        let anyColour = images.contains { $0.channels >= 3 }
        let channels = imageShape?[0] ?? (anyColour ? 3 : 1)
        var converted = 0
        var pixels: [Float] = []
        pixels.reserveCapacity(images.count * channels * (first?.height ?? 0) * (first?.width ?? 0))
        for image in images {
            if (image.channels >= 3) != (channels >= 3) { converted += 1 }
            pixels += image.channels == channels ? image.pixels : image.converted(toChannels: channels).pixels
        }
        let shape = [channels, images.first?.height ?? 0, images.first?.width ?? 0]
        var dataset = Dataset(imageShape: shape, pixels: pixels, labels: labels, classNames: classes.map(\.name))
        dataset.convertedImages = converted
        return dataset
    }

    /// The image files under `folder`, at any depth: torchvision's `sorted(os.walk(folder))` order, folder by
    /// folder (by path), each folder's files by name.
    private static func imageFiles(under folder: URL) throws -> [URL] {
        var found: [(directory: String, name: String, url: URL)] = []
        var pending: [(relative: String, url: URL)] = [("", folder)]
        while let (relative, url) = pending.popLast() {
            for name in try visibleEntries(of: url) {
                let entry = url.appending(path: name)
                if isDirectory(entry) {
                    pending.append((relative.isEmpty ? name : relative + "/" + name, entry))
                } else if extensions.contains(entry.pathExtension.lowercased()) {
                    found.append((relative, name, entry))
                }
            }
        }
        return found.sorted {
            $0.directory != $1.directory ? precedesInCodePoints($0.directory, $1.directory) : precedesInCodePoints($0.name, $1.name)
        }.map(\.url)
    }

    /// The names in `directory` that do not start with ".".
    private static func visibleEntries(of directory: URL) throws -> [String] {
        do {
            return try FileManager.default.contentsOfDirectory(atPath: directory.path).filter { !$0.hasPrefix(".") }
        } catch {
            throw KilnError.corruptFile(path: directory.path, reason: "cannot be listed (\(describeFileError(error)))")
        }
    }

    private static func isDirectory(_ url: URL) -> Bool {
        var isDirectory: ObjCBool = false
        return FileManager.default.fileExists(atPath: url.path, isDirectory: &isDirectory) && isDirectory.boolValue
    }

    /// Python's string order (by code point), which torchvision sorts class names with; Swift's own `<`
    /// compares canonical equivalents, which can order non-ASCII names differently.
    private static func precedesInCodePoints(_ a: String, _ b: String) -> Bool {
        a.unicodeScalars.lexicographicallyPrecedes(b.unicodeScalars) { $0.value < $1.value }
    }
}
