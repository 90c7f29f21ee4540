import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import PunchDiscovery
import PunchWire
import Testing

/// Punch's STUN client against Punch's STUN server, and against scripted sockets, on real
/// loopback sockets. 127.0.0.2 is a second loopback address on Linux, so RFC 5780 mode works.
@Suite struct STUNLoopbackTests {
    static let loopback = try! IPEndpoint("127.0.0.1:0")

    func withServer(alternate: String? = nil, listen: String = "127.0.0.1:0", _ body: (STUNServer) async throws -> Void) async throws {
        let server = try await STUNServer.start(STUNServerConfiguration(listen: try IPEndpoint(listen), alternateAddress: try alternate.map(IPAddress.init)))
        do {
            try await body(server)
        } catch {
            try await server.close()
            throw error
        }
        try await server.close()
    }

    func withClient(_ address: IPEndpoint = loopback, configuration: STUNClientConfiguration = STUNClientConfiguration(),
                    _ body: (STUNClient) async throws -> Void) async throws {
        let client = try await STUNClient.bind(to: address, configuration: configuration)
        do {
            try await body(client)
        } catch {
            try await client.close()
            throw error
        }
        try await client.close()
    }

    @Test func clientGetsItsAddressFromTheServer() async throws {
        try await withServer { server in
            let address = try #require(server.localAddresses.first)
            #expect(server.localAddresses.count == 1)
            try await withClient { client in
                let response = try await client.binding(to: address)
                #expect(response.mappedAddress == client.localAddress)
                #expect(response.source == address && response.server == address)
                #expect(response.message.software == "punch")
                #expect(response.message.hasFingerprint, "the client sends FINGERPRINT, so the server answers with one")
                let statistics = try await client.statistics()
                #expect(statistics.completed == 1)
                // On a loaded machine the request may be retransmitted; the server answers each copy.
                let answered = try await server.statistics().successResponses
                #expect(answered >= 1 && answered <= 1 + statistics.retransmissions)
            }
        }
    }

    /// STUN over TCP (RFC 8489 §6.2.2) from a port a listener also holds (SO_REUSEPORT), as a
    /// node asks from its listening port: the reflexive address is that port's.
    @Test func tcpBindingFromASharedListeningPort() async throws {
        try await withServer { server in
            let tcp = try #require(server.tcpAddress)
            #expect(tcp == server.localAddresses.first)
            let listener = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
                .serverChannelOption(ChannelOptions.Types.SocketOption(level: .socket, name: .init(rawValue: SO_REUSEPORT)), value: 1)
                .childChannelInitializer { channel in channel.close() }
                .bind(host: "127.0.0.1", port: 0).get()
            defer { listener.close(promise: nil) }
            let local = try #require(listener.localAddress.flatMap(IPEndpoint.init))
            let response = try await STUNTCPClient.binding(to: tcp, from: local)
            #expect(response.mappedAddress == local)
            #expect(response.message.software == "punch")
            // And from an ephemeral port.
            let again = try await STUNTCPClient.binding(to: tcp)
            #expect(again.mappedAddress?.address == local.address)
            #expect(try await server.statistics().successResponses == 2)
        }
    }

    @Test func tcpGarbageOrAnOversizedMessageClosesTheConnectionUnanswered() async throws {
        try await withServer { server in
            let tcp = try #require(server.tcpAddress)
            for payload in [Array("GET / HTTP/1.1\r\nHost: x\r\n\r\n".utf8), [0x00, 0x01, 0xFF, 0xFC] + [UInt8](repeating: 0, count: 16)] {
                let received = NIOLockedValueBox(0)
                let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                    .channelInitializer { channel in
                        channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(ByteCounter(received)) }
                    }
                    .connect(to: try tcp.socketAddress()).get()
                try await channel.writeAndFlush(ByteBuffer(bytes: payload))
                // The server closes the connection without a byte of answer.
                try await channel.closeFuture.get()
                #expect(received.withLockedValue { $0 } == 0)
            }
            #expect(try await server.statistics().droppedMalformed == 2)
            #expect(try await STUNTCPClient.binding(to: tcp).mappedAddress != nil)
        }
    }

    @Test func tcpToAPortWithoutAServerFailsWithATypedError() async throws {
        let server = try await STUNServer.start(STUNServerConfiguration(listen: try IPEndpoint("127.0.0.1:0")))
        let tcp = try #require(server.tcpAddress)
        try await server.close()
        await #expect(throws: DiscoveryError(.stunSendFailed, "")) { try await STUNTCPClient.binding(to: tcp) }
    }

    @Test func severalServersInParallel() async throws {
        try await withServer { first in
            try await withServer { second in
                try await withClient { client in
                    async let a = client.binding(to: first.localAddresses[0])
                    async let b = client.binding(to: second.localAddresses[0])
                    let (ra, rb) = try await (a, b)
                    #expect(ra.mappedAddress == client.localAddress && rb.mappedAddress == client.localAddress)
                    #expect(ra.source == first.localAddresses[0] && rb.source == second.localAddresses[0])
                }
            }
        }
    }

    @Test func hostNamesAreResolved() async throws {
        try await withServer { server in
            try await withClient { client in
                let response = try await client.binding(to: STUNServerAddress(host: "localhost", port: server.localAddresses[0].port))
                #expect(response.server == server.localAddresses[0])
            }
        }
    }

    @Test func ipv6() async throws {
        try await withServer(listen: "[::1]:0") { server in
            try await withClient(try IPEndpoint("[::1]:0")) { client in
                let response = try await client.binding(to: try STUNServerAddress("[::1]:\(server.localAddresses[0].port)"))
                #expect(response.mappedAddress == client.localAddress)
                #expect(response.mappedAddress?.address.isIPv4 == false)
            }
        }
    }

    @Test func rfc5780ModeListensOnFourSocketsAndHonoursChangeRequest() async throws {
        try await withServer(alternate: "127.0.0.2") { server in
            let addresses = server.localAddresses
            #expect(addresses.count == 4)
            let primary = addresses[0]
            let other = IPEndpoint(address: try IPAddress("127.0.0.2"), port: primary.port + 1)
            #expect(Set(addresses) == [primary, IPEndpoint(address: primary.address, port: primary.port + 1),
                                       IPEndpoint(address: other.address, port: primary.port), other])
            try await withClient { client in
                let plain = try await client.binding(to: primary)
                #expect(plain.otherAddress == other && plain.responseOrigin == primary)
                let changed = try await client.binding(
                    to: primary, attributes: [.changeRequest(changeIP: true, changePort: true)], expectingResponseFrom: other)
                #expect(changed.source == other && changed.responseOrigin == other)
                let portOnly = IPEndpoint(address: primary.address, port: other.port)
                let changedPort = try await client.binding(
                    to: primary, attributes: [.changeRequest(changeIP: false, changePort: true)], expectingResponseFrom: portOnly)
                #expect(changedPort.source == portOnly)
            }
        }
    }

    @Test func classifierSeesNoNATOnLoopback() async throws {
        try await withServer(alternate: "127.0.0.2") { server in
            try await withClient(configuration: .behaviourDiscovery) { client in
                let classifier = NATClassifier(client: client)
                async let first = classifier.classify(server: server.localAddresses[0])
                async let joined = classifier.classify(server: server.localAddresses[0])
                let (result, other) = await (first, joined)
                #expect(result == other)
                #expect(result.udp && result.natDetected == false)
                #expect(result.mapping == .endpointIndependent && result.filtering == .endpointIndependent)
                #expect(result.hairpin == true && result.portPreserved == true)
                #expect(result.mappedAddress == client.localAddress)
                // A second request joined the running classification instead of starting another.
                // (Each copy of a retransmitted request is answered: a loaded machine may add some.)
                let answered = try await server.statistics().successResponses
                let retransmissions = try await client.statistics().retransmissions
                #expect(answered >= result.successfulObservations && answered <= result.successfulObservations + retransmissions)
                #expect(await classifier.current == result)
            }
        }
    }

    @Test func errorResponseIsAnError() async throws {
        try await withServer { server in
            try await withClient { client in
                let error = await #expect(throws: DiscoveryError.self) {
                    try await client.binding(to: server.localAddresses[0], attributes: [.changeRequest(changeIP: true, changePort: false)])
                }
                #expect(error?.code == .stunErrorResponse)
                #expect(error?.message.contains("420") == true)
            }
        }
    }

    @Test func unansweredTransactionTimesOutAfterItsRetransmissions() async throws {
        try await ScriptedSocket.with { silent in
            let configuration = STUNClientConfiguration(retransmissionTimeout: .milliseconds(20), maximumRequests: 3, finalWaitMultiplier: 2)
            try await withClient(configuration: configuration) { client in
                await #expect(throws: DiscoveryError(.stunTimeout, "")) { try await client.binding(to: silent.address) }
                // The client sent its last request before it timed out, but on a busy machine the
                // socket's loop may read it a little later: wait for it, then make sure no 4th came.
                let clock = ContinuousClock()
                let deadline = clock.now + .seconds(2)
                while silent.received.count < 3, clock.now < deadline { try await Task.sleep(for: .milliseconds(10)) }
                try await Task.sleep(for: .milliseconds(100))
                #expect(silent.received.count == 3, "Rc = 3 requests in all")
                let statistics = try await client.statistics()
                #expect(statistics.timeouts == 1 && statistics.retransmissions == 2)
            }
        }
    }

    @Test func aDestinationOfTheOtherFamilyFailsAtOnceAndTheSocketStaysOpen() async throws {
        try await withServer { server in
            try await withClient { client in
                // An IPv4 socket cannot send to an IPv6 address: no need to wait for retransmissions,
                // and no write error that would make NIO close the (possibly shared) socket.
                let ipv6 = try IPEndpoint("[::1]:9")
                let error = await #expect(throws: DiscoveryError.self) { try await client.binding(to: ipv6) }
                #expect(error?.code == .stunAddressFamilyMismatch)
                let echoed = try await client.echoProbe(to: ipv6)
                #expect(!echoed)
                let response = try await client.binding(to: server.localAddresses[0])
                #expect(response.mappedAddress == client.localAddress)
            }
        }
    }

    @Test func outstandingTransactionsAreBoundedOnTheSocket() async throws {
        try await ScriptedSocket.with { silent in
            // The first transaction would stay outstanding for 30 s: far longer than any stall of a
            // loaded machine. Closing the client ends it.
            var configuration = STUNClientConfiguration(retransmissionTimeout: .seconds(10), maximumRequests: 2, finalWaitMultiplier: 2)
            configuration.maximumOutstandingTransactions = 1
            let client = try await STUNClient.bind(to: Self.loopback, configuration: configuration)
            let first = Task { _ = try? await client.binding(to: silent.address) }
            // Wait until the first has started rather than for a fixed time.
            for _ in 0..<2000 where try await client.statistics().started == 0 { try await Task.sleep(for: .milliseconds(5)) }
            await #expect(throws: DiscoveryError(.stunTooManyTransactions, "")) { try await client.binding(to: silent.address) }
            try await client.close()
            await first.value
        }
    }

    @Test func retransmissionRecoversALostRequestAndSpoofedOrCorruptAnswersAreDropped() async throws {
        try await ScriptedSocket.with { spoofer in
            try await ScriptedSocket.with { server in
                // The server ignores the first request; to the second the spoofer answers (right
                // transaction ID, wrong source) and the server sends a bad FINGERPRINT; to the
                // third the server answers properly.
                server.onRequest = { request, source, count in
                    let response = STUNMessage(type: .bindingSuccessResponse, transactionID: request.transactionID, attributes: [.xorMappedAddress(source)])
                    let bytes = try! response.encoded()
                    var corrupted = try! response.encoded(fingerprint: true)
                    corrupted[corrupted.count - 1] ^= 0xFF
                    switch count {
                    case 1: return []
                    case 2: return [(spoofer, bytes), (server, corrupted)]
                    default: return [(server, bytes)]
                    }
                }
                // Seven requests: room for a loaded machine that answers late.
                let configuration = STUNClientConfiguration(retransmissionTimeout: .milliseconds(50), maximumRequests: 7, finalWaitMultiplier: 4)
                try await withClient(configuration: configuration) { client in
                    let response = try await client.binding(to: server.address)
                    #expect(response.source == server.address)
                    let statistics = try await client.statistics()
                    #expect(statistics.retransmissions >= 2)
                    #expect(statistics.droppedWrongSource == 1)
                    #expect(statistics.droppedMalformed == 1)
                    #expect(server.received.count >= 3)
                    #expect(statistics.completed == 1)
                }
            }
        }
    }

    @Test func sharedSocketPassesNonSTUNDatagramsOn() async throws {
        try await withServer { server in
            let collector = Collector()
            let channel = try await DatagramBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(collector) }
                }
                .bind(host: "127.0.0.1", port: 0).get()
            let client = try await STUNClient.install(on: channel)
            try await ScriptedSocket.with { peer in
                let local = try #require(client.localAddress)
                peer.send(Array("hole punch".utf8), to: local)
                // A STUN request from a peer is not the client's either.
                peer.send(try STUNMessage(type: .bindingRequest).encoded(), to: local)
                let response = try await client.binding(to: server.localAddresses[0])
                #expect(response.mappedAddress == local)
                try await collector.waitForCount(2)
                #expect(collector.datagrams.first == Array("hole punch".utf8))
                let statistics = try await client.statistics()
                #expect(statistics.nonSTUN == 1 && statistics.passedOn == 1 && statistics.completed == 1)
            }
            try await client.close()
            #expect(channel.isActive, "closing a client installed on a shared channel leaves the channel open")
            try await channel.close()
        }
    }
}

/// Records what reaches the end of a shared socket's pipeline.
final class Collector: ChannelInboundHandler, Sendable {
    typealias InboundIn = AddressedEnvelope<ByteBuffer>
    private let box = NIOLockedValueBox<[[UInt8]]>([])

    var datagrams: [[UInt8]] { box.withLockedValue { $0 } }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let bytes = Array(unwrapInboundIn(data).data.readableBytesView)
        box.withLockedValue { $0.append(bytes) }
    }

    func waitForCount(_ count: Int) async throws {
        for _ in 0..<200 where datagrams.count < count { try await Task.sleep(for: .milliseconds(10)) }
        #expect(datagrams.count == count)
    }
}

/// A UDP socket that records what it receives and answers as a script says.
final class ScriptedSocket: Sendable {
    typealias Script = @Sendable (STUNMessage, IPEndpoint, Int) -> [(ScriptedSocket, [UInt8])]
    let channel: any Channel
    let address: IPEndpoint
    private let state = NIOLockedValueBox<(received: [[UInt8]], script: Script?)>(([], nil))

    var received: [[UInt8]] { state.withLockedValue { $0.received } }
    var onRequest: Script? {
        get { state.withLockedValue { $0.script } }
        set { state.withLockedValue { $0.script = newValue } }
    }

    private init(channel: any Channel) {
        self.channel = channel
        self.address = IPEndpoint(channel.localAddress!)!
    }

    /// Every scripted socket lives on this one loop: a script's replies from several sockets then
    /// leave in the order the script lists them (a send from another loop would be queued).
    static let loop = MultiThreadedEventLoopGroup.singleton.next()

    static func with(_ body: (ScriptedSocket) async throws -> Void) async throws {
        let handler = Handler()
        let channel = try await DatagramBootstrap(group: Self.loop)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(handler) }
            }
            .bind(host: "127.0.0.1", port: 0).get()
        let socket = ScriptedSocket(channel: channel)
        handler.socket.withLockedValue { $0 = socket }
        do {
            try await body(socket)
        } catch {
            try? await channel.close()
            throw error
        }
        try await channel.close()
    }

    func send(_ bytes: [UInt8], to destination: IPEndpoint) {
        channel.writeAndFlush(AddressedEnvelope(remoteAddress: try! destination.socketAddress(), data: ByteBuffer(bytes: bytes)), promise: nil)
    }

    final class Handler: ChannelInboundHandler, Sendable {
        typealias InboundIn = AddressedEnvelope<ByteBuffer>
        let socket = NIOLockedValueBox<ScriptedSocket?>(nil)

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            let envelope = unwrapInboundIn(data)
            let bytes = Array(envelope.data.readableBytesView)
            guard let socket = self.socket.withLockedValue({ $0 }), let source = IPEndpoint(envelope.remoteAddress) else { return }
            let (count, script) = socket.state.withLockedValue { state in
                state.received.append(bytes)
                return (state.received.count, state.script)
            }
            guard let script, let request = try? STUNMessage.decode(datagram: bytes) else { return }
            for (sender, reply) in script(request, source, count) { sender.send(reply, to: source) }
        }
    }
}

/// Counts the bytes a channel receives.
final class ByteCounter: ChannelInboundHandler, Sendable {
    typealias InboundIn = ByteBuffer
    let count: NIOLockedValueBox<Int>
    init(_ count: NIOLockedValueBox<Int>) { self.count = count }
    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let bytes = unwrapInboundIn(data).readableBytes
        count.withLockedValue { $0 += bytes }
    }
}
