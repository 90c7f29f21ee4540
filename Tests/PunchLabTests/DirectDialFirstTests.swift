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
            let lab = try NATLab.build()
            let directory = FileManager.default.temporaryDirectory.appendingPathComponent("punch-direct-first-\(UUID().uuidString)")
            var processes: [LabProcess] = []
            defer {
                for process in processes { process.stop() }
                lab.tearDown()
                try? FileManager.default.removeItem(at: directory)
            }
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)

            let relay = try lab.spawn(.srv, [
                punch, "relay", "--listen", "/ip4/203.0.113.10/tcp/4001", "--identity", directory.appendingPathComponent("relay.key").path, "--json",
            ])
            processes.append(relay)
            let relayAddress = try #require((try parseJSON(relay.waitForLine(containing: #""event":"listening""#, timeout: .seconds(20))))["addrs"] as? [String])[0]

            let listener = try lab.spawn(.h2, [
                punch, "listen", "--listen", "/ip4/0.0.0.0/tcp/4001", "--relay", relayAddress,
                "--identity", directory.appendingPathComponent("listener.key").path, "--json",
            ])
            processes.append(listener)
            let reserved = try parseJSON(listener.waitForLine(containing: #""event":"reserved""#, timeout: .seconds(20)))
            let circuit = try #require((reserved["circuit_addrs"] as? [String])?.first)

            let dialer = try lab.spawn(.srv, [
                punch, "dial", circuit, "--listen", "/ip4/203.0.113.11/tcp/0", "--bytes", "65536", "--pings", "1",
                "--upgrade-timeout", "30", "--json",
            ])
            processes.append(dialer)
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
