import ArgumentParser
import Foundation
import Kiln

@main
struct KilnCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "kiln",
        abstract: "Train convolutional networks on any OpenCL device, with a host (CPU) fallback.",
        subcommands: [TrainCommand.self, EvalCommand.self, AugmentCommand.self, PredictCommand.self, ExportCommand.self, ExplainCommand.self, FeaturesCommand.self, DevicesCommand.self, WarmupCommand.self, LRFindCommand.self, SweepCommand.self, SummaryCommand.self, ModelsCommand.self, BenchCommand.self, MatmulCommand.self],
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
    /// The device `text` names. A misspelt spec is a usage error; a well-formed `cl:P:D` that this machine
    /// lacks is a runtime error (`KilnError.unknownDevice`, exit 1).
    static func parse(_ text: String) throws -> Device {
        try checkSyntax(text)
        return try Device(parsing: text)
    }

    /// Raises a usage error unless `text` is auto, host, cpu or cl:P:D.
    static func checkSyntax(_ text: String) throws {
        let parts = text.lowercased().split(separator: ":", omittingEmptySubsequences: false)
        guard ["auto", "host", "cpu"].contains(text.lowercased())
              || (parts.count == 3 && parts[0] == "cl" && Int(parts[1]) != nil && Int(parts[2]) != nil) else {
            throw ValidationError("--device must be auto, host or cl:P:D (see kiln devices), not '\(text)'")
        }
    }
}

/// The value of an option that turns something on or off (`--tensorboard off`).
enum OnOff: String, ExpressibleByArgument, CaseIterable {
    case on, off
}

/// A runtime failure of a command, in a sentence: printed as `error: <message>`, exit 1.
struct CommandError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// Writes `error: <message>` to standard error.
func printError(_ message: String) {
    FileHandle.standardError.write(Data("\(errorLabel)error: \(message)\n".utf8))
}

func printWarning(_ message: String) {
    FileHandle.standardError.write(Data("\(errorLabel)warning: \(message)\n".utf8))
}

/// What starts every line this process writes to standard error: "rank 1: " in the ranks of a data-parallel
/// job other than rank 0 (set once, before training starts).
nonisolated(unsafe) var errorLabel = ""

/// Says on standard error how many images of `data` loading converted between grey and colour, if any.
func reportConversions(_ count: Int, channels: Int, data: String) {
    guard count > 0 else { return }
    let what = channels >= 3 ? "grey image\(count == 1 ? "" : "s") converted to RGB, as the data holds colour images"
                             : "colour image\(count == 1 ? "" : "s") converted to grey, as the model takes one channel"
    FileHandle.standardError.write(Data("\(data): \(count) \(what)\n".utf8))
}

/// An error as a sentence: Kiln's own descriptions, Foundation's reason without its domain and code.
func describe(_ error: any Error) -> String {
    switch error {
    case let error as CustomStringConvertible where !(error is NSError) || error is KilnError: return error.description
    default:
        let error = error as NSError
        return error.localizedFailureReason ?? error.localizedDescription
    }
}

/// Runs the body of `command`, turning runtime errors into `error: <message>` and exit 1, and usage errors
/// into ArgumentParser's message with the subcommand's usage and exit 64 (ArgumentParser itself would show the
/// usage of `kiln` for an error thrown by `run`); explicit exit codes pass through.
func reportingErrors(_ command: any ParsableCommand.Type, _ body: () throws -> Void) throws {
    do { try body() } catch let error as ValidationError {
        fflush(nil)
        let name = command.configuration.commandName ?? "\(command)"
        FileHandle.standardError.write(Data("Error: \(error.message)\nUsage: \(KilnCommand.usageString(for: command))\n"
            .appending("  See 'kiln \(name) --help' for more information.\n").utf8))
        throw ExitCode.validationFailure
    } catch let error as ExitCode { throw error } catch let error as CleanExit {
        throw error
    } catch {
        fflush(nil)
        printError(describe(error))
        throw ExitCode.failure
    }
}
