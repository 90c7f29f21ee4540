import Foundation
import Testing

#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// `punch listen` on PunchNode as a user runs it, on loopback: its Prometheus metrics, and a
/// second process on its port refused.
@Suite(.serialized) struct NodeCLITests {
    @Test func listenServesNodeMetricsAndASecondProcessOnItsPortIsRefused() async throws {
        let punch = try ExternalTools.punchBinary()
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("punch-node-cli-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let port = try FreePort.find()

        let listener = try BackgroundProcess(punch, [
            "listen", "--listen", "/ip4/127.0.0.1/tcp/\(port)", "--metrics", "127.0.0.1:0",
            "--identity", directory.appendingPathComponent("listener.key").path, "--json",
        ])
        defer { _ = listener.stop() }
        let listening = try listener.waitForEvent("listening")
        let address = try #require((listening["addrs"] as? [String])?.first)
        let metricsURL = try #require((listening["metrics"] as? String).flatMap(URL.init(string:)))

        let dial = try ExternalTools.run(punch, ["dial", address, "--bytes", "65536", "--json"], timeout: 60)
        #expect(dial.status == 0, "punch dial failed: \(dial.stdout) \(dial.stderr)")
        _ = try listener.waitForJSON { $0["event"] as? String == "disconnected" }

        let (body, reply) = try await URLSession.shared.data(from: metricsURL)
        #expect((reply as? HTTPURLResponse)?.statusCode == 200)
        let text = String(decoding: body, as: UTF8.self)
        #expect(text.contains("punch_node_connections{"), "\(text)")
        // The dialer's connection carried 64 KiB each way (and its framing) before it closed.
        let bytesIn = text.split(separator: "\n").first { $0.hasPrefix("punch_node_bytes_total{") && $0.contains(#"direction="in""#) }
        let count = bytesIn.flatMap { $0.split(separator: " ").last.flatMap { Double($0) } } ?? 0
        #expect(count >= 65536, "\(text)")

        // Another process, another identity, the same port: refused, not silently sharing it.
        let second = try ExternalTools.run(punch, [
            "listen", "--listen", "/ip4/127.0.0.1/tcp/\(port)", "--identity", directory.appendingPathComponent("second.key").path, "--json",
        ], timeout: 30)
        #expect(second.status == 1, "\(second.stdout) \(second.stderr)")
        let error = try ExternalTools.jsonObject(String(try #require(second.stdout.split(separator: "\n").last)))
        #expect(error["code"] as? String == "host.listenPortInUse", "\(error)")
    }
}
