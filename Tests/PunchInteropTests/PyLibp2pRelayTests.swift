import Foundation
import Testing

/// Circuit Relay v2 between Punch and the real py-libp2p 0.8.1 on loopback, both ways: Punch peers
/// reserve on and connect through a py-libp2p relay, and py-libp2p peers reserve on and connect
/// through `punch relay`. Interop/py/relay.py drives py-libp2p's own relay classes
/// (CircuitV2Protocol, CircuitV2Transport).
@Suite(.serialized)
struct PyLibp2pRelayTests {
    static let echoBytes = 1 << 20

    static func relayScript() -> String {
        ExternalTools.repositoryRoot.appendingPathComponent("Interop/py/relay.py").path
    }

    static func temporaryDirectory() throws -> URL {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("punch-py-relay-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        return directory
    }

    /// Every JSON line of a finished program, in order.
    static func lines(_ stdout: String) -> [[String: Any]] {
        stdout.split(separator: "\n").compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
    }

    /// `punch listen --relay` reserves on a py-libp2p relay (and refreshes the reservation), and
    /// `punch dial` of its circuit address echoes 1 MiB through it. On loopback nobody has a
    /// public address, so the hole punch the listener starts ends at once (`upgrade_failed`) and
    /// the dial carries on over the relayed connection: no flag is needed for that.
    @Test func punchPeersReserveAndConnectThroughAPyLibp2pRelay() throws {
        let python = try ExternalTools.python()
        let punch = try ExternalTools.punchBinary()
        let directory = try Self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }

        // Reservations of 70 s: Punch refreshes 60 s before expiry, so within about 10 s.
        let relay = try BackgroundProcess(python, [Self.relayScript(), "relay", "--reservation-ttl", "70"])
        defer { relay.stop() }
        let relayListening = try relay.waitForEvent("listening", timeout: 30)
        let relayAddress = try #require((relayListening["addrs"] as? [String])?.first)
        let relayPeer = try #require(relayListening["peer_id"] as? String)

        let listener = try BackgroundProcess(punch, [
            "listen", "--listen", "/ip4/127.0.0.1/tcp/0", "--relay", relayAddress,
            "--identity", directory.appendingPathComponent("listener.key").path, "--json",
        ])
        defer { listener.stop() }
        let listenerPeer = try #require(try listener.waitForEvent("listening")["peer_id"] as? String)
        let reserved = try listener.waitForEvent("reserved", timeout: 30)
        #expect(reserved["relay"] as? String == relayPeer)
        let expiresIn = try #require(reserved["expires_in_s"] as? Int)
        #expect((60...70).contains(expiresIn), "expires_in_s \(expiresIn)")
        // py-libp2p's relay gives its own listen addresses in the reservation.
        let circuit = try #require((reserved["circuit_addrs"] as? [String])?.first)
        #expect(circuit == "\(relayAddress)/p2p-circuit/p2p/\(listenerPeer)")

        let dial = try ExternalTools.run(
            punch, ["dial", circuit, "--listen", "/ip4/127.0.0.1/tcp/0", "--bytes", "\(Self.echoBytes)", "--json"], timeout: 90)
        #expect(dial.status == 0, "punch dial failed: \(dial.stdout) \(dial.stderr)")
        let lines = Self.lines(dial.stdout)
        let connected = try #require(lines.first { $0["event"] as? String == "connected" }, "\(dial.stdout)")
        #expect(connected["path"] as? String == "relayed")
        #expect(connected["peer_id"] as? String == listenerPeer)
        // The listener's DCUtR had no public address to offer: it ended at once, cleanly.
        let upgrade = try #require(lines.first { $0["event"] as? String == "upgrade_failed" }, "\(dial.stdout)")
        #expect(upgrade["code"] as? String != "dcutr.timeout", "the upgrade should end, not time out: \(upgrade)")
        #expect(!lines.contains { $0["event"] as? String == "upgraded" })
        let echo = try #require(lines.first { $0["event"] as? String == "echo" })
        #expect(echo["bytes"] as? Int == Self.echoBytes)
        #expect(echo["path"] as? String == "relayed")
        let result = try #require(lines.last)
        #expect(result["event"] as? String == "result")
        #expect(result["ok"] as? Bool == true)
        #expect(result["path"] as? String == "relayed")
        #expect(result["bytes"] as? Int == Self.echoBytes)

        let inbound = try listener.waitForJSON { $0["event"] as? String == "connected" && $0["path"] as? String == "relayed" }
        #expect(inbound["direction"] as? String == "inbound")
        let echoed = try listener.waitForEvent("echo", timeout: 10)
        #expect(echoed["bytes"] as? Int == Self.echoBytes)

        // The refresh: a second reservation on the same connection, granted by py-libp2p (which
        // also answers each closed reservation stream with a stray MALFORMED_MESSAGE status).
        let refreshed = try listener.waitForEvent("reserved", count: 2, timeout: 40)
        #expect(refreshed["relay"] as? String == relayPeer)
        #expect(!listener.output.contains { $0.contains(#""event":"reservation_failed""#) || $0.contains(#""event":"relay_lost""#) })
        #expect(listener.stop() == 0, "punch listen: \(listener.errorOutput)")
    }

    /// A py-libp2p peer reserves on `punch relay` and another py-libp2p peer echoes 1 MiB through
    /// its circuit address; then a Punch dialer reaches the same py-libp2p listener through the
    /// Punch relay.
    @Test func pyLibp2pPeersReserveAndConnectThroughAPunchRelay() throws {
        let python = try ExternalTools.python()
        let punch = try ExternalTools.punchBinary()
        let directory = try Self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }

        let relay = try BackgroundProcess(punch, [
            "relay", "--listen", "/ip4/127.0.0.1/tcp/0", "--identity", directory.appendingPathComponent("relay.key").path,
            "--limit-duration", "0", "--limit-bytes", "0", "--json",
        ])
        defer { relay.stop() }
        let relayListening = try relay.waitForEvent("listening")
        let relayAddress = try #require((relayListening["addrs"] as? [String])?.first)
        let relayPeer = try #require(relayListening["peer_id"] as? String)

        let listener = try BackgroundProcess(python, [Self.relayScript(), "listen", "--relay", relayAddress])
        defer { listener.stop() }
        let listenerPeer = try #require(try listener.waitForEvent("listening", timeout: 30)["peer_id"] as? String)
        let reserved = try listener.waitForEvent("reserved", timeout: 30)
        #expect(reserved["relay"] as? String == relayPeer)
        #expect((reserved["expires_in_s"] as? Int ?? 0) > 0)
        let circuit = try #require((reserved["circuit_addrs"] as? [String])?.first)
        #expect(circuit == "\(relayAddress)/p2p-circuit/p2p/\(listenerPeer)")
        let granted = try relay.waitForEvent("reserved")
        #expect(granted["peer_id"] as? String == listenerPeer)

        // py-libp2p to py-libp2p through the Punch relay.
        let dial = try ExternalTools.run(python, [Self.relayScript(), "dial", circuit, "--bytes", "\(Self.echoBytes)"], timeout: 90)
        #expect(dial.status == 0, "relay.py dial failed: \(dial.stdout) \(dial.stderr)")
        let result = try ExternalTools.jsonObject(dial.stdout)
        #expect(result["ok"] as? Bool == true, "\(dial.stdout) \(dial.stderr)")
        #expect(result["peer_id"] as? String == listenerPeer)
        #expect(result["path"] as? String == "relayed")
        #expect(result["echo_bytes"] as? Int == Self.echoBytes)
        let echoed = try listener.waitForEvent("echo", timeout: 10)
        #expect(echoed["bytes"] as? Int == Self.echoBytes)
        #expect(echoed["path"] as? String == "relayed")
        let opened = try relay.waitForEvent("circuit_opened")
        #expect(opened["to"] as? String == listenerPeer)
        #expect(opened["from"] as? String != listenerPeer)

        // Punch to py-libp2p through the Punch relay. The py-libp2p listener runs no DCUtR here, so
        // nothing upgrades the connection: --upgrade-timeout 0 does not wait for it.
        let punchDial = try ExternalTools.run(
            punch, ["dial", circuit, "--listen", "/ip4/127.0.0.1/tcp/0", "--bytes", "\(Self.echoBytes)", "--upgrade-timeout", "0", "--json"],
            timeout: 90)
        #expect(punchDial.status == 0, "punch dial failed: \(punchDial.stdout) \(punchDial.stderr)")
        let lines = Self.lines(punchDial.stdout)
        #expect(lines.first { $0["event"] as? String == "connected" }?["path"] as? String == "relayed")
        let identified = try #require(lines.first { $0["event"] as? String == "identified" })
        #expect((identified["agent_version"] as? String ?? "").contains("py-libp2p"), "\(identified)")
        let punchResult = try #require(lines.last)
        #expect(punchResult["ok"] as? Bool == true, "\(punchDial.stdout)")
        #expect(punchResult["path"] as? String == "relayed")
        #expect(punchResult["bytes"] as? Int == Self.echoBytes)
        let second = try listener.waitForEvent("echo", count: 2, timeout: 10)
        #expect(second["bytes"] as? Int == Self.echoBytes)
        #expect(second["path"] as? String == "relayed")
        #expect(try relay.waitForEvent("circuit_opened", count: 2)["to"] as? String == listenerPeer)
    }
}

extension BackgroundProcess {
    /// Waits until the program has printed `count` lines whose `event` is `event`; returns the last.
    func waitForEvent(_ event: String, count: Int, timeout: Double = 30) throws -> [String: Any] {
        var seen = 0
        return try waitForJSON(timeout: timeout) { object in
            guard object["event"] as? String == event else { return false }
            seen += 1
            return seen == count
        }
    }
}
