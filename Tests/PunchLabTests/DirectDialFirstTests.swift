import Foundation
import PunchLab
import Testing

extension NATLabSelfTests {
    /// DCUtR.md's first step: the peer that accepted a relayed connection dials the other side's
    /// advertised public addresses directly before any CONNECT/SYNC. A dialer on srv's public
    /// address 203.0.113.11 reaches a listener behind r2 (port-restricted) through the relay;
    /// the listener sees that address in identify and dials it: a direct connection, `attempt` 0.
    @Suite struct DirectDialFirst {
        @Test func aListenerDialsAPublicDialerDirectlyWithoutAPunch() throws {
            let punch = try ExternalProgram.punch()
            let lab = try RelayLab(punch: punch, name: "punch-direct-first")
            defer { lab.tearDown() }
            let relayAddress = lab.relayAddress

            let listener = try lab.spawn(.h2, [
                punch, "listen", "--listen", "/ip4/0.0.0.0/tcp/4001", "--relay", relayAddress,
                "--identity", lab.identity("listener"), "--json",
            ])
            let reserved = try parseJSON(listener.waitForLine(containing: #""event":"reserved""#, timeout: .seconds(20)))
            let circuit = try #require((reserved["circuit_addrs"] as? [String])?.first)

            let dialer = try lab.spawn(.srv, [
                punch, "dial", circuit, "--listen", "/ip4/203.0.113.11/tcp/0", "--bytes", "65536", "--pings", "1",
                "--upgrade-timeout", "30", "--json",
            ])
            let status = try dialer.waitForExit(timeout: .seconds(60))
            let lines = dialer.outputLines.compactMap { try? parseJSON($0) }
            let transcript = "punch dial (status \(status)):\n\(dialer.outputLines.joined(separator: "\n"))\n\(dialer.errorOutput.suffix(2000))\n"
                + "punch listen:\n\(listener.outputLines.joined(separator: "\n"))"
            #expect(status == 0, "\(transcript)")
            #expect(lines.first { $0["event"] as? String == "connected" }?["path"] as? String == "relayed", "\(transcript)")
            let upgraded = try #require(lines.first { $0["event"] as? String == "upgraded" }, "no upgrade: \(transcript)")
            #expect(upgraded["attempt"] as? Int == 0, "a direct dial, not a punch: \(upgraded)")
            #expect(upgraded["path"] as? String == "direct")
            // The listener's dial came through r2's NAT.
            #expect((upgraded["remote_addr"] as? String ?? "").hasPrefix("/ip4/203.0.113.2/tcp/"), "\(upgraded)")
            #expect(lines.last { $0["event"] as? String == "result" }?["path"] as? String == "direct", "\(transcript)")

            let listenerUpgrade = try parseJSON(listener.waitForLine(containing: #""event":"upgraded""#, timeout: .seconds(10)))
            #expect(listenerUpgrade["attempt"] as? Int == 0, "\(listenerUpgrade)")
            #expect((listenerUpgrade["remote_addr"] as? String ?? "").hasPrefix("/ip4/203.0.113.11/tcp/"), "\(listenerUpgrade)")
        }
    }
}
