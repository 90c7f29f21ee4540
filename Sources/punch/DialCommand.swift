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

            A PeerID alone with --relay connects through that relay (the peer holds a reservation \
            there), then waits for the hole punch like a circuit address does.

            Examples:
              punch dial /ip4/192.0.2.7/tcp/4001/p2p/12D3KooW...
              punch dial 12D3KooWPeer... --relay /ip4/203.0.113.10/tcp/4001/p2p/12D3KooWRelay... --json
              punch dial /ip4/127.0.0.1/tcp/4001/p2p/12D3KooW... --bytes 104857600 --json
            """
    )

    @Argument(help: ArgumentHelp(
        "The peer's address, ending in /p2p/<PeerID> to check its identity; a circuit address …/p2p/RELAY/p2p-circuit/p2p/PEER; or a PeerID alone with --relay.",
        valueName: "multiaddr|peer-id"))
    var address: String

    @Option(name: .long, help: ArgumentHelp(
        "A relay to reach the peer through (…/p2p/RELAY): the peer holds a reservation there. Repeat for more.", valueName: "multiaddr"))
    var relay: [String] = []

    @Option(name: .long, help: ArgumentHelp("How many random bytes to echo (0 skips the echo).", valueName: "n"))
    var bytes: Int = 1 << 20

    @Option(name: .long, help: ArgumentHelp("Listen here first, so the dial leaves from this port.", valueName: "multiaddr"))
    var listen: [String] = []

    @Option(name: .long, help: ArgumentHelp("The identity key file; a fresh key when not given.", valueName: "file"))
    var identity: String?

    @Option(name: .long, help: ArgumentHelp(
        "Distinct peers that must report our public address (identify's observed address) before a hole punch offers it.",
        valueName: "n"))
    var confirmations: Int = NodeCommandSupport.defaultConfirmations

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
        guard confirmations >= 1 else { throw ValidationError("--confirmations must be at least 1") }
        guard (0...Int(UInt32.max)).contains(maxStreamWindow) else { throw ValidationError("--max-stream-window must be between 0 and 4294967295") }
        if (try? Multiaddr(address)) == nil {
            guard (try? PeerID(address)) != nil else {
                throw ValidationError("\(address) is neither a multiaddr nor a PeerID")
            }
            guard !relay.isEmpty else {
                throw ValidationError("dialing a PeerID alone needs --relay …/p2p/RELAY, a relay the peer holds a reservation on")
            }
        }
    }

    /// What the argument names: a peer (with addresses to add to the node's store), or an address
    /// without a PeerID, dialed as it is.
    private enum Target {
        case peer(PeerID, addresses: [Multiaddr])
        case anonymous(Multiaddr)
    }

    private func target() throws -> Target {
        let relays = try relay.map { try Multiaddr($0) }
        for relay in relays where relay.peerID == nil || relay.isCircuit {
            throw RelayError(.badAddress, "--relay wants /…/tcp/P/p2p/RELAY, not \(relay)")
        }
        let circuits = relays.map { $0.appendingCircuit() }
        guard let address = try? Multiaddr(address) else {
            return .peer(try PeerID(self.address), addresses: circuits)
        }
        if address.isCircuit {
            // …/p2p/RELAY/p2p-circuit/p2p/TARGET: through that relay.
            guard address.relayAddress?.peerID != nil, let targetHash = address.peerID,
                case .p2p = address.components.last
            else {
                throw RelayError(.badAddress, "a circuit address reads /…/p2p/RELAY/p2p-circuit/p2p/TARGET, not \(address)")
            }
            return .peer(try PeerID(multihash: targetHash), addresses: [address.withoutPeerID()] + circuits)
        }
        guard let hash = address.peerID else { return .anonymous(address) }
        return .peer(try PeerID(multihash: hash), addresses: [address.withoutPeerID()] + circuits)
    }

    func run() async throws {
        var step = "connect"
        var node: PunchNode?
        do {
            let target = try target()
            let key = try identity.map { try IdentityKeyFile.loadOrCreate(at: $0).key } ?? PrivateKey.generate()
            var configuration = NodeConfiguration(identity: key)
            configuration.host.yamux.maximumStreamReceiveWindow = UInt32(maxStreamWindow)
            configuration.observedAddresses.confirmations = confirmations
            configuration.listenAddresses = try listen.map { try Multiaddr($0) }
            configuration.logger = Logger(label: "punch.node")
            // Through a relay the listener starts a hole punch (DCUtR) at once, which needs a
            // listening port to leave from: an ephemeral one when none was given.
            var throughRelay = false
            if case .peer(_, let addresses) = target, addresses.contains(where: \.isCircuit) { throughRelay = true }
            configuration.fallbackListenAddress = throughRelay ? try Multiaddr("/ip4/0.0.0.0/tcp/0") : nil
            let punchNode = try PunchNode(configuration: configuration)
            node = punchNode
            let events = punchNode.events
            try await punchNode.start()

            let clock = ContinuousClock()
            let started = clock.now
            let connection: Connection
            let peer: PeerID
            switch target {
            case .peer(let id, let addresses):
                peer = id
                await punchNode.addAddresses(addresses, for: id)
                connection = try await punchNode.connect(to: id)
            case .anonymous(let address):
                connection = try await punchNode.host.dial(address)
                peer = connection.remotePeerID
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
                // The listener starts the punch and retries a failed round (5 s later, then 15 s);
                // the node waits for a direct connection until the deadline, unless a round's
                // failure says no round can work now (HolePunchRetry).
                let roundFailures = Task {
                    for await event in events {
                        guard case .upgradeRoundFailed(let from, let error, _) = event, from == peer,
                            HolePunchRetry.verdict(after: error) == .retry
                        else { continue }
                        let coded = error.coded
                        report(
                            ["event": "upgrade_round_failed", "code": coded?.code ?? "error", "message": coded?.message ?? "\(error)"],
                            "a hole punch round failed: \(coded?.message ?? "\(error)"); waiting for the next")
                    }
                }
                defer {
                    roundFailures.cancel()
                    events.cancel()
                }
                do {
                    let punched = try await punchNode.waitForDirectConnection(to: peer, timeout: .seconds(upgradeTimeout))
                    // The connection the node keeps for the peer (both sides keep the same one);
                    // a punch that made two, the other closes once idle.
                    active = await punchNode.connection(to: peer) ?? punched.connection
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
                } catch let error as NodeError where error.code == .upgradeTimeout {
                    // The code is the one this line always had (scripts match on it).
                    report(
                        ["event": "upgrade_failed", "code": "dcutr.timeout", "message": "no upgrade within \(upgradeTimeout) s"],
                        "no direct connection within \(upgradeTimeout) s; staying relayed")
                } catch {
                    let coded = error.coded
                    report(
                        ["event": "upgrade_failed", "code": coded?.code ?? "error", "message": coded?.message ?? "\(error)"],
                        "no direct connection: \(coded?.message ?? "\(error)"); staying relayed")
                }
            } else {
                events.cancel()
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
            await punchNode.shutdown()
        } catch {
            await node?.shutdown()
            if json { JSONLine.print(["event": "result", "ok": false, "step": step]) }
            throw CommandFailure.report(error, json: json)
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
