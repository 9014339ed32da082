import ArgumentParser
import Foundation
import Kiln
import KilnInterop

struct ExplainCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "explain",
        abstract: "Show why a classifier scores an image as it does: saliency, SmoothGrad, integrated gradients, Grad-CAM, occlusion, feature maps, filters.",
        discussion: """
            For each image and method writes DIR/<name>_<method>.png (the map in the viridis colour map over the image) \
            and DIR/<name>_<method>.npy (the raw float32 map, H×W, for numpy.load), and lists every file with the predicted \
            and target class in DIR/explanations.csv. feature-maps writes the --layer's output as a grid (and its [C, H, W] \
            values); filters the first convolution's (or the --layer's) filters, once; maximize, once, the inputs that most excite \
            --channels of the --layer (gradient ascent with decay, blur and clipping). The model runs in inference mode; maps \
            are taken with respect to the preprocessed input, as the model sees it.
            """)

    static let methods = ["saliency", "smoothgrad", "integrated-gradients", "gradcam", "occlusion", "feature-maps", "filters", "maximize"]
    /// The methods that give a map per image, drawn side by side by --all.
    static let attributionMethods = Array(methods.prefix(5))

    @OptionGroup var source: CheckpointOptions
    @Option(parsing: .upToNextOption, help: "Indices of test-set images to explain.")
    var index: [Int] = []
    @Argument(help: "PNG, PGM or JPEG images, resized to the model's input size and converted to its channels.")
    var images: [String] = []
    @Option(parsing: .upToNextOption, help: ArgumentHelp("Methods: \(methods.joined(separator: ", ")).", valueName: "method"))
    var method: [String] = ["gradcam"]
    @Option(help: ArgumentHelp("The class to explain: an index, or top for the predicted class.", valueName: "class|top"))
    var target = "top"
    @Option(help: ArgumentHelp("Grad-CAM's and feature-maps' layer (default: the last with a spatial output), or the filters' convolution (default: the first), by dotted path.", valueName: "path"))
    var layer: String?
    @Option(help: "SmoothGrad: noisy copies.")
    var samples = 25
    @Option(help: "SmoothGrad: the noise's standard deviation as a fraction of the image's range.")
    var sigma: Float = 0.15
    @Option(help: "Integrated gradients: steps along the path from the baseline.")
    var steps = 64
    @Option(help: "Integrated gradients and occlusion: the baseline value (of the preprocessed input).")
    var baseline: Float = 0
    @Option(help: "Occlusion: the side of the square occluded, in pixels.")
    var patch = 4
    @Option(help: "Occlusion: the step between squares, in pixels.")
    var stride = 2
    @Flag(help: "Also write <name>_all.png per image: the image and every attribution method (saliency to occlusion) side by side.")
    var all = false
    @Option(parsing: .upToNextOption, help: "maximize: the channels of --layer (default: the first 8).")
    var channels: [Int] = []
    @Option(help: "maximize: steps of gradient ascent.")
    var ascentSteps = 200
    @Option(help: "The folder to write into.")
    var out = "explain"
    @Option(help: "Upscale the PNG images by this factor (nearest neighbour) to see small images (default: to about 224 px).")
    var scale: Int?
    @Option(help: ArgumentHelp("Also write the images into a TensorBoard event file in --out (tensorboard --logdir DIR).", valueName: "on|off"))
    var tensorboard = OnOff.on

    func validate() throws {
        if let unknown = method.first(where: { !Self.methods.contains($0) }) {
            throw ValidationError("unknown method '\(unknown)'; use \(Self.methods.joined(separator: ", "))")
        }
        guard target == "top" || Int(target) != nil else { throw ValidationError("--target must be a class index or top, not '\(target)'") }
        guard images.isEmpty == false || index.isEmpty == false else { throw ValidationError("give image files or --index N") }
        if let scale, scale < 1 { throw ValidationError("--scale must be at least 1, not \(scale)") }
        if method.contains("maximize"), layer == nil { throw ValidationError("maximize needs --layer: a layer, best one before its ReLU") }
    }

    func run() throws {
        try reportingErrors(Self.self) {
            let restored = try source.restore()
            guard try ModelZoo.entry(restored.name).task == .classification else {
                throw ValidationError("\(restored.name) is not a classifier: explain needs class scores")
            }
            let explainer = Explainer(model: restored.network, device: restored.device)
            let shape = restored.inputShape
            if let layer { do { _ = try restored.network.layer(named: layer) } catch { throw ValidationError("--layer: \(error)") } }
            let inputs = try restored.inputs(images: images, indices: index)
            let chosen = Dataset(imageShape: shape, pixels: inputs.flatMap(\.pixels), labels: inputs.map { $0.label ?? 0 },
                                 classNames: restored.classNames)
            guard let batch = try restored.batches(of: chosen, batchSize: inputs.count).next() else { return }
            let preprocessed = try batch.inputs.toArray(), size = shape.reduce(1, *)
            let classNames = restored.classNames

            // Every picture first, so that a bad option writes nothing.
            let factor = scale ?? Swift.max(1, 224 / Swift.max(shape[1], shape[2]))
            var results: [(file: String, picture: ImageFile, npy: [UInt8], row: String)] = []
            func row(_ fields: [String]) -> String { fields.map { $0.contains(",") ? "\"\($0)\"" : $0 }.joined(separator: ",") }
            if method.contains("filters") {
                let (path, filters) = try explainer.filters(layer: layer)
                results.append(("filters", try filters.grid(scale: Swift.max(1, 64 / Swift.max(filters.shape[2], filters.shape[3]))),
                                filters.npyData(), row(["", "filters of \(path)", "", "", "filters.png", "filters.npy"])))
            }
            if method.contains("maximize"), let layer {
                let (low, high) = (preprocessed.min() ?? 0, preprocessed.max() ?? 1)
                let found = try explainer.maximizingInputs(layer: layer, channels: channels.isEmpty ? Array(0..<8) : channels, imageShape: shape,
                                                           steps: ascentSteps, low: low, high: high)
                results.append(("\(layer)_maximize", try found.grid(scale: factor / 2 + 1), found.npyData(),
                                row(["", "maximize \(layer)", "", "", "\(layer)_maximize.png", "\(layer)_maximize.npy"])))
            }
            for (index, input) in inputs.enumerated() {
                let image = try Tensor(Array(preprocessed[(index * size)..<((index + 1) * size)]), shape: shape, on: restored.device)
                let predicted = try explainer.prediction(image)
                let explained = target == "top" ? predicted : Int(target) ?? predicted
                guard classNames.indices.contains(explained) else {
                    throw ValidationError("--target \(explained) is not one of the model's \(classNames.count) classes (0–\(classNames.count - 1))")
                }
                let name = input.label == nil ? URL(fileURLWithPath: input.name).deletingPathExtension().lastPathComponent
                    : "test-\(input.name.split(separator: " ").last ?? "")"
                let raw = ImageFile(channels: shape[0], height: shape[1], width: shape[2], pixels: input.pixels)
                let perImage = all ? Self.attributionMethods + method.filter { !Self.attributionMethods.contains($0) } : method
                var overview = [raw.converted(toChannels: 3).resized(width: shape[2] * factor, height: shape[1] * factor)]
                for method in perImage where method != "filters" && method != "maximize" {
                    let file = "\(name)_\(method)"
                    let picture: ImageFile, npy: [UInt8]
                    if method == "feature-maps" {
                        let maps = try explainer.featureMaps(image, layer: layer).maps
                        (picture, npy) = (try maps.grid(scale: Swift.max(1, factor * shape[1] / Swift.max(maps.shape[1], 1) / 2)), maps.npyData())
                    } else {
                        let map: AttributionMap
                        switch method {
                        case "saliency": map = try explainer.saliency(image, target: explained)
                        case "smoothgrad": map = try explainer.smoothGrad(image, target: explained, samples: samples, sigma: sigma)
                        case "integrated-gradients": map = try explainer.integratedGradients(image, target: explained, baseline: baseline, steps: steps)
                        case "occlusion": map = try explainer.occlusion(image, target: explained, patch: patch, stride: stride, baseline: baseline)
                        default: map = try explainer.gradCAM(image, target: explained, layer: layer)
                        }
                        (picture, npy) = (try map.overlay(on: raw, scale: factor), map.npyData())
                        overview.append(picture)
                    }
                    results.append((file, picture, npy, row([input.name, method, classNames[predicted], classNames[explained], "\(file).png", "\(file).npy"])))
                }
                if all {
                    let grid = try ImageGrid.tile(overview.flatMap(\.pixels), shape: [overview.count, 3, shape[1] * factor, shape[2] * factor],
                                                  columns: overview.count, border: 2)
                    results.append(("\(name)_all", grid, [], row([input.name, "all", classNames[predicted], classNames[explained], "\(name)_all.png", ""])))
                }
                print("\(input.name): predicted \(classNames[predicted]), explaining \(classNames[explained])"
                      + (input.label.map { " (true class: \(classNames[$0]))" } ?? ""))
            }
            let folder = URL(fileURLWithPath: out)
            for result in results {
                try result.picture.write(png: folder.appending(path: "\(result.file).png"))
                if !result.npy.isEmpty { try writeAtomically(result.npy, to: folder.appending(path: "\(result.file).npy")) }
            }
            if tensorboard == .on {
                let events = try TensorBoardEventWriter(folder: folder)
                for result in results { try events.image(result.file, result.picture, step: 0) }
            }
            let table = (["image,method,predicted,target,png,npy"] + results.map(\.row)).joined(separator: "\n") + "\n"
            try writeAtomically(Array(table.utf8), to: folder.appending(path: "explanations.csv"))
            print("wrote \(results.map { $0.npy.isEmpty ? 1 : 2 }.reduce(0, +)) files and explanations.csv to \(folder.path)")
        }
    }
}
