import Foundation
import Testing

/// Punch and the real py-libp2p 0.8.1 (in `.venv`) on loopback, in both directions: Noise, yamux,
/// ping, identify and a 1 MiB echo, through the `punch` binary a user runs.
/// Interop/py/host.py is the py-libp2p peer (Noise and yamux only).
@Suite(.serialized)
struct PyLibp2pHostTests {
    static let echoBytes = 1 << 20

    static func hostScript() -> String {
        ExternalTools.repositoryRoot.appendingPathComponent("Interop/py/host.py").path
    }

    static func temporaryKeyPath() -> String {
        FileManager.default.temporaryDirectory.appendingPathComponent("punch-interop-\(UUID().uuidString).key").path
    }

    /// Splits `punch dial --json` output into its events.
    static func events(_ stdout: String) -> [String: [String: Any]] {
        var events: [String: [String: Any]] = [:]
        for line in stdout.split(separator: "\n") {
            if let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
                let event = object["event"] as? String
            {
                events[event] = object
            }
        }
        return events
    }

    @Test func punchDialsPyLibp2p() throws {
        let python = try ExternalTools.python()
        let punch = try ExternalTools.punchBinary()
        let listener = try BackgroundProcess(python, [Self.hostScript(), "listen", "--port", "0"])
        defer { listener.stop() }
        let listening = try listener.waitForEvent("listening", timeout: 30)
        let address = try #require((listening["addrs"] as? [String])?.first)
        let peer = try #require(listening["peer_id"] as? String)
        #expect(address.hasSuffix("/p2p/\(peer)"))

        let dial = try ExternalTools.run(punch, ["dial", address, "--bytes", "\(Self.echoBytes)", "--json"], timeout: 60)
        #expect(dial.status == 0, "punch dial failed: \(dial.stdout) \(dial.stderr)")
        let events = Self.events(dial.stdout)
        let result = try #require(events["result"], "no result line: \(dial.stdout)")
        #expect(result["ok"] as? Bool == true)
        #expect(result["peer_id"] as? String == peer)
        #expect(result["bytes"] as? Int == Self.echoBytes)
        let identified = try #require(events["identified"])
        let agent = try #require(identified["agent_version"] as? String)
        #expect(agent.lowercased().contains("py-libp2p") || agent.lowercased().contains("libp2p"), "agent: \(agent)")
        #expect((identified["protocols"] as? [String] ?? []).contains("/punch/echo/1.0.0"))
        // py-libp2p reports the address it sees us at: our end of the connection.
        let connected = try #require(events["connected"])
        #expect(identified["observed_addr"] as? String == connected["local_addr"] as? String)
        #expect((events["ping"]?["rtt_ms"] as? [Double])?.count == 3)

        let echoed = try listener.waitForEvent("echo", timeout: 10)
        #expect(echoed["bytes"] as? Int == Self.echoBytes)
    }

    @Test func pyLibp2pDialsPunch() throws {
        let python = try ExternalTools.python()
        let punch = try ExternalTools.punchBinary()
        let key = Self.temporaryKeyPath()
        defer { try? FileManager.default.removeItem(atPath: key) }
        let listener = try BackgroundProcess(punch, ["listen", "--listen", "/ip4/127.0.0.1/tcp/0", "--identity", key, "--json"])
        let listening = try listener.waitForEvent("listening", timeout: 30)
        let address = try #require((listening["addrs"] as? [String])?.first)
        let peer = try #require(listening["peer_id"] as? String)

        let dial = try ExternalTools.run(python, [Self.hostScript(), "dial", address, "--bytes", "\(Self.echoBytes)"], timeout: 60)
        #expect(dial.status == 0, "host.py dial failed: \(dial.stdout) \(dial.stderr)")
        let result = try ExternalTools.jsonObject(dial.stdout)
        #expect(result["ok"] as? Bool == true, "\(dial.stdout) \(dial.stderr)")
        #expect(result["peer_id"] as? String == peer)
        #expect(result["echo_bytes"] as? Int == Self.echoBytes)
        #expect((result["ping_rtt_ms"] as? [Any])?.isEmpty == false)
        let identify = try #require(result["identify"] as? [String: Any])
        #expect(identify["agent_version"] as? String == "punch/0.1.0")
        #expect(identify["protocol_version"] as? String == "ipfs/0.1.0")
        let protocols = identify["protocols"] as? [String] ?? []
        for expected in ["/ipfs/ping/1.0.0", "/ipfs/id/1.0.0", "/punch/echo/1.0.0"] {
            #expect(protocols.contains(expected), "missing \(expected) in \(protocols)")
        }
        #expect((identify["listen_addrs"] as? [String] ?? []).contains(address.components(separatedBy: "/p2p/")[0]))
        let observed = try #require(identify["observed_addr"] as? String)
        #expect(observed.hasPrefix("/ip4/127.0.0.1/tcp/"))

        // The listener saw the connection, identified the peer, and echoed every byte.
        let connected = try listener.waitForEvent("connected", timeout: 10)
        #expect(connected["direction"] as? String == "inbound")
        #expect(connected["remote_addr"] as? String == observed)
        let echoed = try listener.waitForEvent("echo", timeout: 10)
        #expect(echoed["bytes"] as? Int == Self.echoBytes)

        // SIGTERM ends `punch listen` cleanly.
        #expect(listener.stop() == 0, "punch listen: \(listener.errorOutput)")
    }

    @Test func punchDialsPunch() throws {
        let punch = try ExternalTools.punchBinary()
        let key = Self.temporaryKeyPath()
        defer { try? FileManager.default.removeItem(atPath: key) }
        let listener = try BackgroundProcess(punch, ["listen", "--listen", "/ip4/127.0.0.1/tcp/0", "--identity", key, "--json"])
        defer { listener.stop() }
        let listening = try listener.waitForEvent("listening", timeout: 30)
        let address = try #require((listening["addrs"] as? [String])?.first)

        let dial = try ExternalTools.run(punch, ["dial", address, "--bytes", "3000001", "--json"], timeout: 60)
        #expect(dial.status == 0, "\(dial.stdout) \(dial.stderr)")
        let events = Self.events(dial.stdout)
        #expect(events["result"]?["ok"] as? Bool == true)
        #expect(events["identified"]?["agent_version"] as? String == "punch/0.1.0")
        #expect(events["identified"]?["observed_addr"] as? String == events["connected"]?["local_addr"] as? String)
        #expect(try listener.waitForEvent("echo")["bytes"] as? Int == 3_000_001)
    }

    @Test func dialingTheWrongPeerIDFailsWithATypedError() throws {
        let punch = try ExternalTools.punchBinary()
        let key = Self.temporaryKeyPath()
        defer { try? FileManager.default.removeItem(atPath: key) }
        let listener = try BackgroundProcess(punch, ["listen", "--listen", "/ip4/127.0.0.1/tcp/0", "--identity", key, "--json"])
        defer { listener.stop() }
        let listening = try listener.waitForEvent("listening", timeout: 30)
        let address = try #require((listening["addrs"] as? [String])?.first)
        let wrong = address.components(separatedBy: "/p2p/")[0] + "/p2p/12D3KooWBtg3aaRMjxwedh83aGiUkwSxDwUZkzuJcfaqUmo7R3pq"

        let dial = try ExternalTools.run(punch, ["dial", wrong, "--json"], timeout: 60)
        #expect(dial.status != 0)
        let error = Self.events(dial.stdout)["error"]
        #expect(error?["code"] as? String == "noise.peerIDMismatch", "\(dial.stdout)")
        #expect(Self.events(dial.stdout)["result"]?["ok"] as? Bool == false)
    }
}
