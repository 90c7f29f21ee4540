import Foundation
import PunchLab
import Testing

extension NATLabSelfTests {
    /// PunchNode across the lab: two nodes behind port-restricted NATs (r1, r2), each knowing only
    /// the relay on srv and the other's PeerID. `punch dial PEERID --relay MA` reaches the listener
    /// through the relay, the hole punch upgrades it, and the echo runs direct.
    @Suite struct NodeByPeerID {
        @Test func aPeerKnownOnlyByItsPeerIDEndsDirect() throws {
            let punch = try ExternalProgram.punch()
            let lab = try RelayLab(punch: punch, name: "punch-node-peer-id")
            defer { lab.tearDown() }

            let listener = try lab.spawn(.h2, [
                punch, "listen", "--listen", "/ip4/0.0.0.0/tcp/4001", "--relay", lab.relayAddress,
                "--identity", lab.identity("listener"), "--json",
            ])
            let listening = try parseJSON(listener.waitForLine(containing: #""event":"listening""#, timeout: .seconds(20)))
            let peer = try #require(listening["peer_id"] as? String)
            _ = try listener.waitForLine(containing: #""event":"reserved""#, timeout: .seconds(20))

            let dialer = try lab.spawn(.h1, [
                punch, "dial", peer, "--relay", lab.relayAddress, "--listen", "/ip4/0.0.0.0/tcp/4001",
                "--bytes", "1048576", "--pings", "1", "--upgrade-timeout", "40", "--json",
            ])
            let status = try dialer.waitForExit(timeout: .seconds(90))
            let lines = dialer.outputLines.compactMap { try? parseJSON($0) }
            let transcript = "punch dial (status \(status)):\n\(dialer.outputLines.joined(separator: "\n"))\n\(dialer.errorOutput.suffix(2000))\n"
                + "punch listen:\n\(listener.outputLines.joined(separator: "\n"))"
            #expect(status == 0, "\(transcript)")
            let connected = try #require(lines.first { $0["event"] as? String == "connected" }, "\(transcript)")
            #expect(connected["path"] as? String == "relayed", "\(transcript)")
            #expect(connected["peer_id"] as? String == peer, "\(transcript)")
            let upgraded = try #require(lines.first { $0["event"] as? String == "upgraded" }, "no upgrade: \(transcript)")
            #expect(upgraded["path"] as? String == "direct", "\(transcript)")
            // Through r2's NAT: the listener's public address, not the relay.
            #expect((upgraded["remote_addr"] as? String ?? "").hasPrefix("/ip4/203.0.113.2/tcp/"), "\(upgraded)")
            let result = try #require(lines.last { $0["event"] as? String == "result" }, "\(transcript)")
            #expect(result["ok"] as? Bool == true && result["path"] as? String == "direct", "\(transcript)")
            #expect(result["bytes"] as? Int == 1_048_576, "\(transcript)")
        }
    }
}
