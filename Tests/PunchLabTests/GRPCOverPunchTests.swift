import Foundation
import PunchLab
import Testing

extension NATLabSelfTests {
    /// gRPC over Punch across the lab, with the example application (Examples/PunchKV): the
    /// server behind r2, a client behind r1 that knows only its PeerID and the relay on srv.
    @Suite struct GRPCOverPunch {
        /// 40 concurrent bidirectional streaming RPCs for 10 s over the punched connection, every
        /// message verified; a stream opened over the relayed connection runs across the upgrade;
        /// then a unary RPC once the relayed connection has gone.
        @Test func fortyStreamsOverThePunchedConnectionThenUnaryAfterTheRelayedOneHasGone() throws {
            let punch = try ExternalProgram.punch()
            let kv = URL(fileURLWithPath: punch).deletingLastPathComponent().appendingPathComponent("punch-kv").path
            guard FileManager.default.isExecutableFile(atPath: kv) else {
                throw ProbeFailure("the punch-kv example is not at \(kv); run `swift build` (scripts/test does)")
            }
            let lab = try RelayLab(punch: punch, name: "punch-grpc")
            defer { lab.tearDown() }

            let server = try lab.spawn(.h2, [
                kv, "serve", "--listen", "/ip4/0.0.0.0/tcp/4001", "--relay", lab.relayAddress,
                "--identity", lab.identity("kv-server"),
            ])
            let listening = try parseJSON(server.waitForLine(containing: #""event":"listening""#, timeout: .seconds(20)))
            let peer = try #require(listening["peer_id"] as? String)
            _ = try server.waitForLine(containing: #""event":"reserved""#, timeout: .seconds(20))

            let client = try lab.spawn(.h1, [
                kv, "stress", peer, "--relay", lab.relayAddress, "--listen", "/ip4/0.0.0.0/tcp/4001",
                "--streams", "40", "--seconds", "10", "--upgrade-timeout", "40", "--require-direct",
            ])
            let status = try client.waitForExit(timeout: .seconds(150))
            let lines = client.outputLines.compactMap { try? parseJSON($0) }
            let transcript = "punch-kv stress (status \(status)):\n\(client.outputLines.joined(separator: "\n"))\n"
                + "\(client.errorOutput.suffix(3000))\npunch-kv serve:\n\(server.outputLines.joined(separator: "\n"))\n"
                + "\(server.errorOutput.suffix(2000))"
            #expect(status == 0, "\(transcript)")
            let connected = try #require(lines.first { $0["event"] as? String == "connected" }, "\(transcript)")
            #expect(connected["path"] as? String == "relayed", "the first RPC goes through the relay: \(transcript)")
            #expect(connected["stored_by"] as? String != nil && connected["stored_by"] as? String != "?", "\(transcript)")
            let upgraded = try #require(lines.first { $0["event"] as? String == "upgraded" }, "no upgrade: \(transcript)")
            #expect((upgraded["remote_addr"] as? String ?? "").hasPrefix("/ip4/203.0.113.2/tcp/"), "\(upgraded)")
            let result = try #require(lines.last { $0["event"] as? String == "result" }, "\(transcript)")
            #expect(result["ok"] as? Bool == true, "\(transcript)")
            #expect(result["streams_path"] as? String == "direct", "\(transcript)")
            #expect(result["relayed_gone"] as? Bool == true, "\(transcript)")
            #expect(result["final_path"] as? String == "direct", "\(transcript)")
            #expect(result["mismatches"] as? Int == 0, "\(transcript)")
            // 40 streams × 10 s at one entry per 10 ms each: far more than a few per stream.
            #expect((result["messages"] as? Int ?? 0) > 40 * 50, "\(transcript)")
            let early = try #require(lines.first { $0["event"] as? String == "early_stream" }, "\(transcript)")
            #expect(early["error"] == nil && (early["received"] as? Int ?? 0) > 0, "\(transcript)")
        }
    }
}
