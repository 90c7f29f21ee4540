import ArgumentParser
import Foundation
import Punch

extension RelayError: CodedError {
    var codeName: String { code.rawValue }
}

/// `punch relay`: a public Circuit Relay v2 node.
struct RelayCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "relay",
        abstract: "Run a Circuit Relay v2 relay: reservations for peers behind NATs, circuits to them.",
        discussion: """
            Peers reserve a slot (punch listen --relay ADDR) and others reach them through \
            /p2p/RELAY/p2p-circuit/p2p/PEER. Circuits carry the peers' own Noise: the relay \
            forwards ciphertext. Each circuit is limited in duration and bytes per direction \
            (0 means unlimited, for a private relay). Runs until SIGINT or SIGTERM.

            With --json, the first line is
              {"event":"listening","peer_id":"12D3KooW...","addrs":[...]}
            then one line per event: reserved, reservation_ended, circuit_opened,
            circuit_closed, refused, connected, disconnected.

            Examples:
              punch relay --listen /ip4/0.0.0.0/tcp/4001
              punch relay --listen /ip4/203.0.113.10/tcp/4001 --limit-duration 0 --limit-bytes 0 --json
            """
    )

    @Option(name: .long, help: ArgumentHelp("A TCP multiaddr to listen on; repeat for more.", valueName: "multiaddr"))
    var listen: [String] = ["/ip4/0.0.0.0/tcp/4001"]

    @Option(name: .long, help: ArgumentHelp("The identity key file (created if missing).", valueName: "file"))
    var identity: String = IdentityCommand.defaultIdentityPath

    @Option(name: .long, help: ArgumentHelp("The longest a circuit may last, in seconds; 0: no limit.", valueName: "s"))
    var limitDuration: Int = 120

    @Option(name: .long, help: ArgumentHelp("The most bytes a circuit carries each way; 0: no limit.", valueName: "n"))
    var limitBytes: UInt64 = 128 * 1024

    @Option(name: .long, help: ArgumentHelp("How long a reservation lasts unless the peer refreshes it, in seconds.", valueName: "s"))
    var reservationDuration: Int = 3600

    @Flag(name: .long, help: "Print one JSON object per line.")
    var json = false

    func validate() throws {
        guard limitDuration >= 0 else { throw ValidationError("--limit-duration must be 0 or more") }
        guard reservationDuration >= 1 else { throw ValidationError("--reservation-duration must be at least 1") }
    }

    func run() async throws {
        do {
            let key = try IdentityKeyFile.loadOrCreate(at: identity).key
            let host = PunchHost(configuration: HostConfiguration(identity: key))
            let output = EventPrinter(json: json)
            var relayConfiguration = RelayConfiguration()
            relayConfiguration.circuitDuration = limitDuration == 0 ? nil : .seconds(Int64(limitDuration))
            relayConfiguration.circuitBytes = limitBytes == 0 ? nil : limitBytes
            relayConfiguration.reservationDuration = .seconds(Int64(reservationDuration))
            var addresses: [Multiaddr] = []
            for text in listen {
                addresses += try await host.listen(Multiaddr(text))
            }
            let relay = RelayServer(
                host: host, addresses: addresses.map { $0.withoutPeerID() }, configuration: relayConfiguration
            ) { event in
                output.relay(event)
            }
            output.listening(host.peerID, addresses)
            let events = Task {
                for await event in host.events { output.print(event) }
            }
            await SignalWaiter.waitForTermination()
            _ = relay
            await host.close()
            _ = await events.value
        } catch {
            throw CommandFailure.report(error, json: json)
        }
    }
}

extension EventPrinter {
    func relay(_ event: RelayServer.Event) {
        switch event {
        case .reserved(let peer, let renewal):
            emitLine(["event": "reserved", "peer_id": "\(peer)", "renewal": renewal], "\(renewal ? "renewed" : "granted") a reservation to \(peer)")
        case .reservationEnded(let peer):
            emitLine(["event": "reservation_ended", "peer_id": "\(peer)"], "reservation of \(peer) ended")
        case .circuitOpened(let from, let to):
            emitLine(["event": "circuit_opened", "from": "\(from)", "to": "\(to)"], "circuit \(from) -> \(to) opened")
        case .circuitClosed(let from, let to, let bytes, let reason):
            emitLine(
                ["event": "circuit_closed", "from": "\(from)", "to": "\(to)", "bytes": bytes, "reason": reason],
                "circuit \(from) -> \(to) closed after \(bytes) bytes: \(reason)")
        case .refused(let peer, let request, let status):
            emitLine(
                ["event": "refused", "peer_id": "\(peer)", "request": request, "status": status.name],
                "refused \(request) from \(peer): \(status.name)")
        }
    }
}
