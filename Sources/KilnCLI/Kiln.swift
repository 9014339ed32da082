import ArgumentParser
import Kiln

@main
struct KilnCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "kiln",
        abstract: "Train convolutional networks on any OpenCL device, with a host (CPU) fallback.",
        subcommands: [TrainCommand.self, EvalCommand.self, PredictCommand.self, DevicesCommand.self, SummaryCommand.self, ModelsCommand.self, BenchCommand.self, MatmulCommand.self],
        defaultSubcommand: nil)
}

/// Parses a `--device` value, turning Kiln's error (which lists the devices) into a usage error.
struct DeviceOption: ExpressibleByArgument {
    let device: Device
    let text: String

    init?(argument: String) {
        guard let device = try? Device(parsing: argument) else { return nil }
        self.device = device
        text = argument
    }

    static var defaultCompletionKind: CompletionKind {
        .list(["auto", "host"] + Device.available.map(\.description))
    }
}

extension DeviceOption {
    static func parse(_ text: String) throws -> Device {
        do { return try Device(parsing: text) } catch { throw ValidationError("\(error)") }
    }
}
