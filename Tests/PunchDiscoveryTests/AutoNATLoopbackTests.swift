import Foundation
import NIOConcurrencyHelpers
import NIOCore
import PunchCrypto
@testable import PunchDiscovery
import PunchTransport
import PunchWire
import Testing

/// AutoNAT v2 between real PunchHosts on loopback: Noise, yamux, real dial-backs.
@Suite struct AutoNATLoopbackTests {
    /// A host listening on `ip`, port 0.
    static func host(on ip: String = "127.0.0.1") async throws -> (PunchHost, Multiaddr) {
        let host = PunchHost(configuration: HostConfiguration(identity: .generate()))
        let addresses = try await host.listen(Multiaddr("/ip4/\(ip)/tcp/0"))
        return (host, try #require(addresses.first))
    }

    /// A server that allows loopback, and records what it did.
    static func server(_ configure: (inout AutoNATServerConfiguration) -> Void = { _ in }) async throws
        -> (PunchHost, Multiaddr, NIOLockedValueBox<[AutoNATServerRecord]>)
    {
        let (host, address) = try await host()
        var configuration = AutoNATServerConfiguration()
        configuration.allowPrivateAddresses = true
        configure(&configuration)
        let records = NIOLockedValueBox<[AutoNATServerRecord]>([])
        try AutoNATServer.serve(on: host, configuration: configuration) { record in
            records.withLockedValue { $0.append(record) }
        }
        return (host, address, records)
    }

    static func closeAll(_ hosts: PunchHost...) async {
        for host in hosts { await host.close() }
    }

    /// A port nobody listens on: one a listener had, closed again.
    static func closedPort() async throws -> UInt16 {
        let (host, address) = try await host()
        let port = try #require(address.transportEndpoint?.port)
        await host.close()
        return port
    }

    @Test func aListeningAddressIsReachableAndTheDialBackLeavesFromAnotherPort() async throws {
        let (serverHost, serverAddress, records) = try await Self.server()
        let (clientHost, clientAddress) = try await Self.host()
        defer { Task { await Self.closeAll(serverHost, clientHost) } }
        var configuration = AutoNATClientConfiguration()
        configuration.confirmations = 1
        let client = try AutoNATClient(host: clientHost, configuration: configuration)
        let connection = try await clientHost.dial(serverAddress)

        let results = try await client.check(addresses: [clientAddress], via: connection)
        #expect(results.count == 1)
        let result = try #require(results.first)
        #expect(result.status == .reachable, "\(result)")
        #expect(result.reachable == true)
        #expect(result.address == clientAddress.withoutPeerID())
        #expect(result.dialDataBytes == 0, "same IP as observed: no dial data")
        let serverPort = try #require(serverAddress.transportEndpoint?.port)
        let dialBackFrom = try #require(result.dialBackRemoteAddress?.transportEndpoint)
        #expect(dialBackFrom.port != serverPort, "the dial-back left from the listening port \(serverPort)")
        #expect(result.dialBackLocalAddress?.transportEndpoint == clientAddress.transportEndpoint)
        let record = try await Self.firstRecord(records)
        #expect(record.responseStatus == "OK" && record.dialStatus == "OK")
        #expect(record.dialBackLocalAddress?.transportEndpoint?.port != serverPort)
        #expect(client.reachability(of: clientAddress) == .reachable)
        var updates = client.reachabilityUpdates.makeAsyncIterator()
        let update = await updates.next()
        #expect(update?.reachability == .reachable && update?.address == clientAddress.withoutPeerID())
    }

    @Test func anAddressNobodyListensOnIsUnreachable() async throws {
        let (serverHost, serverAddress, records) = try await Self.server()
        let (clientHost, _) = try await Self.host()
        defer { Task { await Self.closeAll(serverHost, clientHost) } }
        let client = try AutoNATClient(host: clientHost)
        let connection = try await clientHost.dial(serverAddress)
        let nobody = Multiaddr.tcp(IPEndpoint(address: try IPAddress("127.0.0.1"), port: try await Self.closedPort()))

        let result = try #require(try await client.check(addresses: [nobody], via: connection).first)
        #expect(result.status == .unreachable, "\(result)")
        #expect(result.reachable == false)
        #expect(result.dialBackRemoteAddress == nil)
        #expect(try await Self.firstRecord(records).dialStatus == "E_DIAL_ERROR")
    }

    @Test func anotherIPCostsDialDataBeforeTheDialBack() async throws {
        let (serverHost, serverAddress, records) = try await Self.server()
        // The client listens on 127.0.0.2; its connection to the server comes from 127.0.0.1.
        let (clientHost, clientAddress) = try await Self.host(on: "127.0.0.2")
        defer { Task { await Self.closeAll(serverHost, clientHost) } }
        let client = try AutoNATClient(host: clientHost)
        let connection = try await clientHost.dial(serverAddress)
        #expect(connection.localAddress?.ipAddress == (try IPAddress("127.0.0.1")))

        let result = try #require(try await client.check(addresses: [clientAddress], via: connection).first)
        #expect(result.status == .reachable, "\(result)")
        #expect(result.dialDataBytes >= AutoNATProtocol.minimumDialDataRequest)
        let before = try #require(result.dialDataBytesBeforeDialBack)
        #expect(before >= AutoNATProtocol.minimumDialDataRequest, "the dial-back came after \(before) bytes of dial data")
        let record = try await Self.firstRecord(records)
        #expect(record.dialDataBytes >= AutoNATProtocol.minimumDialDataRequest)
        #expect(record.dialBackLocalAddress?.transportEndpoint?.port != serverAddress.transportEndpoint?.port)
    }

    @Test func aClientRefusesDialDataOverItsLimitAndNoDialBackHappens() async throws {
        let (serverHost, serverAddress, records) = try await Self.server()
        let (clientHost, clientAddress) = try await Self.host(on: "127.0.0.2")
        defer { Task { await Self.closeAll(serverHost, clientHost) } }
        var configuration = AutoNATClientConfiguration()
        configuration.maximumDialDataBytes = 1000
        let client = try AutoNATClient(host: clientHost, configuration: configuration)
        let connection = try await clientHost.dial(serverAddress)

        let result = try #require(try await client.check(addresses: [clientAddress], via: connection).first)
        #expect(result.status == .failed)
        #expect(result.error?.code == .autonatDialDataRefused)
        let record = try await Self.firstRecord(records)
        #expect(record.dialed == nil, "the server dialed without its dial data")
        #expect(record.responseStatus == nil)
    }

    @Test func theServerRefusesLoopbackUnlessAllowedAndRejectsOverTheRateLimit() async throws {
        let (strictHost, strictAddress, _) = try await Self.server { $0.allowPrivateAddresses = false }
        let (limitedHost, limitedAddress, _) = try await Self.server { $0.maximumRequestsPerPeer = 1 }
        let (clientHost, clientAddress) = try await Self.host()
        defer { Task { await Self.closeAll(strictHost, limitedHost, clientHost) } }
        let client = try AutoNATClient(host: clientHost)

        let strict = try await clientHost.dial(strictAddress)
        let refused = try await client.check(addresses: [clientAddress, try Multiaddr("/ip4/10.0.0.1/tcp/4001")], via: strict)
        #expect(refused.map(\.status) == [.refused, .refused])
        #expect(refused.allSatisfy { $0.reachable == nil })

        let limited = try await clientHost.dial(limitedAddress)
        #expect(try await client.check(addresses: [clientAddress], via: limited).first?.status == .reachable)
        #expect(try await client.check(addresses: [clientAddress], via: limited).first?.status == .rejected)
    }

    @Test func eachAddressGetsItsOwnAnswer() async throws {
        let (serverHost, serverAddress, _) = try await Self.server()
        let (clientHost, clientAddress) = try await Self.host()
        defer { Task { await Self.closeAll(serverHost, clientHost) } }
        let client = try AutoNATClient(host: clientHost)
        let connection = try await clientHost.dial(serverAddress)
        let nobody = Multiaddr.tcp(IPEndpoint(address: try IPAddress("127.0.0.1"), port: try await Self.closedPort()))
        let quic = try Multiaddr("/ip4/127.0.0.1/udp/4001/quic-v1")

        let results = try await client.check(addresses: [quic, nobody, clientAddress], via: connection)
        #expect(results.map(\.status) == [.refused, .unreachable, .reachable], "\(results)")
    }

    @Test func aDialBackWithAnUnknownNonceIsDiscardedUnanswered() async throws {
        let (clientHost, clientAddress) = try await Self.host()
        let (strangerHost, _) = try await Self.host()
        defer { Task { await Self.closeAll(clientHost, strangerHost) } }
        let client = try AutoNATClient(host: clientHost)
        let connection = try await strangerHost.dial(clientAddress)
        let stream = try await connection.openStream(protocol: AutoNATProtocol.dialBack)
        let answer = try await stream.channel.executeThenClose { inbound, outbound in
            var dialBack = PBAutoNATv2DialBack()
            dialBack.nonce = 12345
            try await outbound.write(try AutoNATFraming.frame(dialBack))
            var bytes = 0
            for try await chunk in inbound { bytes += chunk.readableBytes }
            return bytes
        }
        #expect(answer == 0, "the client answered a dial-back that was not its own")
        #expect(client.ignoredDialBacks == 1)
    }

    @Test func aServerThatClaimsADialWithoutTheNonceIsNotBelieved() async throws {
        let (rogueHost, rogueAddress) = try await Self.host()
        let (clientHost, clientAddress) = try await Self.host()
        defer { Task { await Self.closeAll(rogueHost, clientHost) } }
        // Answers OK/OK without dialing back.
        rogueHost.setStreamHandler(for: AutoNATProtocol.dialRequest) { stream in
            try? await stream.channel.executeThenClose { inbound, outbound in
                var iterator = inbound.makeAsyncIterator()
                _ = try await iterator.next()
                var response = PBAutoNATv2DialResponse()
                response.status = .ok
                response.dialStatus = .ok
                try await outbound.write(try AutoNATFraming.message(.dialResponse(response)))
            }
        }
        let client = try AutoNATClient(host: clientHost)
        let connection = try await clientHost.dial(rogueAddress)
        let result = try #require(try await client.check(addresses: [clientAddress], via: connection).first)
        #expect(result.status == .failed)
        #expect(result.error?.code == .autonatUnverified)
        #expect(client.reachability(of: clientAddress) == .unknown)
    }

    @Test func oversizedAndUnexpectedServerMessagesFailTheCheck() async throws {
        let (rogueHost, rogueAddress) = try await Self.host()
        let (clientHost, clientAddress) = try await Self.host()
        defer { Task { await Self.closeAll(rogueHost, clientHost) } }
        let mode = NIOLockedValueBox(0)
        rogueHost.setStreamHandler(for: AutoNATProtocol.dialRequest) { stream in
            let current = mode.withLockedValue { $0 }
            try? await stream.channel.executeThenClose { inbound, outbound in
                var iterator = inbound.makeAsyncIterator()
                _ = try await iterator.next()
                if current == 0 {
                    var huge = ByteBuffer()
                    huge.writeVarint(1 << 20)
                    try await outbound.write(huge)
                } else {
                    // A DialRequest is the client's message, not the server's.
                    var request = PBAutoNATv2DialRequest()
                    request.nonce = 1
                    try await outbound.write(try AutoNATFraming.message(.dialRequest(request)))
                }
            }
        }
        let client = try AutoNATClient(host: clientHost)
        let connection = try await clientHost.dial(rogueAddress)
        let oversized = try #require(try await client.check(addresses: [clientAddress], via: connection).first)
        #expect(oversized.error?.code == .autonatMessageTooLarge, "\(oversized)")
        mode.withLockedValue { $0 = 1 }
        let unexpected = try #require(try await client.check(addresses: [clientAddress], via: connection).first)
        #expect(unexpected.error?.code == .autonatUnexpectedMessage, "\(unexpected)")
        await #expect(throws: DiscoveryError(.autonatNoAddresses, "")) { try await client.check(addresses: [], via: connection) }
    }

    @Test func aServerThatClosesTheStreamFailsTheCheckWithStreamClosed() async throws {
        let (rogueHost, rogueAddress) = try await Self.host()
        let (clientHost, clientAddress) = try await Self.host()
        defer { Task { await Self.closeAll(rogueHost, clientHost) } }
        rogueHost.setStreamHandler(for: AutoNATProtocol.dialRequest) { stream in
            try? await stream.channel.executeThenClose { inbound, _ in
                var iterator = inbound.makeAsyncIterator()
                _ = try await iterator.next()
            }
        }
        let client = try AutoNATClient(host: clientHost)
        let connection = try await clientHost.dial(rogueAddress)
        let result = try #require(try await client.check(addresses: [clientAddress], via: connection).first)
        #expect(result.status == .failed)
        #expect(result.error?.code == .autonatStreamClosed, "\(result)")
    }

    /// Opens a dial-request stream to the server, lets `script` misbehave on it, and returns the
    /// server's record of the request.
    static func misbehave(
        _ script: @escaping @Sendable (NIOAsyncChannelInboundStream<ByteBuffer>, NIOAsyncChannelOutboundWriter<ByteBuffer>) async throws -> Void
    ) async throws -> AutoNATServerRecord {
        let (serverHost, serverAddress, records) = try await server()
        let (clientHost, _) = try await host(on: "127.0.0.2")
        defer { Task { await closeAll(serverHost, clientHost) } }
        let connection = try await clientHost.dial(serverAddress)
        let stream = try await connection.openStream(protocol: AutoNATProtocol.dialRequest)
        try? await stream.channel.executeThenClose { inbound, outbound in try await script(inbound, outbound) }
        let record = try await firstRecord(records)
        #expect(record.dialed == nil, "the server dialed for a misbehaving client: \(record)")
        #expect(try await connection.ping().count == 1, "the server's connection survives")
        return record
    }

    static func request(for address: String) throws -> ByteBuffer {
        var request = PBAutoNATv2DialRequest()
        request.addrs = [Data(try Multiaddr(address).bytes)]
        request.nonce = 5
        return try AutoNATFraming.message(.dialRequest(request))
    }

    @Test func theServerSurvivesAnOversizedRequest() async throws {
        let record = try await Self.misbehave { inbound, outbound in
            var huge = ByteBuffer()
            huge.writeVarint(1 << 20)
            try await outbound.write(huge)
            for try await _ in inbound {}
        }
        #expect(record.error?.code == .autonatMessageTooLarge, "\(record)")
        #expect(record.responseStatus == nil)
    }

    @Test func theServerSurvivesGarbageAndAnUnexpectedFirstMessage() async throws {
        let garbage = try await Self.misbehave { inbound, outbound in
            var bytes = ByteBuffer()
            bytes.writeVarint(3)
            bytes.writeBytes([0xFF, 0xFF, 0xFF])
            try await outbound.write(bytes)
            for try await _ in inbound {}
        }
        #expect(garbage.error?.code == .autonatMalformedMessage, "\(garbage)")
        let unexpected = try await Self.misbehave { inbound, outbound in
            var response = PBAutoNATv2DialResponse()
            response.status = .ok
            try await outbound.write(try AutoNATFraming.message(.dialResponse(response)))
            for try await _ in inbound {}
        }
        #expect(unexpected.error?.code == .autonatUnexpectedMessage, "\(unexpected)")
    }

    @Test func theServerDoesNotDialForAnOversizedChunkOrDataThatStopsShort() async throws {
        let oversized = try await Self.misbehave { inbound, outbound in
            try await outbound.write(try Self.request(for: "/ip4/127.0.0.2/tcp/4001"))
            var iterator = inbound.makeAsyncIterator()
            _ = try await iterator.next()  // DialDataRequest
            var chunk = PBAutoNATv2DialDataResponse()
            chunk.data = Data(count: 5000)
            try await outbound.write(try AutoNATFraming.message(.dialDataResponse(chunk)))
            while try await iterator.next() != nil {}
        }
        #expect(oversized.error?.code == .autonatMessageTooLarge, "\(oversized)")
        #expect(oversized.dialDataBytes == 0)

        let short = try await Self.misbehave { inbound, outbound in
            try await outbound.write(try Self.request(for: "/ip4/127.0.0.2/tcp/4001"))
            var iterator = inbound.makeAsyncIterator()
            _ = try await iterator.next()  // DialDataRequest
            var chunk = PBAutoNATv2DialDataResponse()
            chunk.data = Data(count: 4096)
            try await outbound.write(try AutoNATFraming.message(.dialDataResponse(chunk)))
            // Then half-close: the server sees the end of the data, not enough of it.
        }
        #expect(short.error?.code == .autonatStreamClosed, "\(short)")
        #expect(short.dialDataBytes == 4096)
    }

    /// The server's record of its first request, once it is there (the client may finish first).
    static func firstRecord(_ records: NIOLockedValueBox<[AutoNATServerRecord]>) async throws -> AutoNATServerRecord {
        for _ in 0..<100 {
            if let record = records.withLockedValue({ $0.first }) { return record }
            try await Task.sleep(for: .milliseconds(50))
        }
        throw DiscoveryError(.autonatTimeout, "the server recorded no request within 5 s")
    }
}
