import Foundation
import PunchLab
import Testing

#if canImport(Glibc)
import Glibc
#endif

extension NATLabSelfTests {
    /// `punch listen --port-mapping` in h1 behind r1, whose miniupnpd speaks PCP, NAT-PMP and
    /// UPnP-IGD: the node maps its listening port, offers the mapped address, a dialer on srv
    /// reaches it there without any punch, and the mapping goes away with the node.
    @Suite struct NodePortMapping {
        @Test func theNodeMapsItsListeningPortAndIsReachedThere() throws {
            let lab = try NATLab.build()
            defer { lab.tearDown() }
            try lab.startUPnP(router: .r1)
            let punch = try ExternalProgram.punch()
            let directory = FileManager.default.temporaryDirectory.appendingPathComponent("punch-node-map-\(UUID().uuidString)")
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(at: directory) }
            let port = 44100

            let listener = try lab.spawn(.h1, [
                punch, "listen", "--listen", "/ip4/0.0.0.0/tcp/\(port)", "--port-mapping",
                "--identity", directory.appendingPathComponent("listener.key").path, "--json",
            ])
            defer { listener.stop() }
            let listening = try parseJSON(listener.waitForLine(containing: #""event":"listening""#, timeout: .seconds(20)))
            let peer = try #require(listening["peer_id"] as? String)
            let mappedLine = try listener.waitForLine(matching: { $0.contains(#""event":"port_mapped""#) || $0.contains(#""event":"port_mapping_failed""#) }, timeout: .seconds(30))
            let mapped = try parseJSON(mappedLine)
            let external = "/ip4/\(LabRouter.r1.wanAddress)/tcp/\(port)"
            #expect(mapped["event"] as? String == "port_mapped", "\(mappedLine)\n\(listener.errorOutput)")
            #expect(mapped["external_addr"] as? String == external, "\(mapped)")
            let addresses = try parseJSON(listener.waitForLine(containing: #""event":"public_addrs""#, timeout: .seconds(10)))
            #expect((addresses["addrs"] as? [String])?.contains(external) == true, "\(addresses)")

            // From outside, straight to the mapped port: no relay, no punch.
            let dial = try lab.run(.srv, [punch, "dial", "\(external)/p2p/\(peer)", "--bytes", "65536", "--pings", "1", "--json"], timeout: .seconds(60))
            #expect(dial.status == 0, "\(dial.lines.joined(separator: "\n"))")
            let result = try #require(dial.lines.last.flatMap { try? parseJSON($0) })
            #expect(result["ok"] as? Bool == true && result["path"] as? String == "direct", "\(result)")

            // SIGINT: the node shuts down and removes the mapping; the port is closed again.
            kill(listener.pid, SIGINT)
            _ = try listener.waitForExit(timeout: .seconds(30))
            let after = try lab.run(.srv, [punch, "dial", "\(external)/p2p/\(peer)", "--bytes", "0", "--pings", "1", "--json"], timeout: .seconds(60))
            #expect(after.status != 0, "the mapped port still answered after the node stopped")
        }
    }
}
