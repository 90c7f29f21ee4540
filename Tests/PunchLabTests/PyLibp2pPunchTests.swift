import Foundation
import PunchLab
import Testing

extension NATLabSelfTests {
    /// A hole punch between Punch and the real py-libp2p 0.8.1 (Interop/py/relay.py) through two
    /// port-restricted cone NATs, coordinated by DCUtR through `punch relay` on srv: the
    /// relayed connection becomes a direct one, and data crosses it.
    @Suite struct PyLibp2pPunch {
        /// py-libp2p listens behind r2 (h2), reserves on the Punch relay and runs its DCUtR
        /// service; `punch dial` of its circuit address runs in h1 behind r1. py-libp2p, which
        /// accepted the relayed connection, starts DCUtR (its auto-drive loop, about 2 s after the
        /// connection, after a plain dial of the addresses it knows); Punch answers, dials at SYNC
        /// as the client of the direct connection, and echoes 1 MiB over it.
        @Test func aPunchDialerAndAPyLibp2pListenerEndDirect() throws {
            let punch = try ExternalProgram.punch()
            let python = try ExternalProgram.pyLibp2pPython()
            let lab = try RelayLab(punch: punch, name: "punch-py-lab")
            defer { lab.tearDown() }
            let relayAddress = lab.relayAddress

            let listener = try lab.spawn(.h2, [
                python, ExternalProgram.pyLibp2pScript("relay.py"), "listen", "--relay", relayAddress, "--ip", "10.0.2.2", "--port", "4001",
                "--dcutr", "--ignore-stdin",
            ])
            let listenerPeer = try #require(try parseJSON(listener.waitForLine(containing: #""event": "listening""#, timeout: .seconds(30)))["peer_id"] as? String)
            let reserved = try parseJSON(listener.waitForLine(containing: #""event": "reserved""#, timeout: .seconds(30)))
            let circuit = try #require((reserved["circuit_addrs"] as? [String])?.first)

            let dialer = try lab.spawn(.h1, [
                punch, "dial", circuit, "--listen", "/ip4/0.0.0.0/tcp/4001", "--bytes", "1048576", "--pings", "1",
                "--upgrade-timeout", "60", "--json",
            ])
            let status = try dialer.waitForExit(timeout: .seconds(120))
            let lines = dialer.outputLines.compactMap { try? parseJSON($0) }
            let transcript = "punch dial (status \(status)):\n\(dialer.outputLines.joined(separator: "\n"))\n\(dialer.errorOutput.suffix(2000))\n"
                + "py-libp2p listener:\n\(listener.outputLines.joined(separator: "\n"))\n\(listener.errorOutput.suffix(3000))"
            #expect(status == 0, "\(transcript)")
            let connected = lines.first { $0["event"] as? String == "connected" }
            #expect(connected?["path"] as? String == "relayed", "\(transcript)")
            #expect(connected?["peer_id"] as? String == listenerPeer)
            let upgraded = try #require(lines.first { $0["event"] as? String == "upgraded" }, "no upgrade: \(transcript)")
            #expect(upgraded["path"] as? String == "direct")
            // The direct connection goes to py-libp2p's public (NAT) address, not through srv.
            #expect((upgraded["remote_addr"] as? String ?? "").hasPrefix("/ip4/203.0.113.2/tcp/"), "\(upgraded)")
            let echo = lines.first { $0["event"] as? String == "echo" }
            #expect(echo?["path"] as? String == "direct", "\(transcript)")
            #expect(echo?["bytes"] as? Int == 1 << 20)
            let result = lines.last { $0["event"] as? String == "result" }
            #expect(result?["ok"] as? Bool == true, "\(transcript)")
            #expect(result?["path"] as? String == "direct")

            // py-libp2p saw the direct connection too, and echoed the bytes over it.
            let direct = try #require(listener.anyLine(withEvent: "direct", within: 10), "\(transcript)")
            #expect((direct["remote_addr"] as? String ?? "").hasPrefix("/ip4/203.0.113.1/tcp/"), "\(direct)")
            let echoed = try #require(listener.anyLine(withEvent: "echo", within: 10), "\(transcript)")
            #expect(echoed["bytes"] as? Int == 1 << 20)
            #expect(echoed["path"] as? String == "direct", "\(transcript)")
        }

        /// The other way round: `punch listen` behind r2 reserves on the Punch relay and starts
        /// DCUtR on the circuit a py-libp2p dialer in h1 opens (py-libp2p runs its DCUtR service,
        /// listening on 10.0.1.2:4001, the port its punch dials leave from). py-libp2p answers,
        /// dials at SYNC as the client, and echoes 1 MiB over the direct connection it then
        /// prefers for new streams.
        @Test func aPyLibp2pDialerAndAPunchListenerEndDirect() throws {
            let punch = try ExternalProgram.punch()
            let python = try ExternalProgram.pyLibp2pPython()
            let lab = try RelayLab(punch: punch, name: "punch-py-lab")
            defer { lab.tearDown() }
            let relayAddress = lab.relayAddress

            let listener = try lab.spawn(.h2, [
                punch, "listen", "--listen", "/ip4/0.0.0.0/tcp/4001", "--relay", relayAddress,
                "--identity", lab.identity("listener"), "--json",
            ])
            let listenerPeer = try #require(try parseJSON(listener.waitForLine(containing: #""event":"listening""#, timeout: .seconds(20)))["peer_id"] as? String)
            let reserved = try parseJSON(listener.waitForLine(containing: #""event":"reserved""#, timeout: .seconds(20)))
            let circuit = try #require((reserved["circuit_addrs"] as? [String])?.first)

            let dialer = try lab.spawn(.h1, [
                python, ExternalProgram.pyLibp2pScript("relay.py"), "dial", circuit, "--ip", "10.0.1.2", "--port", "4001", "--dcutr",
                "--wait-direct", "40", "--bytes", "1048576", "--timeout", "90",
            ])
            let status = try dialer.waitForExit(timeout: .seconds(120))
            let lines = dialer.outputLines.compactMap { try? parseJSON($0) }
            let transcript = "py-libp2p dialer (status \(status)):\n\(dialer.outputLines.joined(separator: "\n"))\n\(dialer.errorOutput.suffix(3000))\n"
                + "punch listen:\n\(listener.outputLines.joined(separator: "\n"))\n\(listener.errorOutput.suffix(2000))"
            #expect(status == 0, "\(transcript)")
            #expect(lines.first { $0["event"] as? String == "connected" }?["path"] as? String == "relayed", "\(transcript)")
            #expect(lines.contains { $0["event"] as? String == "direct" }, "\(transcript)")
            let result = lines.last { $0["event"] as? String == "result" }
            #expect(result?["ok"] as? Bool == true, "\(transcript)")
            #expect(result?["peer_id"] as? String == listenerPeer)
            #expect(result?["path"] as? String == "direct", "\(transcript)")
            #expect(result?["echo_bytes"] as? Int == 1 << 20)

            // Punch, which started DCUtR, reports the direct connection to py-libp2p's NAT address.
            // (py-libp2p may see the connection, and echo over it, before Punch's dial returns: the
            // two lines come in either order.)
            let upgraded = try #require(listener.anyLine(withEvent: "upgraded", within: 10), "no upgrade: \(transcript)")
            #expect(upgraded["path"] as? String == "direct")
            #expect((upgraded["remote_addr"] as? String ?? "").hasPrefix("/ip4/203.0.113.1/tcp/"), "\(upgraded)")
            let echoed = try #require(listener.anyLine(withEvent: "echo", within: 10), "no echo: \(transcript)")
            #expect(echoed["bytes"] as? Int == 1 << 20)
        }
    }
}

extension ExternalProgram {
    /// The Python with py-libp2p 0.8.1: `$PUNCH_PYTHON`, else the repository's `.venv/bin/python`
    /// (an absolute path, so that it runs inside the lab's namespaces too).
    static func pyLibp2pPython() throws -> String {
        let path = ProcessInfo.processInfo.environment["PUNCH_PYTHON"] ?? repositoryRoot.appendingPathComponent(".venv/bin/python").path
        guard path.hasPrefix("/"), FileManager.default.isExecutableFile(atPath: path) else {
            throw ProbeFailure("py-libp2p's Python is not at \(path) (an absolute path); run scripts/test, which creates .venv with libp2p==0.8.1, or set PUNCH_PYTHON")
        }
        return path
    }

    /// A script of Interop/py.
    static func pyLibp2pScript(_ name: String) -> String {
        repositoryRoot.appendingPathComponent("Interop/py/\(name)").path
    }

    static var repositoryRoot: URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    }
}

extension LabProcess {
    /// The first stdout line so far, or within `seconds`, that is a JSON object with this `event`
    /// (any line, in whatever order the lines came).
    func anyLine(withEvent event: String, within seconds: Double) -> ProbeResult? {
        let deadline = Date(timeIntervalSinceNow: seconds)
        repeat {
            for line in outputLines {
                if let object = try? parseJSON(line), object["event"] as? String == event { return object }
            }
            usleep(50_000)
        } while Date() < deadline
        return nil
    }
}
