import Foundation
import Testing

/// `punch relay`, `punch listen --relay` and `punch dial` through a circuit, as a user runs them,
/// on loopback.
@Suite(.serialized) struct RelayCLITests {
    @Test func listenerReservesAndADialerEchoesThroughTheCircuit() throws {
        let punch = try ExternalTools.punchBinary()
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("punch-relay-cli-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }

        let relay = try BackgroundProcess(punch, [
            "relay", "--listen", "/ip4/127.0.0.1/tcp/0", "--identity", directory.appendingPathComponent("relay.key").path, "--json",
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

        // 64 KiB: within the relay's default limit of 128 KiB each way.
        let dial = try ExternalTools.run(punch, ["dial", circuit, "--bytes", "65536", "--json"], timeout: 60)
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
        let tooMuch = try ExternalTools.run(punch, ["dial", circuit, "--bytes", "1048576", "--json"], timeout: 60)
        #expect(tooMuch.status != 0)
        #expect(tooMuch.stdout.contains(#""ok":false"#))
        let closed = try relay.waitForJSON { $0["event"] as? String == "circuit_closed" && ($0["reason"] as? String ?? "").contains("data limit") }
        #expect((closed["bytes"] as? Int ?? 0) >= 128 * 1024)
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
            "--reservation-duration", "62", "--json",
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
