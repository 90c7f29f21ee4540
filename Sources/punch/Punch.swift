import ArgumentParser
import Punch

@main
struct PunchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "punch",
        abstract: "Direct, encrypted connections between programs behind NATs.",
        version: PunchVersion.current,
        subcommands: []
    )
}
