/// The models `kiln train --model NAME` and `kiln summary` know.
public enum ModelZoo {
    public static let names = ["lenet5", "lenet-bn"]

    /// Builds model `name` for images of `inputShape` ([C, H, W]) and `classes` classes.
    public static func make(_ name: String, inputShape: [Int], classes: Int) throws -> Sequential {
        guard inputShape.count == 3, inputShape[1] == inputShape[2] else {
            throw KilnError.invalidArgument("\(name): expects square [C, H, W] images, got \(describe(inputShape))")
        }
        switch name.lowercased() {
        case "lenet5", "lenet-5": return try LeNet5(inputChannels: inputShape[0], inputSize: inputShape[1], classes: classes)
        case "lenet-bn", "lenetbn": return try LeNetBN(inputChannels: inputShape[0], inputSize: inputShape[1], classes: classes)
        default:
            throw KilnError.invalidArgument("unknown model '\(name)'; the zoo has: \(names.joined(separator: ", "))")
        }
    }
}
