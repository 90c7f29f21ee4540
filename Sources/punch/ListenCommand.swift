import ArgumentParser
import Foundation
import Logging
import Punch

extension TransportError: CodedError {
    var codeName: String { code.name }
}

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
    var confirmations: Int = ConfirmedAddresses.defaultConfirmations

    @Option(name: .long, help: ArgumentHelp(
        "The largest yamux receive window a stream grows to, in bytes (auto-tuning; 262144, the starting window, turns growth off).",
        valueName: "bytes"))
    var maxStreamWindow: Int = Int(YamuxConfiguration().maximumStreamReceiveWindow)

    @Flag(name: .long, help: "Print one JSON object per line.")
    var json = false

    func validate() throws {
        guard (0...Int(UInt32.max)).contains(maxStreamWindow) else { throw ValidationError("--max-stream-window must be between 0 and 4294967295") }
    }

    func run() async throws {
        let host: PunchHost
        do {
            let key = try IdentityKeyFile.loadOrCreate(at: identity).key
            var configuration = HostConfiguration(identity: key)
            configuration.yamux.maximumStreamReceiveWindow = UInt32(maxStreamWindow)
            host = PunchHost(configuration: configuration, logger: Logger(label: "punch.host"))
            let confirmed = try ConfirmedAddresses(host: host, confirmations: confirmations)
            let output = EventPrinter(json: json)
            Echo.register(on: host) { stream, count in
                output.echo(stream, bytes: count)
            }
            let relays = try relay.map { try Multiaddr($0) }
            if !relays.isEmpty { RelayClient.acceptCircuits(on: host) }
            // DCUtR both ways: answer peers that start it, and start it on every circuit that
            // reaches us (the spec's "B" is the side that accepted the relayed connection).
            HolePuncher.serve(on: host, localAddresses: { _ in await confirmed.current() }) { relayed, result in
                output.upgrade(relayed, result)
            }
            var addresses: [Multiaddr] = []
            for text in listen {
                addresses += try await host.listen(Multiaddr(text))
            }
            output.listening(host.peerID, addresses)
            let events = Task {
                for await event in host.events {
                    output.print(event)
                    if case .connected(let connection) = event, connection.path == .relayed, connection.direction == .inbound {
                        Task {
                            // Retried with backoff while the peer is only relayed (and at once
                            // when our public addresses change).
                            let since = ContinuousClock.now
                            await HolePuncher.keepUpgrading(connection, host: host, localAddresses: { await confirmed.current() }) {
                                result, retryIn in
                                output.upgrade(connection, result, since: since, retryIn: retryIn)
                            }
                        }
                    }
                }
            }
            let keepers = relays.map { address in
                Task { await ReservationKeeper(host: host, relay: address, output: output).run() }
            }
            await SignalWaiter.waitForTermination()
            for keeper in keepers { keeper.cancel() }
            await host.close()
            _ = await events.value
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

    func print(_ event: HostEvent) {
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
            var object: [String: Any] = ["event": "disconnected", "peer_id": "\(connection.remotePeerID)"]
            if let error { object["code"] = error.code.name; object["message"] = error.message }
            emit(object, "disconnected \(connection.remotePeerID)" + (error.map { ": \($0.message)" } ?? ""))
        case .connectionFailed(let direction, let remote, let error):
            emit(
                ["event": "connection_failed", "direction": direction.rawValue, "remote_addr": remote.map { "\($0)" } ?? "",
                 "code": error.code.name, "message": error.message],
                "\(direction.rawValue) connection from \(remote.map { "\($0)" } ?? "?") failed: \(error.message)")
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
