import ArgumentParser
import Logging

/// `--log-level`, shared by the commands that log while they run.
struct LogOptions: ParsableArguments {
    @Option(name: .long, help: "Log level: trace, debug, info, notice, warning, error.")
    var logLevel: String = "info"

    /// The parsed level (`validate` has checked it).
    var level: Logger.Level { Logger.Level(rawValue: logLevel) ?? .info }

    func validate() throws {
        guard Logger.Level(rawValue: logLevel) != nil else {
            throw ValidationError("--log-level \(logLevel): expected trace, debug, info, notice, warning or error")
        }
    }
}
