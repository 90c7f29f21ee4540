import Foundation
import NIOCore
import NIOPosix
import Punch
import Testing

/// PunchDiscovery against coturn, both ways, on loopback: Punch's STUN client and NAT
/// classifier against `turnserver`, and coturn's `turnutils_stunclient` and
/// `turnutils_natdiscovery` against `punch stun`. 127.0.0.2 is the second address RFC 5780
/// needs (all of 127/8 is loopback on Linux). Nothing is skipped: a missing program fails.
@Suite(.serialized) struct STUNDiscoveryInteropTests {
    static let loopback = try! IPEndpoint("127.0.0.1:0")

    @Test func punchClientGetsItsAddressFromCoturn() async throws {
        try await Self.withCoturn(addresses: ["127.0.0.1"]) { server in
            let client = try await STUNClient.bind(to: Self.loopback)
            let local = client.localAddress
            let response = try await client.binding(to: server)
            let statistics = try await client.statistics()
            try await client.close()
            #expect(local != nil && response.mappedAddress == local)
            #expect(response.source == server)
            #expect(response.message.hasFingerprint, "coturn answers FINGERPRINT to a request with one")
            #expect(response.otherAddress == nil, "one address: no RFC 5780")
            #expect(statistics.completed == 1 && statistics.droppedMalformed == 0)
        }
    }

    /// STUN over TCP (RFC 8489 §6.2.2): coturn listens on TCP on its listening port too.
    @Test func punchTCPClientGetsItsAddressFromCoturn() async throws {
        try await Self.withCoturn(addresses: ["127.0.0.1"]) { server in
            var response: STUNBindingResponse?
            // coturn's TCP listener may come up a moment after its UDP one.
            for _ in 0..<20 where response == nil {
                response = try? await STUNTCPClient.binding(to: server, timeout: .seconds(2))
                if response == nil { try await Task.sleep(for: .milliseconds(100)) }
            }
            let mapped = try #require(response?.mappedAddress)
            #expect(mapped.address == (try IPAddress("127.0.0.1")))
            #expect(mapped.port != server.port)
        }
    }

    @Test func punchClassifierAgainstCoturnRFC5780SeesNoNAT() async throws {
        try await Self.withCoturn(addresses: ["127.0.0.1", "127.0.0.2"]) { server in
            let client = try await STUNClient.bind(to: Self.loopback, configuration: .behaviourDiscovery)
            let result = await NATClassifier(client: client).classify(server: server)
            try await client.close()
            #expect(result.otherAddress == IPEndpoint(address: try IPAddress("127.0.0.2"), port: server.port + 1), "\(result)")
            #expect(result.udp && result.natDetected == false, "\(result)")
            #expect(result.mapping == .endpointIndependent && result.filtering == .endpointIndependent, "\(result)")
            #expect(result.hairpin == true && result.portPreserved == true, "\(result)")
        }
    }

    @Test func coturnStunclientGetsItsAddressFromPunchStun() throws {
        let stunclient = try ExternalTools.system("turnutils_stunclient", package: "coturn")
        let server = try BackgroundProcess(try ExternalTools.punchBinary(), ["stun", "--listen", "127.0.0.1:0", "--json"])
        defer { server.stop() }
        let port = try Self.port(of: server)
        let output = try ExternalTools.run(stunclient, ["-p", "\(port)", "127.0.0.1"], timeout: 20)
        #expect(output.status == 0, "\(output.stdout) \(output.stderr)")
        #expect(output.stdout.contains("UDP reflexive addr: 127.0.0.1:"), "\(output.stdout)")
        #expect(server.stop() == 0, "punch stun exits 0 on SIGTERM: \(server.errorOutput)")
        let stopped = try server.waitForEvent("stopped", timeout: 5)
        #expect((stopped["success_responses"] as? Int ?? 0) >= 1, "\(stopped)")
    }

    @Test func coturnNatdiscoveryClassifiesThroughPunchStunRFC5780() throws {
        let natdiscovery = try ExternalTools.system("turnutils_natdiscovery", package: "coturn")
        let server = try BackgroundProcess(try ExternalTools.punchBinary(), ["stun", "--listen", "127.0.0.1:0", "--alternate-ip", "127.0.0.2", "--json"])
        defer { server.stop() }
        let listening = try server.waitForEvent("listening")
        #expect(listening["rfc5780"] as? Bool == true)
        let port = try Self.port(of: server, listening)
        #expect((listening["addrs"] as? [String])?.sorted() == ["127.0.0.1:\(port)", "127.0.0.1:\(port + 1)", "127.0.0.2:\(port)", "127.0.0.2:\(port + 1)"])
        let output = try ExternalTools.run(natdiscovery, ["-m", "-f", "-H", "-p", "\(port)", "127.0.0.1"], timeout: 60)
        let report = output.stdout + output.stderr
        #expect(output.status == 0, "\(report)")
        #expect(report.contains("NAT with Endpoint Independent Mapping!"), "\(report)")
        #expect(report.contains("NAT with Endpoint Independent Filtering!"), "\(report)")
        #expect(report.contains("Received a request (maybe a successful hairpinning)"), "\(report)")
        // The change-IP-and-port answer came from the alternate address and port.
        #expect(report.contains("Response origin: : 127.0.0.2:\(port + 1)"), "\(report)")
        #expect(report.contains("Other addr: : 127.0.0.2:\(port + 1)"), "\(report)")
    }

    @Test func punchNetcheckJSONAgainstPunchStun() throws {
        let punch = try ExternalTools.punchBinary()
        let server = try BackgroundProcess(punch, ["stun", "--listen", "127.0.0.1:0", "--alternate-ip", "127.0.0.2", "--json"])
        defer { server.stop() }
        let port = try Self.port(of: server)
        let output = try ExternalTools.run(punch, ["netcheck", "--json", "--stun", "127.0.0.1:\(port)", "--stun", "localhost:\(port + 1)"], timeout: 60)
        #expect(output.status == 0, "\(output.stderr)")
        let lines = output.stdout.split(separator: "\n")
        #expect(lines.count == 1, "one JSON object: \(output.stdout)")
        let report = try ExternalTools.jsonObject(output.stdout)
        #expect(report["udp"] as? Bool == true)
        #expect((report["public_v4"] as? String)?.hasPrefix("127.0.0.1:") == true, "\(report)")
        #expect(report["public_v6"] is NSNull, "\(report)")
        #expect(report["mapping"] as? String == "endpoint-independent", "\(report)")
        #expect(report["filtering"] as? String == "endpoint-independent", "\(report)")
        #expect(report["hairpin"] as? Bool == true && report["port_preserved"] as? Bool == true, "\(report)")
        let servers = report["servers"] as? [[String: Any]] ?? []
        #expect(servers.map { $0["address"] as? String } == ["127.0.0.1:\(port)", "localhost:\(port + 1)"], "\(servers)")
        #expect(servers.allSatisfy { ($0["latency_ms"] as? Double).map { $0 >= 0 } == true && $0["rfc5780"] as? Bool == true }, "\(servers)")
    }

    @Test func punchNetcheckWithoutRFC5780ServerLeavesMappingAndFilteringUnknown() throws {
        let punch = try ExternalTools.punchBinary()
        let server = try BackgroundProcess(punch, ["stun", "--listen", "127.0.0.1:0", "--json"])
        defer { server.stop() }
        let port = try Self.port(of: server)
        let output = try ExternalTools.run(punch, ["netcheck", "--json", "--stun", "127.0.0.1:\(port)"], timeout: 60)
        #expect(output.status == 0, "\(output.stderr)")
        let report = try ExternalTools.jsonObject(output.stdout)
        #expect(report["udp"] as? Bool == true, "\(report)")
        #expect(report["mapping"] is NSNull && report["filtering"] is NSNull && report["rfc5780_server"] is NSNull, "\(report)")
        #expect(report["hairpin"] as? Bool == true && report["port_preserved"] as? Bool == true, "\(report)")
        let human = try ExternalTools.run(punch, ["netcheck", "--stun", "127.0.0.1:\(port)"], timeout: 60)
        #expect(human.stdout.contains("no server supports RFC 5780"), "\(human.stdout)")
        #expect(human.stdout.contains("Mapping:        unknown"), "\(human.stdout)")
    }

    @Test func punchNetcheckWithoutServerSaysSo() throws {
        let output = try ExternalTools.run(try ExternalTools.punchBinary(), ["netcheck", "--json"], timeout: 20)
        #expect(output.status == 1)
        let error = try ExternalTools.jsonObject(output.stdout)
        #expect(error["code"] as? String == "netcheck.noSTUNServer")
        #expect((error["message"] as? String)?.contains("--stun HOST:PORT") == true)
        #expect(output.stderr.contains("netcheck needs at least one STUN server"))
    }

    // MARK: - Harness

    /// The primary port `punch stun --json` listens on.
    static func port(of server: BackgroundProcess, _ listening: [String: Any]? = nil) throws -> UInt16 {
        let event = try listening ?? server.waitForEvent("listening")
        guard let first = (event["addrs"] as? [String])?.first, let endpoint = try? IPEndpoint(first) else {
            throw ToolMissing("punch stun printed no address: \(event)")
        }
        return endpoint.port
    }

    /// Runs `body` with coturn listening on `addresses` (two of them: RFC 5780 mode on a port and
    /// the next one), always stopping it; its log is attached to a failure.
    static func withCoturn(addresses: [String], _ body: (IPEndpoint) async throws -> Void) async throws {
        let executable = try ExternalTools.system("turnserver", package: "coturn")
        let port = try await freePortPair(addresses)
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("punch-coturn-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let logURL = directory.appendingPathComponent("turnserver.log")
        _ = FileManager.default.createFile(atPath: logURL.path, contents: nil)
        let log = try FileHandle(forWritingTo: logURL)
        defer { try? log.close() }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = ["-n", "--stun-only", "--no-cli", "--no-tls", "--no-dtls", "--listening-port", "\(port)", "--log-file", "stdout",
                             "--pidfile", directory.appendingPathComponent("turnserver.pid").path,
                             "--db", directory.appendingPathComponent("turndb").path]
            + addresses.flatMap { ["--listening-ip", $0] }
        process.standardOutput = log
        process.standardError = log
        process.standardInput = FileHandle.nullDevice
        try process.run()
        defer { STUNCoturnTests.stop(process) }
        let server = IPEndpoint(address: try IPAddress(addresses[0]), port: port)
        do {
            // Ready when it answers at all (coturn opens its sockets a little after starting).
            let probe = try await STUNClient.bind(to: loopback, configuration: STUNClientConfiguration(
                retransmissionTimeout: .milliseconds(100), maximumRequests: 7, finalWaitMultiplier: 4))
            defer { Task { try? await probe.close() } }
            _ = try await probe.binding(to: server)
            if addresses.count > 1 {
                _ = try await probe.binding(to: IPEndpoint(address: try IPAddress(addresses[1]), port: port + 1))
            }
            try await body(server)
        } catch {
            let output = (try? String(contentsOf: logURL, encoding: .utf8)) ?? ""
            throw STUNCoturnTests.Failure(description: "\(error)\n--- turnserver output (last 2000 characters) ---\n\(output.suffix(2000))")
        }
    }

    /// A port free on every address, with the next port free too (RFC 5780's second port), for
    /// UDP and TCP (``FreePort``).
    static func freePortPair(_ addresses: [String]) async throws -> UInt16 {
        try FreePort.find(on: addresses, count: 2)
    }
}
