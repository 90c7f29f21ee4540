import ArgumentParser
import Foundation
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
               "bytes":...,"echo_seconds":...,"throughput_mib_s":...}

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

    @Option(name: .long, help: ArgumentHelp("How many pings to send.", valueName: "n"))
    var pings: Int = 3

    @Flag(name: .long, help: "Print one JSON object per line.")
    var json = false

    func validate() throws {
        guard bytes >= 0 else { throw ValidationError("--bytes must be 0 or more") }
        guard pings >= 1 else { throw ValidationError("--pings must be at least 1") }
    }

    func run() async throws {
        var step = "connect"
        var host: PunchHost?
        do {
            let target = try Multiaddr(address)
            let key = try identity.map { try IdentityKeyFile.loadOrCreate(at: $0).key } ?? PrivateKey.generate()
            var configuration = HostConfiguration(identity: key)
            configuration.identifyOnConnect = false
            let node = PunchHost(configuration: configuration)
            host = node
            for text in listen { try await node.listen(Multiaddr(text)) }

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
                connection = try await RelayClient.connect(to: targetPeer, via: relayConnection, host: node)
            } else {
                connection = try await node.dial(target)
            }
            let connectTime = clock.now - started
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

            step = "echo"
            var echo: Echo.Result?
            if bytes > 0 {
                let result = try await connection.echo(bytes: bytes)
                echo = result
                let mib = result.bytesPerSecond / 1_048_576
                report(
                    ["event": "echo", "bytes": result.bytes, "echo_seconds": result.duration.seconds,
                     "throughput_mib_s": (mib * 100).rounded() / 100],
                    "echo: \(result.bytes) bytes verified in \(format(result.duration)) (\(String(format: "%.1f", mib)) MiB/s each way)")
            }

            let minimum = rtts.min() ?? .zero
            report(
                ["event": "result", "ok": true, "peer_id": "\(connection.remotePeerID)", "path": connection.path.rawValue, "rtt_ms": minimum.milliseconds,
                 "observed_addr": observed, "bytes": echo?.bytes ?? 0, "echo_seconds": echo?.duration.seconds ?? 0,
                 "throughput_mib_s": ((echo?.bytesPerSecond ?? 0) / 1_048_576 * 100).rounded() / 100],
                "ok: round trip \(format(minimum)), observed address \(observed.isEmpty ? "?" : observed)")
            await connection.close()
            await node.close()
        } catch {
            await host?.close()
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
