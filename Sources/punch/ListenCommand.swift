import ArgumentParser
import Foundation
import Logging
import NIOCore
import Punch

/// `punch listen`: a node that serves ping, identify and echo.
struct ListenCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "listen",
        abstract: "Listen for libp2p connections and serve ping, identify and /punch/echo/1.0.0.",
        discussion: """
            Every connection is secured with Noise and multiplexed with yamux. Runs until \
            interrupted (SIGINT or SIGTERM), then closes its connections.

            With --json, the first line is
              {"event":"listening","peer_id":"12D3KooW...","addrs":["/ip4/.../tcp/4001/p2p/12D3KooW..."]}
            and each connection event follows as one line: connected, identified, echo,
            disconnected, connection_failed, upgraded, upgrade_failed (with retry_in_s when
            another hole punch follows). With --relay, each reservation prints
              {"event":"reserved","relay":...,"circuit_addrs":[...],"expires_in_s":...}
            and is refreshed before it expires; a lost relay is re-reserved with backoff.

            Examples:
              punch listen --listen /ip4/0.0.0.0/tcp/4001
              punch listen --listen /ip4/127.0.0.1/tcp/0 --identity ./node.key --json
              punch listen --listen /ip4/0.0.0.0/tcp/4001 --relay /ip4/203.0.113.10/tcp/4001/p2p/12D3KooW...
            """
    )

    @Option(name: .long, help: ArgumentHelp("A TCP multiaddr to listen on; repeat for more.", valueName: "multiaddr"))
    var listen: [String] = ["/ip4/0.0.0.0/tcp/4001"]

    @Option(name: .long, help: ArgumentHelp("The identity key file (created if missing).", valueName: "file"))
    var identity: String = IdentityCommand.defaultIdentityPath

    @Option(name: .long, help: ArgumentHelp("A relay to reserve a slot on (…/p2p/RELAY); repeat for more.", valueName: "multiaddr"))
    var relay: [String] = []

    @Option(name: .long, help: ArgumentHelp(
        "Distinct peers that must report our public address (identify's observed address) before a hole punch offers it.",
        valueName: "n"))
    var confirmations: Int = NodeCommandSupport.defaultConfirmations

    @Option(name: .long, help: ArgumentHelp(
        "The largest yamux receive window a stream grows to, in bytes (auto-tuning; 262144, the starting window, turns growth off).",
        valueName: "bytes"))
    var maxStreamWindow: Int = Int(YamuxConfiguration().maximumStreamReceiveWindow)

    @Option(name: .long, help: ArgumentHelp("Serve Prometheus metrics at http://HOST:PORT/metrics.", valueName: "host:port"))
    var metrics: String?

    @Flag(name: .long, help: "Map the listening port on the gateway (PCP, NAT-PMP, then UPnP-IGD) and offer the mapped address to hole punches.")
    var portMapping = false

    @Flag(name: .long, help: "Print one JSON object per line.")
    var json = false

    func validate() throws {
        guard (0...Int(UInt32.max)).contains(maxStreamWindow) else { throw ValidationError("--max-stream-window must be between 0 and 4294967295") }
        guard confirmations >= 1 else { throw ValidationError("--confirmations must be at least 1") }
        if let metrics { _ = try NodeCommandSupport.endpoint(metrics, option: "--metrics") }
    }

    func run() async throws {
        do {
            let key = try IdentityKeyFile.loadOrCreate(at: identity).key
            var configuration = NodeConfiguration(identity: key)
            configuration.host.yamux.maximumStreamReceiveWindow = UInt32(maxStreamWindow)
            configuration.listenAddresses = try listen.map { try Multiaddr($0) }
            configuration.relays = try relay.map { try Multiaddr($0) }
            configuration.observedAddresses.confirmations = confirmations
            configuration.portMapping = portMapping ? .enabled : .disabled
            configuration.logger = Logger(label: "punch.node")
            var exporter: (channel: Channel, address: IPEndpoint)?
            if let metrics { exporter = try await NodeCommandSupport.serveMetrics(at: metrics, into: &configuration) }
            let node = try PunchNode(configuration: configuration)
            let output = EventPrinter(json: json)
            Echo.register(on: node.host) { stream, count in
                output.echo(stream, bytes: count)
            }
            let events = node.events
            let addresses = try await node.start()
            output.listening(node.peerID, addresses, extra: exporter.map { ["metrics": "http://\($0.address)/metrics"] } ?? [:])
            let printer = Task {
                for await event in events { output.print(event) }
            }
            await SignalWaiter.waitForTermination()
            await node.shutdown()
            _ = await printer.value
            try? await exporter?.channel.close()
        } catch {
            throw CommandFailure.report(error, json: json)
        }
    }
}

/// Prints host events for people or, with `--json`, as JSON lines.
struct EventPrinter: Sendable {
    let json: Bool

    /// The first line: our PeerID and addresses; `extra` adds JSON fields and `lines` text lines.
    func listening(_ peer: PeerID, _ addresses: [Multiaddr], extra: [String: Any] = [:], lines: [String] = []) {
        if json {
            JSONLine.print(extra.merging(["event": "listening", "peer_id": "\(peer)", "addrs": addresses.map { "\($0)" }]) { $1 })
        } else {
            Swift.print("peer id \(peer)")
            for address in addresses { Swift.print("listening on \(address)") }
            for line in lines { Swift.print(line) }
        }
        fflush(nil)
    }

    func echo(_ stream: HostStream, bytes: Int) {
        if json {
            JSONLine.print(["event": "echo", "peer_id": "\(stream.connection.remotePeerID)", "bytes": bytes])
        } else {
            Swift.print("echoed \(bytes) bytes for \(stream.connection.remotePeerID)")
            fflush(nil)
        }
    }

    func print(_ event: NodeEvent) {
        switch event {
        case .listening:
            return  // printed once, with all addresses, by `listening(_:_:)`
        case .connected(let connection):
            emit(
                ["event": "connected", "peer_id": "\(connection.remotePeerID)", "direction": connection.direction.rawValue,
                 "path": connection.path.rawValue, "remote_addr": connection.remoteAddress.map { "\($0)" } ?? ""],
                "connected \(connection.direction.rawValue) (\(connection.path.rawValue)) \(connection.remotePeerID) at \(connection.remoteAddress.map { "\($0)" } ?? "?")")
        case .identified(let connection, let info):
            emit(
                ["event": "identified", "peer_id": "\(connection.remotePeerID)", "agent_version": info.agentVersion ?? "",
                 "observed_addr": info.observedAddress.map { "\($0)" } ?? "", "protocols": info.protocols],
                "identified \(connection.remotePeerID): \(info.agentVersion ?? "unknown agent"), sees us as \(info.observedAddress.map { "\($0)" } ?? "?")")
        case .disconnected(let connection, let error):
            var object: [String: Any] = ["event": "disconnected", "peer_id": "\(connection.remotePeerID)", "path": connection.path.rawValue]
            if let error { object["code"] = error.code.name; object["message"] = error.message }
            emit(object, "disconnected \(connection.remotePeerID)" + (error.map { ": \($0.message)" } ?? ""))
        case .connectionFailed(let direction, let remote, let error):
            emit(
                ["event": "connection_failed", "direction": direction.rawValue, "remote_addr": remote.map { "\($0)" } ?? "",
                 "code": error.code.name, "message": error.message],
                "\(direction.rawValue) connection from \(remote.map { "\($0)" } ?? "?") failed: \(error.message)")
        case .duplicateConnection(let connection, let kept):
            emit(
                ["event": "duplicate_connection", "peer_id": "\(connection.remotePeerID)", "path": connection.path.rawValue,
                 "kept_path": kept.path.rawValue, "remote_addr": connection.remoteAddress.map { "\($0)" } ?? ""],
                "a second connection to \(connection.remotePeerID) closes once idle; keeping the \(kept.path.rawValue) one")
        case .reserved(let reservation):
            let remaining = reservation.expiration.timeIntervalSinceNow
            emit(
                ["event": "reserved", "relay": "\(reservation.relay)", "circuit_addrs": reservation.circuitAddresses.map { "\($0)" },
                 "expires_in_s": Int(remaining), "limit_duration_s": reservation.limitDuration.map { Int($0) } ?? 0,
                 "limit_bytes": reservation.limitBytes ?? 0],
                "reserved on \(reservation.relay) for \(Int(remaining)) s; reachable at "
                    + reservation.circuitAddresses.map { "\($0)" }.joined(separator: " "))
        case .reservationFailed(let relay, let error, let retryIn):
            let coded = error.coded
            emit(
                ["event": "reservation_failed", "relay": "\(relay)", "code": coded?.code ?? "error",
                 "message": coded?.message ?? "\(error)", "retry_in_s": retryIn.seconds],
                "reservation on \(relay) failed: \(coded?.message ?? "\(error)"); retrying in \(String(format: "%.1f", retryIn.seconds)) s")
        case .relayLost(let relay):
            emit(["event": "relay_lost", "relay": "\(relay)"], "lost the relay \(relay); reserving again")
        case .upgraded(let peer, let outcome, let relayedToDirect):
            var object: [String: Any] = [
                "event": "upgraded", "peer_id": "\(peer)", "path": outcome.connection.path.rawValue,
                "attempt": outcome.attempt, "remote_addr": outcome.connection.remoteAddress.map { "\($0)" } ?? "",
                "local_addr": outcome.connection.localAddress.map { "\($0)" } ?? "",
                "punch_ms": outcome.elapsed.milliseconds,
            ]
            if let rtt = outcome.roundTrip { object["relay_rtt_ms"] = rtt.milliseconds }
            if let relayedToDirect { object["relayed_to_direct_ms"] = relayedToDirect.milliseconds }
            emit(object, "upgraded \(peer) to a direct connection (\(outcome.connection.remoteAddress.map { "\($0)" } ?? "?")) on attempt \(outcome.attempt)")
        case .upgradeRoundFailed(let peer, let error, let retryIn):
            let coded = error.coded
            var object: [String: Any] = [
                "event": "upgrade_failed", "peer_id": "\(peer)", "code": coded?.code ?? "error", "message": coded?.message ?? "\(error)",
            ]
            if let retryIn { object["retry_in_s"] = Double(retryIn.components.seconds) }
            emit(
                object,
                "could not upgrade \(peer) to a direct connection: \(coded?.message ?? "\(error)"); staying relayed"
                    + (retryIn.map { ", trying again in \($0.components.seconds) s" } ?? ""))
        case .upgradeStopped(let peer, let reason, let error):
            let coded = error?.coded
            emit(
                ["event": "upgrade_stopped", "peer_id": "\(peer)", "reason": "\(reason)", "code": coded?.code ?? "",
                 "message": coded?.message ?? error.map { "\($0)" } ?? ""],
                "no further hole punch with \(peer) for now (\(reason)); staying relayed")
        case .publicAddressesChanged(let addresses):
            emit(["event": "public_addrs", "addrs": addresses.map { "\($0)" }],
                 "public addresses: " + (addresses.isEmpty ? "none confirmed" : addresses.map { "\($0)" }.joined(separator: " ")))
        case .reachabilityChanged(let address, let reachability):
            emit(["event": "reachability", "addr": "\(address)", "reachability": reachability.rawValue],
                 "AutoNAT: \(address) is \(reachability.rawValue)")
        case .portMapped(let mapping):
            emit(["event": "port_mapped", "protocol": mapping.mappingProtocol.rawValue, "external_addr": "\(Multiaddr.tcp(mapping.external))",
                  "lifetime_s": Int(mapping.lifetime)], "port mapped: \(mapping)")
        case .portMappingFailed(let error):
            let coded = error.coded
            emit(["event": "port_mapping_failed", "code": coded?.code ?? "error", "message": coded?.message ?? "\(error)"],
                 "port mapping failed: \(coded?.message ?? "\(error)")")
        case .eventsDropped(let count):
            emit(["event": "events_dropped", "count": count], "\(count) events were dropped (the printer fell behind)")
        }
    }

    func emitLine(_ object: [String: Any], _ text: String) { emit(object, text) }

    private func emit(_ object: [String: Any], _ text: String) {
        if json { JSONLine.print(object) } else { Swift.print(text) }
        fflush(nil)
    }
}

/// Waits for SIGINT or SIGTERM.
enum SignalWaiter {
    static func waitForTermination() async {
        // A parent may have started us with these signals blocked (Foundation's Process does);
        // a signal is delivered to any thread that does not block it, so unblocking this one
        // is enough for the sources below to fire.
        var set = sigset_t()
        sigemptyset(&set)
        sigaddset(&set, SIGINT)
        sigaddset(&set, SIGTERM)
        pthread_sigmask(SIG_UNBLOCK, &set, nil)
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let once = OnceBox(continuation)
            for signalNumber in [SIGINT, SIGTERM] {
                signal(signalNumber, SIG_IGN)
                let source = DispatchSource.makeSignalSource(signal: signalNumber, queue: .global())
                source.setEventHandler { once.resume() }
                source.resume()
                OnceBox.keep(source)
            }
        }
    }

    /// Resumes a continuation once, however many signals arrive.
    final class OnceBox: @unchecked Sendable {
        private let lock = NSLock()
        private var continuation: CheckedContinuation<Void, Never>?
        nonisolated(unsafe) private static var sources: [DispatchSourceSignal] = []

        init(_ continuation: CheckedContinuation<Void, Never>) { self.continuation = continuation }

        func resume() {
            lock.lock()
            let continuation = self.continuation
            self.continuation = nil
            lock.unlock()
            continuation?.resume()
        }

        static func keep(_ source: DispatchSourceSignal) { sources.append(source) }
    }
}
