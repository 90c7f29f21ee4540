import ArgumentParser
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
}
