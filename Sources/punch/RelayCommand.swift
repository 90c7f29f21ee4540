import ArgumentParser
import Foundation
import Logging
import NIOCore
import Punch

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

            The relay also answers STUN Binding requests on --stun-port (default 3478, UDP and \
            TCP; 0 turns it off) of every address it listens on, so peers learn their public \
            address from the box they reserve on, and serves AutoNAT v2 (unless --no-autonat): \
            peers learn whether their addresses are reachable. With --metrics HOST:PORT it serves Prometheus metrics \
            at http://HOST:PORT/metrics (reservations, circuits, bytes relayed, refusals by \
            status, STUN responses and drops, connections by path).

            Reservations are limited to --max-reservations in total and \
            --max-reservations-per-ip from one IP address, circuits to --max-circuits, and \
            connections (reserved or not) to --max-connections; raise them for a large \
            private relay (each connection needs a file descriptor: see ulimit -n).

            With --json, the first line is
              {"event":"listening","peer_id":"12D3KooW...","addrs":[...],"stun":["IP:3478"],"autonat":true,"metrics":"http://..."}
            then one line per event: reserved, reservation_ended, circuit_opened,
            circuit_closed, refused, cut_off, autonat, connected, disconnected.

            Examples:
              punch relay --listen /ip4/0.0.0.0/tcp/4001
              punch relay --listen /ip4/203.0.113.10/tcp/4001 --limit-duration 0 --limit-bytes 0 --json
              punch relay --listen /ip4/0.0.0.0/tcp/4001 --metrics 127.0.0.1:9464
              punch relay --listen /ip4/0.0.0.0/tcp/4001 --max-reservations 10000 --max-reservations-per-ip 10000 --max-connections 12000
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

    @Option(name: .long, help: ArgumentHelp("The port (UDP and TCP) of the STUN server on each listen address; 0: no STUN server.", valueName: "n"))
    var stunPort: UInt16 = 3478

    @Option(name: .long, help: ArgumentHelp("Serve Prometheus metrics at http://HOST:PORT/metrics.", valueName: "host:port"))
    var metrics: String?

    @Flag(name: .long, help: "Do not serve AutoNAT v2 (by default the relay tells peers whether their addresses are reachable).")
    var noAutonat = false

    @Option(name: .long, help: ArgumentHelp("How long a reservation lasts unless the peer refreshes it, in seconds.", valueName: "s"))
    var reservationDuration: Int = 3600

    @Option(name: .long, help: ArgumentHelp("Reservations held at once, in total.", valueName: "n"))
    var maxReservations: Int = RelayConfiguration().maximumReservations

    @Option(name: .long, help: ArgumentHelp("Reservations held at once from one IP address.", valueName: "n"))
    var maxReservationsPerIp: Int = RelayConfiguration().maximumReservationsPerIP

    @Option(name: .long, help: ArgumentHelp("Circuits open at once, in total.", valueName: "n"))
    var maxCircuits: Int = RelayConfiguration().maximumCircuits

    @Option(name: .long, help: ArgumentHelp("Connections open at once, inbound and outbound.", valueName: "n"))
    var maxConnections: Int = HostConfiguration.defaultMaximumConnections

    @Flag(name: .long, help: "Print one JSON object per line.")
    var json = false

    func validate() throws {
        guard limitDuration >= 0 else { throw ValidationError("--limit-duration must be 0 or more") }
        guard maxReservations > 0, maxReservationsPerIp > 0, maxCircuits > 0, maxConnections > 0 else {
            throw ValidationError("--max-reservations, --max-reservations-per-ip, --max-circuits and --max-connections must be 1 or more")
        }
        if let metrics, (try? IPEndpoint(metrics)) == nil {
            throw ValidationError("--metrics wants IP:PORT (such as 127.0.0.1:9464 or [::1]:9464), not \(metrics)")
        }
        guard reservationDuration >= 1 else { throw ValidationError("--reservation-duration must be at least 1") }
    }

    func run() async throws {
        do {
            let key = try IdentityKeyFile.loadOrCreate(at: identity).key
            var hostConfiguration = HostConfiguration(identity: key)
            hostConfiguration.maximumConnections = maxConnections
            let host = PunchHost(configuration: hostConfiguration, logger: Logger(label: "punch.host"))
            let output = EventPrinter(json: json)
            var relayConfiguration = RelayConfiguration()
            relayConfiguration.circuitDuration = limitDuration == 0 ? nil : .seconds(Int64(limitDuration))
            relayConfiguration.circuitBytes = limitBytes == 0 ? nil : limitBytes
            relayConfiguration.reservationDuration = .seconds(Int64(reservationDuration))
            relayConfiguration.maximumReservations = maxReservations
            relayConfiguration.maximumReservationsPerIP = maxReservationsPerIp
            relayConfiguration.maximumCircuits = maxCircuits
            var addresses: [Multiaddr] = []
            for text in listen {
                addresses += try await host.listen(Multiaddr(text))
            }
            let relay = RelayServer(
                host: host, addresses: addresses.map { $0.withoutPeerID() }, configuration: relayConfiguration
            ) { event in
                output.relay(event)
            }
            // AutoNAT v2 (libp2p/specs autonat/autonat-v2.md): peers learn whether their addresses
            // are reachable; dial-backs leave from an ephemeral port, never the listen port.
            if !noAutonat {
                let json = self.json
                try AutoNATServer.serve(on: host) { record in AutoNATServerCommand.print(record, json: json, event: "autonat") }
            }
            // STUN on each distinct listen IP (RFC 8489 Binding; the same box as the relay, so a
            // peer learns the address its reservation connection leaves from).
            var stunServers: [STUNServer] = []
            if stunPort != 0 {
                var ips: [IPAddress] = []
                for address in addresses {
                    if case .ip(let ip)? = address.transport?.host, !ips.contains(ip) { ips.append(ip) }
                }
                for ip in ips {
                    do {
                        stunServers.append(try await STUNServer.start(STUNServerConfiguration(listen: IPEndpoint(address: ip, port: stunPort))))
                    } catch let error as DiscoveryError {
                        throw DiscoveryError(error.code, "the relay's STUN server: \(error.message); choose another port with --stun-port N, or none with --stun-port 0")
                    }
                }
            }
            let stunAddresses = stunServers.flatMap(\.localAddresses).map(\.description)
            var metricsChannel: Channel?
            if let metrics {
                let exporter = RelayMetrics()
                let servers = stunServers
                metricsChannel = try await MetricsEndpoint.start(at: try IPEndpoint(metrics)) {
                    var statistics: [STUNServerStateMachine.Statistics] = []
                    for server in servers { if let value = try? await server.statistics() { statistics.append(value) } }
                    return exporter.render(relay: relay.metrics, stun: statistics, connections: host.connections)
                }
            }
            let metricsURL = metricsChannel?.localAddress.flatMap(IPEndpoint.init).map { "http://\($0)/metrics" }
            var extra: [String: Any] = ["stun": stunAddresses, "autonat": !noAutonat]
            if let metricsURL { extra["metrics"] = metricsURL }
            output.listening(
                host.peerID, addresses, extra: extra,
                lines: stunAddresses.map { "STUN on udp \($0)" } + (metricsURL.map { ["metrics at \($0)"] } ?? []))
            let events = Task {
                for await event in host.events { output.print(NodeEvent(event)) }
            }
            await SignalWaiter.waitForTermination()
            try? await metricsChannel?.close()
            for server in stunServers { try? await server.close() }
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
        case .cutOff(let peer, let reason):
            emitLine(["event": "cut_off", "peer_id": "\(peer)", "reason": reason], "cut off \(peer): \(reason)")
        }
    }
}
