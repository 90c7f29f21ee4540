import Dispatch
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import PunchCrypto
import PunchWire
import Testing

@testable import PunchTransport

/// Flips the last byte of the `index`-th buffer written through it (1-based).
private final class WriteCorrupter: ChannelOutboundHandler, RemovableChannelHandler {
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer
    private let index: Int
    private var writes = 0

    init(corruptingWrite index: Int) { self.index = index }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        var buffer = unwrapOutboundIn(data)
        writes += 1
        if writes == index, buffer.readableBytes > 0 {
            let last = buffer.writerIndex - 1
            buffer.setInteger(buffer.getInteger(at: last, as: UInt8.self)! ^ 0x01, at: last)
        }
        context.write(wrapOutboundOut(buffer), promise: promise)
    }
}

/// Collects what a stream delivers and completes `done` once `expected` bytes have arrived.
private final class ByteCollector: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    private var received = ByteBuffer()
    private let expected: Int
    private let done: EventLoopPromise<ByteBuffer>

    init(expected: Int, done: EventLoopPromise<ByteBuffer>) {
        self.expected = expected
        self.done = done
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var bytes = unwrapInboundIn(data)
        received.writeBuffer(&bytes)
        if received.readableBytes >= expected { done.succeed(received) }
    }

    func channelInactive(context: ChannelHandlerContext) {
        done.fail(ChannelError.eof)
        context.fireChannelInactive()
    }
}

/// Two (or three) ``PunchHost``s over real TCP on 127.0.0.1.
@Suite struct HostTests {
    // MARK: Dial, ping, identify, echo

    @Test func dialProvesBothPeerIDsAndServesPingIdentifyAndEcho() async throws {
        let listener = TestHost()
        let dialer = TestHost()
        Echo.register(on: listener.host)
        try await withHosts(listener, dialer) {
            let address = try await listener.listen()
            #expect(address.peerID == listener.peerID.multihash)

            let connection = try await dialer.host.dial(address)
            #expect(connection.remotePeerID == listener.peerID)
            #expect(connection.direction == .outbound)
            #expect(dialer.host.connections(to: listener.peerID) == [connection])

            let inbound = try #require(try await listener.event("the inbound connection") { $0.connected != nil }.connected)
            #expect(inbound.remotePeerID == dialer.peerID)
            #expect(inbound.direction == .inbound)
            #expect(inbound.remoteAddress == connection.localAddress)

            #expect(try await connection.ping(count: 3).count == 3)

            let info = try await connection.identify()
            #expect(info.agentVersion == "punch/0.1.0")
            #expect(info.protocolVersion == "ipfs/0.1.0")
            #expect(info.publicKey == listener.host.configuration.identity.publicKey)
            #expect(Set(info.protocols) == [Ping.protocolID, Identify.protocolID, Echo.protocolID])
            #expect(info.listenAddresses == [address.withoutPeerID()])
            #expect(info.observedAddress != nil)
            #expect(info.observedAddress == connection.localAddress)

            #expect(try await connection.echo(bytes: 1 << 20).bytes == 1 << 20)
            #expect(try await connection.echo(bytes: 0).bytes == 0)
        }
    }

    /// The listener writes its multistream header the moment it accepts. A dialer that reads
    /// before its negotiation handler is installed drops that header and then fails with
    /// `.multistreamBadHeader` ("the peer sent '/noise'"); how often depends on timing, so dial
    /// many times.
    @Test func everyDialReceivesTheListenersFirstBytes() async throws {
        let listener = TestHost { $0.identifyOnConnect = false }
        let dialer = TestHost { $0.identifyOnConnect = false }
        try await withHosts(listener, dialer) {
            let address = try await listener.listen()
            for _ in 0..<50 {
                let connection = try await dialer.host.dial(address)
                await connection.close()
            }
        }
    }

    @Test func identifyOnConnectReportsThePeerOnBothSides() async throws {
        let listener = TestHost()
        let dialer = TestHost()
        try await withHosts(listener, dialer) {
            let address = try await listener.listen()
            let connection = try await dialer.host.dial(address)
            let identified = try await dialer.event("identified") {
                if case .identified(let identifiedConnection, _) = $0 { return identifiedConnection === connection }
                return false
            }
            guard case .identified(_, let info) = identified else { return }
            #expect(info.publicKey == listener.host.configuration.identity.publicKey)
            let fromListener = try await listener.event("identified on the listener") {
                if case .identified = $0 { return true }
                return false
            }
            guard case .identified(_, let dialerInfo) = fromListener else { return }
            #expect(dialerInfo.publicKey == dialer.host.configuration.identity.publicKey)
        }
    }

    @Test func dialToTheWrongPeerIDFailsOnBothSides() async throws {
        let listener = TestHost()
        let dialer = TestHost()
        try await withHosts(listener, dialer) {
            let address = try await listener.listen()
            let stale = address.withoutPeerID().appendingPeerID(PrivateKey.generate().peerID.multihash)
            await #expect(throws: TransportError(.noisePeerIDMismatch, "")) { try await dialer.host.dial(stale) }
            #expect(try await dialer.failure(.outbound).code == .noisePeerIDMismatch)
            // The listener only sees the dialer give up mid-handshake.
            _ = try await listener.failure(.inbound)
            #expect(listener.host.connections.isEmpty)
            #expect(dialer.host.connections.isEmpty)
        }
    }

    @Test func unregisteredProtocolIsRefusedAndTheConnectionKeepsWorking() async throws {
        let listener = TestHost()
        let dialer = TestHost()
        try await withHosts(listener, dialer) {
            let connection = try await dialer.host.dial(try await listener.listen())
            await #expect(throws: TransportError(.multistreamNoProtocol, "")) {
                try await connection.openStream(protocol: "/not/served/1.0.0")
            }
            await #expect(throws: TransportError(.multistreamNoProtocol, "")) {
                try await connection.echo(bytes: 16)
            }
            #expect(connection.isActive)
            #expect(try await connection.ping().count == 1)
        }
    }

    @Test func removedStreamHandlerIsNoLongerServed() async throws {
        let listener = TestHost()
        let dialer = TestHost()
        Echo.register(on: listener.host)
        try await withHosts(listener, dialer) {
            let connection = try await dialer.host.dial(try await listener.listen())
            #expect(try await connection.echo(bytes: 10).bytes == 10)
            listener.host.removeStreamHandler(for: Echo.protocolID)
            #expect(!listener.host.protocols.contains(Echo.protocolID))
            await #expect(throws: TransportError(.multistreamNoProtocol, "")) { try await connection.echo(bytes: 10) }
        }
    }

    // MARK: Ports

    @Test func dialsLeaveFromTheListenPortAndFallBackWhenItIsTaken() async throws {
        let listener = TestHost()
        let dialer = TestHost()
        try await withHosts(listener, dialer) {
            let address = try await listener.listen()
            let dialerPort = try #require(try await dialer.listen().transportEndpoint?.port)

            let first = try await dialer.host.dial(address)
            #expect(first.localAddress?.transportEndpoint?.port == dialerPort)

            // The same 4-tuple is in use now: the second dial leaves from an ephemeral port.
            let second = try await dialer.host.dial(address)
            #expect(second !== first)
            #expect(second.localAddress?.transportEndpoint?.port != dialerPort)
            #expect(try await second.ping().count == 1)
            #expect(try await first.ping().count == 1)
            #expect(dialer.host.connections(to: listener.peerID).count == 2)
        }
    }

    /// A hole punch through a full-cone NAT under loss: the peer's SYN reaches our listener and
    /// the connection is accepted and upgraded before we dial. Our own connect() then finds the
    /// 4-tuple taken (EADDRNOTAVAIL); the punch's dial must return the accepted connection.
    @Test func aPunchDialAfterThePeersPunchArrivedReturnsThatConnection() async throws {
        let first = TestHost()
        let second = TestHost()
        try await withHosts(first, second) {
            let firstAddress = try await first.listen()
            let secondAddress = try await second.listen()
            first.host.expectHolePunch(from: [secondAddress], peer: second.peerID, noiseInitiator: false, for: .seconds(10))

            let fromSecond = try await second.host.dial(firstAddress, noiseInitiator: true, timeout: .seconds(5))
            #expect(fromSecond.isSecurityInitiator)
            let accepted = try await first.event("the punched connection on the first host") {
                $0.connected?.remotePeerID == second.peerID
            }.connected!

            let fromFirst = try await first.host.dial(secondAddress, noiseInitiator: false, timeout: .seconds(5))
            #expect(fromFirst === accepted)
            #expect(!fromFirst.isSecurityInitiator)
            #expect(try await fromFirst.ping().count == 1)
            #expect(first.host.connections(to: second.peerID).count == 1)
        }
    }

    @Test func dialsUseAnEphemeralPortWhenBindingIsOff() async throws {
        let listener = TestHost()
        let dialer = TestHost { $0.bindDialsToListenPort = false }
        try await withHosts(listener, dialer) {
            let address = try await listener.listen()
            let dialerPort = try #require(try await dialer.listen().transportEndpoint?.port)
            let connection = try await dialer.host.dial(address)
            #expect(connection.localAddress?.transportEndpoint?.port != dialerPort)
        }
    }

    /// `dial(_:fromListenPort: false)` leaves from an ephemeral port although the host binds
    /// its other dials to the listening port; `fromListenPort: true` leaves from it.
    @Test func perDialOptionChoosesTheSourcePort() async throws {
        let listener = TestHost()
        let dialer = TestHost()
        try await withHosts(listener, dialer) {
            let address = try await listener.listen()
            let dialerPort = try #require(try await dialer.listen().transportEndpoint?.port)
            #expect(dialer.host.configuration.bindDialsToListenPort)
            let ephemeral = try await dialer.host.dial(address, fromListenPort: false)
            #expect(ephemeral.localAddress?.transportEndpoint?.port != dialerPort)
            #expect(try await ephemeral.ping().count == 1)
            await ephemeral.close()
            let bound = try await dialer.host.dial(address, fromListenPort: true)
            #expect(bound.localAddress?.transportEndpoint?.port == dialerPort)
        }
    }

    // MARK: Bad input against a real listener

    /// Connects a raw client that sends `bytes`, expects the listener to hang up with a
    /// `.connectionFailed` of `code`, and a concurrent well-behaved dial to work.
    private func listenerSurvives(_ bytes: ByteBuffer, failingWith code: TransportError.Code) async throws {
        let listener = TestHost()
        let dialer = TestHost()
        try await withHosts(listener, dialer) {
            let address = try await listener.listen()
            let port = Int(try #require(address.transportEndpoint?.port))
            let raw = try await rawClient(port: port)
            async let good = dialer.host.dial(address)
            try await raw.writeAndFlush(bytes).get()
            try await raw.closeFuture.get()  // the listener hung up
            #expect(try await listener.failure(.inbound).code == code)

            let connection = try await good
            #expect(try await connection.ping().count == 1)
            let late = try await TestHost.dialAndPing(from: dialer, to: address)
            #expect(late == 1)
            #expect(listener.host.connections.count == 2)
        }
    }

    @Test func httpRequestInsteadOfMultistreamIsRefused() async throws {
        try await listenerSurvives(
            ByteBuffer(string: "GET / HTTP/1.1\r\nHost: punch.example\r\n\r\n"), failingWith: .multistreamBadHeader)
    }

    @Test func oversizedNegotiationLineIsRefused() async throws {
        var bytes = ByteBuffer()
        MultistreamSelectStateMachine.writeMessage(MultistreamSelectStateMachine.header, into: &bytes)
        bytes.writeVarint(100_000)
        bytes.writeString("/noise")
        try await listenerSurvives(bytes, failingWith: .multistreamMalformed)
    }

    @Test func corruptedNoiseMessageIsRefused() async throws {
        let listener = TestHost()
        let dialer = TestHost()
        try await withHosts(listener, dialer) {
            let address = try await listener.listen()
            let port = Int(try #require(address.transportEndpoint?.port))
            let listenerPeer = listener.peerID
            // A real Noise initiator, behind a corrupter that flips the last byte of its second
            // write: message 3 (encrypted static key and identity payload) fails authentication.
            let raw = try await rawClient(port: port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    let negotiation = MultistreamSelectHandler<Void>(role: .dialer(["/noise"]), eventLoop: channel.eventLoop) {
                        _, channel in
                        channel.eventLoop.makeCompletedFuture {
                            try channel.pipeline.syncOperations.addHandlers(
                                WriteCorrupter(corruptingWrite: 2),
                                NoiseHandler(role: .initiator, localKey: .generate(), expectedRemotePeerID: listenerPeer))
                        }
                    }
                    try channel.pipeline.syncOperations.addHandler(negotiation)
                }
            }
            async let good = dialer.host.dial(address)
            try await raw.closeFuture.get()  // the listener hung up
            #expect(try await listener.failure(.inbound).code == .noiseDecryptFailed)
            #expect(try await good.ping().count == 1)
        }
    }

    // MARK: Limits

    @Test func inboundConnectionOverTheLimitIsRefused() async throws {
        let listener = TestHost { $0.maximumConnections = 1 }
        let first = TestHost()
        let second = TestHost()
        try await withHosts(listener, first, second) {
            let address = try await listener.listen()
            let connection = try await first.host.dial(address)
            _ = try await listener.event("the first connection") { $0.connected != nil }

            await #expect(throws: TransportError.self) { try await second.host.dial(address) }
            #expect(try await listener.failure(.inbound).code == .hostConnectionLimit)
            #expect(listener.host.connections.count == 1)
            #expect(try await connection.ping(count: 2).count == 2)
        }
    }

    @Test func dialOverTheLimitFailsWithoutConnecting() async throws {
        let listener = TestHost()
        let dialer = TestHost { $0.maximumConnections = 1 }
        try await withHosts(listener, dialer) {
            let address = try await listener.listen()
            let connection = try await dialer.host.dial(address)
            await #expect(throws: TransportError(.hostConnectionLimit, "")) { try await dialer.host.dial(address) }
            #expect(try await connection.ping().count == 1)
        }
    }

    // MARK: Streams

    @Test func streamHandlerSeesProtocolAndPeerAndHalfCloseWorksBothWays() async throws {
        let listener = TestHost()
        let dialer = TestHost()
        let protocolID = "/punch/test/upload/1.0.0"
        let (served, servedContinuation) = AsyncStream.makeStream(of: (String, PeerID, ConnectionDirection, Int).self)
        listener.host.setStreamHandler(for: protocolID) { stream in
            try await stream.channel.executeThenClose { inbound, outbound in
                var count = 0
                // Ends only at the client's FIN.
                for try await chunk in inbound { count += chunk.readableBytes }
                servedContinuation.yield((stream.protocolID, stream.connection.remotePeerID, stream.connection.direction, count))
                // The stream is half-closed from the other side; this side can still write.
                try await outbound.write(ByteBuffer(string: "received \(count) bytes"))
                outbound.finish()
            }
        }
        try await withHosts(listener, dialer) {
            let connection = try await dialer.host.dial(try await listener.listen())
            let stream = try await connection.openStream(protocols: ["/punch/test/other/1.0.0", protocolID])
            #expect(stream.protocolID == protocolID)
            #expect(stream.connection === connection)
            let reply = try await stream.channel.executeThenClose { inbound, outbound in
                try await outbound.write(ByteBuffer(string: "hello, "))
                try await outbound.write(ByteBuffer(string: "listener"))
                outbound.finish()
                var reply = ByteBuffer()
                for try await var chunk in inbound { reply.writeBuffer(&chunk) }
                return String(buffer: reply)
            }
            #expect(reply == "received 15 bytes")

            var iterator = served.makeAsyncIterator()
            let (servedProtocol, servedPeer, servedDirection, servedCount) = try #require(await iterator.next())
            #expect(servedProtocol == protocolID)
            #expect(servedPeer == dialer.peerID)
            #expect(servedDirection == .inbound)
            #expect(servedCount == 15)
        }
    }

    @Test func anAsyncWriterRunningAheadOfTheEventLoopLosesNothing() async throws {
        // NIOAsyncChannel's writer hands writes to the event loop without waiting. Here the loop is
        // held until the writer has handed over twice YamuxConfiguration.streamWriteBufferLimit, so
        // the stream receives all of it at once, far beyond its writability: it must keep every
        // byte (an earlier version reset the stream with yamux.writeBufferFull).
        // The test blocks an event loop: its own, so no other test waits on it.
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        defer { group.shutdownGracefully { _ in } }
        let listener = TestHost(group: group)
        let dialer = TestHost(group: group)
        let protocolID = "/punch/test/count/1.0.0"
        listener.host.setStreamHandler(for: protocolID) { stream in
            try await stream.channel.executeThenClose { inbound, outbound in
                var count = 0
                for try await chunk in inbound { count += chunk.readableBytes }
                try await outbound.write(ByteBuffer(string: "received \(count) bytes"))
                outbound.finish()
            }
        }
        try await withHosts(listener, dialer) {
            let connection = try await dialer.host.dial(try await listener.listen())
            let stream = try await connection.openStream(protocol: protocolID)
            let total = 2 * YamuxConfiguration().streamWriteBufferLimit
            let handedOver = DispatchSemaphore(value: 0)
            // Bounded, so a stalled writer fails the test instead of hanging the loop.
            stream.channel.channel.eventLoop.execute { _ = handedOver.wait(timeout: .now() + 10) }
            let reply = try await stream.channel.executeThenClose { inbound, outbound in
                let chunk = ByteBuffer(repeating: 0x5A, count: 64 * 1024)
                for _ in 0..<(total / chunk.readableBytes) { try await outbound.write(chunk) }
                handedOver.signal()
                outbound.finish()
                var reply = ByteBuffer()
                for try await var part in inbound { reply.writeBuffer(&part) }
                return String(buffer: reply)
            }
            #expect(reply == "received \(total) bytes")
        }
    }

    @Test func openChannelRunsTheCallersPipeline() async throws {
        let listener = TestHost()
        let dialer = TestHost()
        Echo.register(on: listener.host)
        try await withHosts(listener, dialer) {
            let connection = try await dialer.host.dial(try await listener.listen())
            let message = "through a plain NIO pipeline"
            let (channel, echoed) = try await connection.openChannel(protocol: Echo.protocolID) { channel in
                channel.eventLoop.makeCompletedFuture {
                    let done = channel.eventLoop.makePromise(of: ByteBuffer.self)
                    try channel.pipeline.syncOperations.addHandler(ByteCollector(expected: message.utf8.count, done: done))
                    return (channel, done.futureResult)
                }
            }
            try await channel.pipeline.containsHandler(type: ByteCollector.self).get()
            try await channel.writeAndFlush(ByteBuffer(string: message)).get()
            #expect(try await echoed.get() == ByteBuffer(string: message))
            try await channel.close().get()
        }
    }

    // MARK: Shutdown

    @Test func closingTheListenerHostClosesTheDialersConnection() async throws {
        let listener = TestHost()
        let dialer = TestHost()
        try await withHosts(listener, dialer) {
            let address = try await listener.listen()
            let connection = try await dialer.host.dial(address)
            _ = try await listener.event("the inbound connection") { $0.connected != nil }

            await listener.host.close()
            try await connection.closeFuture.get()
            #expect(!connection.isActive)
            _ = try await dialer.event("the dialer's disconnected event") { $0.disconnected === connection }
            #expect(dialer.host.connections.isEmpty)
            #expect(listener.host.connections.isEmpty)

            await #expect(throws: TransportError(.hostDialFailed, "")) { try await dialer.host.dial(address) }
            await #expect(throws: TransportError(.hostClosed, "")) { try await listener.listen() }
        }
    }
}

extension TestHost {
    /// Dials `address` and pings once; returns the number of pings answered.
    static func dialAndPing(from dialer: TestHost, to address: Multiaddr) async throws -> Int {
        try await dialer.host.dial(address).ping().count
    }
}
