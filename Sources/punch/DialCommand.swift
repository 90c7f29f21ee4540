import ArgumentParser
import Foundation
import Logging
import Punch

/// `punch dial`: connect, ping, identify, echo, report.
struct DialCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dial",
        abstract: "Connect to a peer, ping it, identify it, and check an echo of N random bytes.",
        discussion: """
            Exits 0 only if every step succeeded. With --json each step prints one line \
            (connected, ping, identified, echo) and the last line is
              {"event":"result","ok":true,"peer_id":...,"rtt_ms":...,"observed_addr":...,
               "bytes":...,"echo_seconds":...,"throughput_mib_s":...,"receive_window":...}
            receive_window is the echo stream's yamux receive window at the end, in bytes: it \
            starts at 256 KiB and grows (to 16 MiB) while the window limits the transfer.

            Examples:
              punch dial /ip4/192.0.2.7/tcp/4001/p2p/12D3KooW...
              punch dial /ip4/127.0.0.1/tcp/4001/p2p/12D3KooW... --bytes 104857600 --json
            """
    )

    @Argument(help: ArgumentHelp(
        "The peer's address, ending in /p2p/<PeerID> to check its identity; or a circuit address …/p2p/RELAY/p2p-circuit/p2p/PEER.",
        valueName: "multiaddr"))
    var address: String

    @Option(name: .long, help: ArgumentHelp("How many random bytes to echo (0 skips the echo).", valueName: "n"))
    var bytes: Int = 1 << 20

    @Option(name: .long, help: ArgumentHelp("Listen here first, so the dial leaves from this port.", valueName: "multiaddr"))
    var listen: [String] = []

    @Option(name: .long, help: ArgumentHelp("The identity key file; a fresh key when not given.", valueName: "file"))
    var identity: String?

    @Option(name: .long, help: ArgumentHelp(
        "Distinct peers that must report our public address (identify's observed address) before a hole punch offers it.",
        valueName: "n"))
    var confirmations: Int = ConfirmedAddresses.defaultConfirmations

    @Option(name: .long, help: ArgumentHelp(
        "The largest yamux receive window a stream grows to, in bytes (auto-tuning; 262144, the starting window, turns growth off).",
        valueName: "bytes"))
    var maxStreamWindow: Int = Int(YamuxConfiguration().maximumStreamReceiveWindow)

    @Option(name: .long, help: ArgumentHelp("How many pings to send.", valueName: "n"))
    var pings: Int = 3

    @Option(name: .long, help: ArgumentHelp("Through a relay: how long to wait for the upgrade to a direct connection (0: do not wait).", valueName: "s"))
    var upgradeTimeout: Double = 20

    @Flag(name: .long, help: "Print one JSON object per line.")
    var json = false

    func validate() throws {
        guard bytes >= 0 else { throw ValidationError("--bytes must be 0 or more") }
        guard pings >= 1 else { throw ValidationError("--pings must be at least 1") }
        guard (0...Int(UInt32.max)).contains(maxStreamWindow) else { throw ValidationError("--max-stream-window must be between 0 and 4294967295") }
    }

    func run() async throws {
        var step = "connect"
        var host: PunchHost?
        do {
            let target = try Multiaddr(address)
            let key = try identity.map { try IdentityKeyFile.loadOrCreate(at: $0).key } ?? PrivateKey.generate()
            var configuration = HostConfiguration(identity: key)
            configuration.identifyOnConnect = false
            configuration.yamux.maximumStreamReceiveWindow = UInt32(maxStreamWindow)
            let node = PunchHost(configuration: configuration, logger: Logger(label: "punch.host"))
            let confirmed = try ConfirmedAddresses(host: node, confirmations: confirmations)
            host = node
            for text in listen { try await node.listen(Multiaddr(text)) }
            // Through a relay, the listener starts a hole punch (DCUtR) at once: serve it, from a
            // listening port (an ephemeral one when none was given) so the punch has a port to use.
            let (upgrades, upgradeContinuation) = AsyncStream.makeStream(of: Result<HolePunchOutcome, any Error>.self, bufferingPolicy: .bufferingNewest(4))
            if target.isCircuit {
                if listen.isEmpty { try await node.listen(Multiaddr("/ip4/0.0.0.0/tcp/0")) }
                HolePuncher.serve(on: node, localAddresses: { _ in await confirmed.current() }) { _, result in
                    upgradeContinuation.yield(result)
                }
                // A listener that sees public addresses of ours in identify dials them directly
                // (DCUtR.md's unilateral upgrade): that inbound connection is the upgrade too.
                if let targetHash = target.peerID, let targetPeer = try? PeerID(multihash: targetHash) {
                    let since = ContinuousClock.now
                    Task {
                        for await event in node.events {
                            if case .connected(let connection) = event, connection.path == .direct, connection.direction == .inbound,
                                connection.remotePeerID == targetPeer
                            {
                                upgradeContinuation.yield(.success(HolePunchOutcome(
                                    connection: connection, attempt: 0, roundTrip: nil, elapsed: ContinuousClock.now - since, dialed: [])))
                                return
                            }
                        }
                    }
                }
            }

            let clock = ContinuousClock()
            let started = clock.now
            let connection: Connection
            if target.isCircuit {
                // …/p2p/RELAY/p2p-circuit/p2p/TARGET: to the relay, then through it.
                guard let relayAddress = target.relayAddress, let targetHash = target.peerID, target.components.last.map({ if case .p2p = $0 { true } else { false } }) == true
                else {
                    throw RelayError(.badAddress, "a circuit address reads /…/p2p/RELAY/p2p-circuit/p2p/TARGET, not \(target)")
                }
                let targetPeer = try PeerID(multihash: targetHash)
                let relayConnection = try await node.dial(relayAddress)
                // The relay's identify tells us our public address, which DCUtR offers.
                _ = try? await relayConnection.identify()
                connection = try await RelayClient.connect(to: targetPeer, via: relayConnection, host: node)
            } else {
                connection = try await node.dial(target)
            }
            let connectTime = clock.now - started
            let connectedAt = clock.now
            report(
                ["event": "connected", "peer_id": "\(connection.remotePeerID)", "path": connection.path.rawValue,
                 "remote_addr": "\(connection.remoteAddress.map { "\($0)" } ?? "")",
                 "local_addr": "\(connection.localAddress.map { "\($0)" } ?? "")", "connect_ms": connectTime.milliseconds],
                "connected (\(connection.path.rawValue)) to \(connection.remotePeerID) in \(format(connectTime))"
                    + (connection.localAddress.map { " (from \($0))" } ?? ""))

            step = "ping"
            let rtts = try await connection.ping(count: pings)
            report(
                ["event": "ping", "rtt_ms": rtts.map(\.milliseconds)],
                "ping: " + rtts.map(format).joined(separator: ", "))

            step = "identify"
            let info = try await connection.identify()
            let observed = info.observedAddress.map { "\($0)" } ?? ""
            report(
                ["event": "identified", "agent_version": info.agentVersion ?? "", "protocol_version": info.protocolVersion ?? "",
                 "observed_addr": observed, "listen_addrs": info.listenAddresses.map { "\($0)" }, "protocols": info.protocols],
                "identify: \(info.agentVersion ?? "unknown agent"); it sees us as \(observed.isEmpty ? "?" : observed)")

            var active = connection
            var relayedToDirect: Double?
            if connection.path == .relayed, upgradeTimeout > 0 {
                step = "upgrade"
                // The listener starts the punch and retries a failed round (5 s later, then 15 s):
                // wait for a success until the deadline, unless a failure says no round can work.
                let outcome = await Self.firstSuccess(of: upgrades, within: upgradeTimeout) { error in
                    let coded = error as? CodedError
                    report(
                        ["event": "upgrade_round_failed", "code": coded?.codeName ?? "error", "message": coded?.message ?? "\(error)"],
                        "a hole punch round failed: \(coded?.message ?? "\(error)"); waiting for the next")
                }
                switch outcome {
                case .success(let punched)?:
                    active = punched.connection
                    let elapsed = (clock.now - connectedAt).milliseconds
                    relayedToDirect = elapsed
                    report(
                        ["event": "upgraded", "path": punched.connection.path.rawValue, "attempt": punched.attempt,
                         "remote_addr": punched.connection.remoteAddress.map { "\($0)" } ?? "",
                         "local_addr": punched.connection.localAddress.map { "\($0)" } ?? "", "relayed_to_direct_ms": elapsed],
                        "upgraded to a direct connection with \(punched.connection.remoteAddress.map { "\($0)" } ?? "?") on attempt \(punched.attempt), "
                            + "\(String(format: "%.0f", elapsed)) ms after the relayed one")
                    // New streams go direct; the relayed connection has done its job.
                    await connection.close()
                case .failure(let error)?:
                    let coded = error as? CodedError
                    report(
                        ["event": "upgrade_failed", "code": coded?.codeName ?? "error", "message": coded?.message ?? "\(error)"],
                        "no direct connection: \(coded?.message ?? "\(error)"); staying relayed")
                case nil:
                    report(
                        ["event": "upgrade_failed", "code": "dcutr.timeout", "message": "no upgrade within \(upgradeTimeout) s"],
                        "no direct connection within \(upgradeTimeout) s; staying relayed")
                }
            }

            step = "echo"
            var echo: Echo.Result?
            if bytes > 0 {
                let result = try await active.echo(bytes: bytes)
                echo = result
                let mib = result.bytesPerSecond / 1_048_576
                report(
                    ["event": "echo", "bytes": result.bytes, "echo_seconds": result.duration.seconds, "path": active.path.rawValue,
                     "throughput_mib_s": (mib * 100).rounded() / 100, "receive_window": result.receiveWindow],
                    "echo: \(result.bytes) bytes verified in \(format(result.duration)) (\(String(format: "%.1f", mib)) MiB/s each way, "
                        + "stream window \(result.receiveWindow / 1024) KiB)")
            }

            let minimum = rtts.min() ?? .zero
            report(
                ["event": "result", "ok": true, "peer_id": "\(connection.remotePeerID)", "path": active.path.rawValue, "rtt_ms": minimum.milliseconds,
                 "relayed_to_direct_ms": relayedToDirect ?? 0,
                 "observed_addr": observed, "bytes": echo?.bytes ?? 0, "echo_seconds": echo?.duration.seconds ?? 0,
                 "throughput_mib_s": ((echo?.bytesPerSecond ?? 0) / 1_048_576 * 100).rounded() / 100,
                 "receive_window": echo?.receiveWindow ?? 0],
                "ok: round trip \(format(minimum)), observed address \(observed.isEmpty ? "?" : observed)")
            await active.close()
            await connection.close()
            await node.close()
        } catch {
            await host?.close()
            if json { JSONLine.print(["event": "result", "ok": false, "step": step]) }
            throw CommandFailure.report(error, json: json)
        }
    }

    /// Failures of a DCUtR exchange after which waiting for the peer's next round is pointless:
    /// one side had no usable address (the initiator then closes the stream before its first
    /// CONNECT, or after ours: `streamClosed`), the peer spoke DCUtR wrongly, or it ran where it
    /// cannot run. A failure after the punch dials (`failed`) or a slow message (`timeout`) is
    /// worth waiting through.
    static let finalUpgradeFailures: Set<HolePunchError.Code> = [.noAddresses, .streamClosed, .malformedMessage, .notRelayed]

    /// The first success in `stream` within `seconds`; a failure in ``finalUpgradeFailures`` ends
    /// the wait at once (and is returned), any other is passed to `onFailure` and the wait goes
    /// on. `nil` when the time runs out.
    private static func firstSuccess(
        of stream: AsyncStream<Result<HolePunchOutcome, any Error>>, within seconds: Double,
        onFailure: @escaping @Sendable (any Error) -> Void
    ) async -> Result<HolePunchOutcome, any Error>? {
        await withTaskGroup(of: Result<HolePunchOutcome, any Error>?.self) { group in
            group.addTask {
                for await result in stream {
                    guard case .failure(let error) = result else { return result }
                    if let error = error as? HolePunchError, finalUpgradeFailures.contains(error.code) { return result }
                    onFailure(error)
                }
                return nil
            }
            group.addTask {
                try? await Task.sleep(for: .seconds(seconds))
                return nil
            }
            let first = await group.next() ?? nil
            group.cancelAll()
            return first
        }
    }

    private func report(_ object: [String: Any], _ text: String) {
        if json { JSONLine.print(object) } else { print(text) }
        fflush(nil)
    }

    private func format(_ duration: Duration) -> String {
        let ms = duration.milliseconds
        return ms < 10 ? String(format: "%.2f ms", ms) : String(format: "%.0f ms", ms)
    }
}

extension Duration {
    var seconds: Double { Double(components.seconds) + Double(components.attoseconds) / 1e18 }
    var milliseconds: Double { (seconds * 1e6).rounded() / 1e3 }
}
