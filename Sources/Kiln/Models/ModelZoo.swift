/// The models `kiln train --model NAME` and `kiln summary` know.
public enum ModelZoo {
    public static let names = ["lenet5", "lenet-bn", "alexnet", "vgg11", "vgg13", "vgg16", "vgg19",
                               "vgg11-bn", "vgg13-bn", "vgg16-bn", "vgg19-bn", "resnet18", "resnet34", "resnet50", "googlenet", "mobilenet"]

    /// Builds model `name` for images of `inputShape` ([C, H, W]) and `classes` classes.
    public static func make(_ name: String, inputShape: [Int], classes: Int) throws -> Sequential {
        guard inputShape.count == 3, inputShape[1] == inputShape[2] else {
            throw KilnError.invalidArgument("\(name): expects square [C, H, W] images, got \(describe(inputShape))")
        }
        let (channels, size) = (inputShape[0], inputShape[1])
        // Residual networks take the small-image stem below ImageNet sizes.
        let stem: ResNetStem = size >= 128 ? .imageNet : .smallImage
        let lowered = name.lowercased()
        if lowered.hasPrefix("vgg"), let depth = Int(lowered.dropFirst(3).prefix { $0.isNumber }) {
            return try VGG(depth: depth, batchNorm: lowered.hasSuffix("-bn"), inputChannels: channels, inputSize: size, classes: classes)
        }
        switch lowered {
        case "lenet5", "lenet-5": return try LeNet5(inputChannels: channels, inputSize: size, classes: classes)
        case "lenet-bn", "lenetbn": return try LeNetBN(inputChannels: channels, inputSize: size, classes: classes)
        case "alexnet": return try AlexNet(inputChannels: channels, inputSize: size, classes: classes)
        case "resnet18": return try ResNet18(inputChannels: channels, classes: classes, stem: stem)
        case "resnet34": return try ResNet34(inputChannels: channels, classes: classes, stem: stem)
        case "resnet50": return try ResNet50(inputChannels: channels, classes: classes, stem: stem)
        case "mobilenet": return try MobileNet(inputChannels: channels, classes: classes)
        case "googlenet": return try GoogLeNet(inputChannels: channels, classes: classes)
        default:
            throw KilnError.invalidArgument("unknown model '\(name)'; the zoo has: \(names.joined(separator: ", "))")
        }
    }
}
