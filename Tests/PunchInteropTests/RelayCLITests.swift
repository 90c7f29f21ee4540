import Foundation
import NIOCore
import NIOPosix
import Punch
import Testing

#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// `punch relay`, `punch listen --relay` and `punch dial` through a circuit, as a user runs them,
/// on loopback.
@Suite(.serialized) struct RelayCLITests {
    @Test func listenerReservesAndADialerEchoesThroughTheCircuit() throws {
        let punch = try ExternalTools.punchBinary()
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("punch-relay-cli-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }

        let relay = try BackgroundProcess(punch, [
            "relay", "--listen", "/ip4/127.0.0.1/tcp/0", "--stun-port", "0",
            "--identity", directory.appendingPathComponent("relay.key").path, "--json",
        ])
        defer { _ = relay.stop() }
        let relayListening = try relay.waitForEvent("listening")
        let relayAddress = try #require((relayListening["addrs"] as? [String])?.first)

        let listener = try BackgroundProcess(punch, [
            "listen", "--listen", "/ip4/127.0.0.1/tcp/0", "--relay", relayAddress,
            "--identity", directory.appendingPathComponent("listener.key").path, "--json",
        ])
        defer { _ = listener.stop() }
        let listenerPeer = try #require(try listener.waitForEvent("listening")["peer_id"] as? String)
        let reserved = try listener.waitForEvent("reserved")
        let circuit = try #require((reserved["circuit_addrs"] as? [String])?.first)
        #expect(circuit == "\(relayAddress)/p2p-circuit/p2p/\(listenerPeer)")
        _ = try relay.waitForEvent("reserved")

        // 64 KiB: within the relay's default limit of 128 KiB each way. The dialer listens on
        // loopback only, so the listener finds no public address of it to dial directly (on
        // 0.0.0.0 it would advertise this machine's interface addresses) and the path stays relayed.
        let dial = try ExternalTools.run(punch, ["dial", circuit, "--listen", "/ip4/127.0.0.1/tcp/0", "--bytes", "65536", "--json"], timeout: 60)
        #expect(dial.status == 0, "punch dial failed: \(dial.stdout) \(dial.stderr)")
        let lines = try dial.stdout.split(separator: "\n").map { try ExternalTools.jsonObject(String($0)) }
        let connected = try #require(lines.first { $0["event"] as? String == "connected" })
        #expect(connected["path"] as? String == "relayed")
        let result = try #require(lines.last)
        #expect(result["ok"] as? Bool == true)
        #expect(result["bytes"] as? Int == 65536)
        #expect(result["path"] as? String == "relayed")

        let inbound = try listener.waitForJSON { $0["event"] as? String == "connected" && $0["path"] as? String == "relayed" }
        #expect(inbound["direction"] as? String == "inbound")
        let opened = try relay.waitForEvent("circuit_opened")
        #expect(opened["to"] as? String == listenerPeer)

        // Over the limit: the relay cuts the circuit and the dial fails cleanly.
        let tooMuch = try ExternalTools.run(punch, ["dial", circuit, "--listen", "/ip4/127.0.0.1/tcp/0", "--bytes", "1048576", "--json"], timeout: 60)
        #expect(tooMuch.status != 0)
        #expect(tooMuch.stdout.contains(#""ok":false"#))
        let closed = try relay.waitForJSON { $0["event"] as? String == "circuit_closed" && ($0["reason"] as? String ?? "").contains("data limit") }
        #expect((closed["bytes"] as? Int ?? 0) >= 128 * 1024)
    }

    /// The relay's STUN server answers on its listen address, and its Prometheus endpoint counts
    /// the reservation, the circuit, the bytes and a refusal.
    @Test func relayServesSTUNAndPrometheusMetrics() async throws {
        let punch = try ExternalTools.punchBinary()
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("punch-relay-metrics-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let stunPort = try await Self.freeUDPPort()

        let relay = try BackgroundProcess(punch, [
            "relay", "--listen", "/ip4/127.0.0.1/tcp/0", "--stun-port", "\(stunPort)", "--metrics", "127.0.0.1:0",
            "--identity", directory.appendingPathComponent("relay.key").path, "--json",
        ])
        defer { _ = relay.stop() }
        let listening = try relay.waitForEvent("listening")
        let relayAddress = try #require((listening["addrs"] as? [String])?.first)
        #expect(listening["stun"] as? [String] == ["127.0.0.1:\(stunPort)"])
        let metricsURL = try #require((listening["metrics"] as? String).flatMap(URL.init(string:)))

        // STUN: a Binding request to the relay's box tells us our address.
        let client = try await STUNClient.bind(to: IPEndpoint("127.0.0.1:0"))
        let response = try await client.binding(to: IPEndpoint(address: try IPAddress("127.0.0.1"), port: stunPort))
        let local = client.localAddress
        try await client.close()
        #expect(response.mappedAddress == local)

        let listener = try BackgroundProcess(punch, [
            "listen", "--listen", "/ip4/127.0.0.1/tcp/0", "--relay", relayAddress,
            "--identity", directory.appendingPathComponent("listener.key").path, "--json",
        ])
        defer { _ = listener.stop() }
        let circuit = try #require((try listener.waitForEvent("reserved")["circuit_addrs"] as? [String])?.first)
        let dial = try ExternalTools.run(punch, ["dial", circuit, "--listen", "/ip4/127.0.0.1/tcp/0", "--bytes", "4096", "--json"], timeout: 60)
        #expect(dial.status == 0, "punch dial failed: \(dial.stdout) \(dial.stderr)")
        _ = try relay.waitForEvent("circuit_closed")
        // A circuit to a peer without a reservation is refused with NO_RESERVATION.
        let unknown = relayAddress + "/p2p-circuit/p2p/\(PrivateKey.generate().peerID)"
        let refused = try ExternalTools.run(punch, ["dial", unknown, "--json"], timeout: 60)
        #expect(refused.status != 0)
        _ = try relay.waitForEvent("refused")

        // AutoNAT v2 runs on the relay by default: a loopback address is refused with E_DIAL_REFUSED
        // (the relay dials no private address), which proves the protocol is served.
        #expect(listening["autonat"] as? Bool == true)
        let autonat = try ExternalTools.run(punch, ["autonat", "--server", relayAddress, "--address", "/ip4/127.0.0.1/tcp/1", "--json"], timeout: 60)
        #expect(autonat.status == 0, "punch autonat failed: \(autonat.stdout) \(autonat.stderr)")
        #expect(autonat.stdout.contains(#""status":"refused""#), "\(autonat.stdout)")
        let served = try relay.waitForEvent("autonat")
        #expect(served["status"] as? String == "E_DIAL_REFUSED")

        let (body, reply) = try await URLSession.shared.data(from: metricsURL)
        #expect((reply as? HTTPURLResponse)?.statusCode == 200)
        #expect((reply as? HTTPURLResponse)?.value(forHTTPHeaderField: "Content-Type")?.hasPrefix("text/plain; version=0.0.4") == true)
        let text = String(decoding: body, as: UTF8.self)
        let samples = Dictionary(
            text.split(separator: "\n").filter { !$0.hasPrefix("#") }.compactMap { line -> (String, Double)? in
                let parts = line.split(separator: " ")
                guard parts.count == 2, let value = Double(parts[1]) else { return nil }
                return (String(parts[0]), value)
            }, uniquingKeysWith: { $1 })
        #expect(samples["punch_relay_reservations_active"] == 1, "\(text)")
        #expect(samples["punch_relay_reservations_granted_total"] == 1, "\(text)")
        #expect(samples["punch_relay_circuits_opened_total"] == 1, "\(text)")
        #expect(samples["punch_relay_circuits_active"] == 0, "\(text)")
        #expect((samples["punch_relay_bytes_relayed_total"] ?? 0) >= 2 * 4096, "\(text)")
        #expect(samples[#"punch_relay_refusals_total{status="NO_RESERVATION"}"#] == 1, "\(text)")
        #expect(samples[#"punch_stun_responses_total{result="success"}"#] == 1, "\(text)")
        #expect((samples[#"punch_host_connections{path="direct"}"#] ?? 0) >= 1, "\(text)")

        let (_, missing) = try await URLSession.shared.data(from: metricsURL.deletingLastPathComponent().appendingPathComponent("other"))
        #expect((missing as? HTTPURLResponse)?.statusCode == 404)
    }

    /// A port for the relay's STUN server, which listens on UDP and TCP (``FreePort``).
    static func freeUDPPort() async throws -> UInt16 {
        try FreePort.find()
    }

    /// `punch listen --relay` refreshes its reservation before it expires, on the connection it
    /// holds (it refreshes 60 s before expiry: here 2 s after reserving), and keeps doing so.
    @Test func listenerRefreshesItsReservationBeforeItExpires() throws {
        let punch = try ExternalTools.punchBinary()
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("punch-relay-cli-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }

        let relay = try BackgroundProcess(punch, [
            "relay", "--listen", "/ip4/127.0.0.1/tcp/0", "--identity", directory.appendingPathComponent("relay.key").path,
            "--reservation-duration", "62", "--stun-port", "0", "--json",
        ])
        defer { _ = relay.stop() }
        let relayAddress = try #require((try relay.waitForEvent("listening")["addrs"] as? [String])?.first)
        let listener = try BackgroundProcess(punch, [
            "listen", "--listen", "/ip4/127.0.0.1/tcp/0", "--relay", relayAddress,
            "--identity", directory.appendingPathComponent("listener.key").path, "--json",
        ])
        defer { _ = listener.stop() }
        let first = try listener.waitForEvent("reserved")
        #expect((60...62).contains(first["expires_in_s"] as? Int ?? 0), "\(first)")
        // Two refreshes, each about 2 s after the reservation before it.
        for count in 2...3 {
            let refreshed = try listener.waitForEvent("reserved", count: count, timeout: 15)
            #expect((60...62).contains(refreshed["expires_in_s"] as? Int ?? 0), "\(refreshed)")
            let renewal = try relay.waitForEvent("reserved", count: count, timeout: 5)
            #expect(renewal["renewal"] as? Bool == true, "\(renewal)")
        }
        #expect(!listener.output.contains { $0.contains(#""event":"relay_lost""#) || $0.contains(#""event":"reservation_failed""#) })
    }
}
