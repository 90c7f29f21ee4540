import Foundation
import NIOCore
import NIOPosix
import Punch
import Testing

/// Punch's STUN codec against a real coturn server on the loopback interface.
///
/// Each test starts its own `turnserver --stun-only` on a free UDP port and always stops it.
/// These tests never skip: a missing turnserver is a failure, because `scripts/test` installs it.
@Suite(.serialized) struct STUNCoturnTests {
    @Test func bindingRequestWithFingerprint() async throws {
        try await Self.withTurnserver { server, client in
            let request = STUNMessage(type: .bindingRequest)
            let response = try await client.transact(try request.encoded(fingerprint: true), id: request.transactionID, with: server)

            #expect(response.type == .bindingSuccessResponse)
            #expect(response.transactionID == request.transactionID)
            // The decoder has verified the FINGERPRINT; coturn answers with one because the request had one.
            #expect(response.hasFingerprint)
            #expect(response.xorMappedAddress == client.localEndpoint)
            #expect(response.unknownComprehensionRequiredAttributes.isEmpty)
        }
    }

    @Test func bindingRequestWithoutFingerprint() async throws {
        try await Self.withTurnserver { server, client in
            let request = STUNMessage(type: .bindingRequest, attributes: [.software("Punch interop test")])
            let response = try await client.transact(try request.encoded(), id: request.transactionID, with: server)

            #expect(response.type == .bindingSuccessResponse)
            #expect(response.transactionID == request.transactionID)
            #expect(response.xorMappedAddress == client.localEndpoint)
        }
    }

    // MARK: - Harness

    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    /// A port for coturn, which listens on UDP and TCP (``FreePort``).
    static func freeUDPPort() async throws -> Int {
        Int(try FreePort.find())
    }

    /// Runs `body` with a started turnserver and a client socket; stops the server afterwards,
    /// also when `body` throws. On failure the server's log is attached to the error.
    static func withTurnserver(_ body: (SocketAddress, RawSTUNClient) async throws -> Void) async throws {
        let executable = try ExternalTools.system("turnserver", package: "coturn")
        let port = try await freeUDPPort()
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("punch-coturn-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let logURL = directory.appendingPathComponent("turnserver.log")
        _ = FileManager.default.createFile(atPath: logURL.path, contents: nil)
        let log = try FileHandle(forWritingTo: logURL)
        defer { try? log.close() }

        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = [
            "-n", "--stun-only", "--no-cli", "--no-tls", "--no-dtls",
            "--listening-ip", "127.0.0.1", "--listening-port", String(port),
            "--log-file", "stdout",
            // Keep coturn's files in the test's own directory, away from /var and other runs.
            "--pidfile", directory.appendingPathComponent("turnserver.pid").path,
            "--db", directory.appendingPathComponent("turndb").path,
        ]
        process.standardOutput = log
        process.standardError = log
        process.standardInput = FileHandle.nullDevice
        try process.run()
        defer { stop(process) }

        let server = try SocketAddress(ipAddress: "127.0.0.1", port: port)
        do {
            try await RawSTUNClient.withClient { client in
                // Ready when it answers a Binding request at all.
                let probe = STUNMessage(type: .bindingRequest)
                _ = try await client.transact(try probe.encoded(), id: probe.transactionID, with: server, timeout: .seconds(5))
                try await body(server, client)
            }
        } catch {
            let output = (try? String(contentsOf: logURL, encoding: .utf8)) ?? ""
            throw Failure(description: "\(error)\n--- turnserver output (last 2000 characters) ---\n\(output.suffix(2000))")
        }
    }

    /// Stops coturn with SIGKILL. SIGTERM does not work here: a child started by Foundation's
    /// `Process` under the test runner inherits a signal mask that blocks SIGTERM (seen in
    /// /proc/PID/status), so coturn would never see it. A STUN-only coturn has nothing to flush,
    /// and its files live in the test's temporary directory.
    static func stop(_ process: Process) {
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
    }
}

/// A UDP socket that sends STUN requests and waits for the matching response.
struct RawSTUNClient {
    /// What the single consumer loop reacts to: a decoded datagram, or a 100 ms tick.
    enum Event: Sendable {
        case message(STUNMessage)
        case tick
    }

    let localEndpoint: IPEndpoint
    let outbound: NIOAsyncChannelOutboundWriter<AddressedEnvelope<ByteBuffer>>
    let events: AsyncStream<Event>

    /// Binds 127.0.0.1:0 and runs `body`; a reader and a ticker feed one event stream, so waiting
    /// with a timeout needs no cancellation of a pending read.
    static func withClient(_ body: (RawSTUNClient) async throws -> Void) async throws {
        let channel = try await DatagramBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .bind(host: "127.0.0.1", port: 0) { channel in
                channel.eventLoop.makeCompletedFuture {
                    try NIOAsyncChannel<AddressedEnvelope<ByteBuffer>, AddressedEnvelope<ByteBuffer>>(wrappingChannelSynchronously: channel)
                }
            }
        let local = try #require(channel.channel.localAddress.flatMap(IPEndpoint.init))
        try await channel.executeThenClose { inbound, outbound in
            let (events, continuation) = AsyncStream<Event>.makeStream()
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask {
                    for try await envelope in inbound {
                        // Anything that is not a well-formed STUN message is dropped, as a client would.
                        if let message = try? STUNMessage.decode(datagram: Array(envelope.data.readableBytesView)) {
                            continuation.yield(.message(message))
                        }
                    }
                }
                group.addTask {
                    while !Task.isCancelled {
                        try await Task.sleep(for: .milliseconds(100))
                        continuation.yield(.tick)
                    }
                }
                defer { group.cancelAll() }
                try await body(RawSTUNClient(localEndpoint: local, outbound: outbound, events: events))
            }
            continuation.finish()
        }
    }

    /// Sends `request` every 100 ms (retransmissions of one transaction, RFC 8489 §6.2.1) until a
    /// response with `id` arrives.
    ///
    /// - Throws: if no response arrives within `timeout`.
    func transact(_ request: [UInt8], id: STUNTransactionID, with server: SocketAddress, timeout: Duration = .seconds(2)) async throws -> STUNMessage {
        let deadline = ContinuousClock.now + timeout
        try await outbound.write(AddressedEnvelope(remoteAddress: server, data: ByteBuffer(bytes: request)))
        for await event in events {
            switch event {
            case .message(let message) where message.transactionID == id:
                return message
            case .message:
                continue  // a late answer to an earlier transaction
            case .tick:
                guard ContinuousClock.now < deadline else {
                    throw STUNCoturnTests.Failure(description: "no STUN response from \(server) within \(timeout)")
                }
                try await outbound.write(AddressedEnvelope(remoteAddress: server, data: ByteBuffer(bytes: request)))
            }
        }
        throw STUNCoturnTests.Failure(description: "the client socket closed while waiting for a response")
    }
}
