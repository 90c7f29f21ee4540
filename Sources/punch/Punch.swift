import ArgumentParser
import Foundation
import Logging
import Punch

@main
struct PunchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "punch",
        abstract: "Direct, encrypted connections between programs behind NATs.",
        discussion: """
            Punch speaks the libp2p protocols (Noise, yamux, Circuit Relay v2, DCUtR) and the IETF's \
            (STUN, NAT-PMP, PCP, UPnP-IGD). Every command takes --json for one JSON object per line.
            """,
        version: PunchVersion.current,
        subcommands: [
            IdentityCommand.self, ListenCommand.self, DialCommand.self, RelayCommand.self, DemoCommand.self, NetcheckCommand.self, STUNCommand.self,
            MapCommand.self, AutoNATCommand.self, AutoNATServerCommand.self, LabCommand.self,
        ]
    )

    /// The environment variable that sets the log level of Punch's libraries (trace, debug, info,
    /// notice, warning, error, critical; default warning). Logs go to stderr as swift-log's
    /// `StreamLogHandler` prints them, so `--json` output on stdout stays clean.
    static let logLevelVariable = "PUNCH_LOG_LEVEL"

    static func main() async {
        var level = Logger.Level.warning
        if let text = ProcessInfo.processInfo.environment[logLevelVariable] {
            if let parsed = Logger.Level(rawValue: text.lowercased()) {
                level = parsed
            } else {
                FileHandle.standardError.write(Data(
                    "punch: \(logLevelVariable)=\(text) is not a log level (\(Logger.Level.allCases.map(\.rawValue).joined(separator: ", "))); using warning\n".utf8))
            }
        }
        let chosen = level
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = chosen
            return handler
        }
        do {
            var command = try parseAsRoot()
            if var command = command as? AsyncParsableCommand {
                try await command.run()
            } else {
                try command.run()
            }
        } catch {
            exit(withError: error)
        }
    }
}
