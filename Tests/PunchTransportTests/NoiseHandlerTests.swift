import NIOCore
import NIOEmbedded
import NIOPosix
import PunchCrypto
import Testing

@testable import PunchTransport

/// Records the handshake event and passes everything on, so `readInbound` still sees the data.
final class NoiseEventRecorder: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    var completions: [NoiseHandshakeCompleted] = []

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let completed = event as? NoiseHandshakeCompleted {
            completions.append(completed)
        }
        context.fireUserInboundEventTriggered(event)
    }
}

/// Two embedded channels with a NoiseHandler each, wired back to back by ``shuttle()``.
struct NoisePair {
    let dialerKey = PrivateKey.generate()
    let listenerKey = PrivateKey.generate()
    let dialer = EmbeddedChannel()
    let listener = EmbeddedChannel()
    let dialerEvents = NoiseEventRecorder()
    let listenerEvents = NoiseEventRecorder()

    init(
        expectedListener: PeerID? = nil,
        dialerConfiguration: NoiseHandler.Configuration = .init(),
        listenerConfiguration: NoiseHandler.Configuration = .init()
    ) throws {
        try dialer.pipeline.syncOperations.addHandlers(
            NoiseHandler(
                role: .initiator, localKey: dialerKey, expectedRemotePeerID: expectedListener ?? listenerKey.peerID,
                configuration: dialerConfiguration),
            dialerEvents)
        try listener.pipeline.syncOperations.addHandlers(
            NoiseHandler(role: .responder, localKey: listenerKey, configuration: listenerConfiguration),
            listenerEvents)
        let address = try SocketAddress(ipAddress: "127.0.0.1", port: 4001)
        try listener.connect(to: address).wait()
        try dialer.connect(to: address).wait()
    }

    /// Moves what each channel wrote into the other until neither has anything left to say.
    func shuttle() throws {
        var moved = true
        while moved {
            moved = false
            while let bytes = try dialer.readOutbound(as: ByteBuffer.self) {
                moved = true
                try listener.writeInbound(bytes)
            }
            while let bytes = try listener.readOutbound(as: ByteBuffer.self) {
                moved = true
                try dialer.writeInbound(bytes)
            }
        }
    }

    /// Everything `channel` passed on as plaintext.
    static func received(by channel: EmbeddedChannel) throws -> [UInt8] {
        var bytes: [UInt8] = []
        while let buffer = try channel.readInbound(as: ByteBuffer.self) {
            bytes += buffer.readableBytesView
        }
        return bytes
    }

    func finish() {
        _ = try? dialer.finish(acceptAlreadyClosed: true)
        _ = try? listener.finish(acceptAlreadyClosed: true)
    }
}

@Suite struct NoiseHandlerTests {
    static func buffer(_ bytes: some Sequence<UInt8>) -> ByteBuffer { ByteBuffer(bytes: Array(bytes)) }

    static func pattern(count: Int) -> [UInt8] {
        (0..<count).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ $0 >> 9) }
    }

    @Test func handshakeCompletesWithBothPeerIDsAndCarriesDataBothWays() throws {
        let pair = try NoisePair()
        defer { pair.finish() }
        try pair.shuttle()

        #expect(pair.dialerEvents.completions == [
            NoiseHandshakeCompleted(
                remotePeerID: pair.listenerKey.peerID, remotePublicKey: pair.listenerKey.publicKey, negotiatedMuxer: nil)
        ])
        #expect(pair.listenerEvents.completions.map(\.remotePeerID) == [pair.dialerKey.peerID])

        try pair.dialer.writeAndFlush(Self.buffer("hello listener".utf8)).wait()
        try pair.listener.writeAndFlush(Self.buffer("hello dialer".utf8)).wait()
        try pair.shuttle()
        #expect(try NoisePair.received(by: pair.listener) == Array("hello listener".utf8))
        #expect(try NoisePair.received(by: pair.dialer) == Array("hello dialer".utf8))
    }

    @Test func handshakeMessagesHaveTheLibp2pFraming() throws {
        let pair = try NoisePair()
        defer { pair.finish() }
        // Message 1: 2-byte big-endian length 32, then the ephemeral key alone.
        let message1 = try #require(try pair.dialer.readOutbound(as: ByteBuffer.self))
        #expect(message1.readableBytes == 34)
        #expect(message1.getInteger(at: 0, as: UInt16.self) == 32)
    }

    @Test func writesBeforeCompletionArriveFirstAndInOrder() throws {
        let pair = try NoisePair()
        defer { pair.finish() }
        let early = pair.dialer.write(Self.buffer("one,".utf8))
        pair.dialer.writeAndFlush(Self.buffer("two,".utf8), promise: nil)
        pair.listener.writeAndFlush(Self.buffer("from the listener".utf8), promise: nil)
        try pair.shuttle()
        try pair.dialer.writeAndFlush(Self.buffer("three".utf8)).wait()
        try pair.shuttle()

        try early.wait()
        #expect(try NoisePair.received(by: pair.listener) == Array("one,two,three".utf8))
        #expect(try NoisePair.received(by: pair.dialer) == Array("from the listener".utf8))
    }

    @Test func oneMebibyteWriteIsSplitIntoMaximalFrames() throws {
        let pair = try NoisePair()
        defer { pair.finish() }
        try pair.shuttle()

        let payload = Self.pattern(count: 1 << 20)
        let written = pair.dialer.writeAndFlush(Self.buffer(payload))
        var frames: [ByteBuffer] = []
        while let frame = try pair.dialer.readOutbound(as: ByteBuffer.self) {
            frames.append(frame)
        }
        // 1 MiB = 16 full frames of 65519 plaintext bytes, then 272 bytes.
        #expect(frames.count == 17)
        #expect(frames.dropLast().allSatisfy { $0.readableBytes == 2 + 65535 && $0.getInteger(at: 0, as: UInt16.self) == 65535 })
        #expect(frames.last?.readableBytes == 2 + 272 + 16)
        try written.wait()

        for frame in frames {
            try pair.listener.writeInbound(frame)
        }
        #expect(try NoisePair.received(by: pair.listener) == payload)
    }

    @Test func framesSplitAcrossReadsAreReassembled() throws {
        let pair = try NoisePair()
        defer { pair.finish() }
        try pair.shuttle()
        let payload = Self.pattern(count: 200_000)
        try pair.dialer.writeAndFlush(Self.buffer(payload)).wait()
        var wire = ByteBuffer()
        while var frame = try pair.dialer.readOutbound(as: ByteBuffer.self) {
            wire.writeBuffer(&frame)
        }
        // Deliver in awkward pieces: 1 byte, then 7000-byte chunks.
        try pair.listener.writeInbound(wire.readSlice(length: 1)!)
        while wire.readableBytes > 0 {
            try pair.listener.writeInbound(wire.readSlice(length: min(7000, wire.readableBytes))!)
        }
        #expect(try NoisePair.received(by: pair.listener) == payload)
    }

    @Test func smallWritesAreCoalescedUntilFlush() throws {
        let pair = try NoisePair()
        defer { pair.finish() }
        try pair.shuttle()

        var promises: [EventLoopFuture<Void>] = []
        for index in 0..<100 {
            promises.append(pair.dialer.write(Self.buffer(repeatElement(UInt8(index), count: 10))))
        }
        #expect(try pair.dialer.readOutbound(as: ByteBuffer.self) == nil)
        pair.dialer.flush()
        let frame = try #require(try pair.dialer.readOutbound(as: ByteBuffer.self))
        #expect(frame.readableBytes == 2 + 1000 + 16)
        #expect(try pair.dialer.readOutbound(as: ByteBuffer.self) == nil)
        for promise in promises {
            try promise.wait()
        }
        try pair.listener.writeInbound(frame)
        #expect(try NoisePair.received(by: pair.listener) == (0..<100).flatMap { repeatElement(UInt8($0), count: 10) })
    }

    /// What yamux writes: a 12-byte header, then its 64 KiB payload, repeatedly. Each frame is
    /// sealed from the pending bytes and the head of the next write (no copy of the payload);
    /// frames stay maximal, bytes stay in order, and each write's promise completes.
    @Test func headerAndPayloadWritesFillMaximalFramesInOrder() throws {
        let pair = try NoisePair()
        defer { pair.finish() }
        try pair.shuttle()

        var sent: [UInt8] = []
        var promises: [EventLoopFuture<Void>] = []
        for index in 0..<40 {
            let header = Self.pattern(count: 12).map { $0 &+ UInt8(truncatingIfNeeded: index) }
            let payload = Self.pattern(count: index % 7 == 3 ? 700 : 65536).map { $0 ^ UInt8(truncatingIfNeeded: index) }
            promises.append(pair.dialer.write(Self.buffer(header)))
            promises.append(pair.dialer.write(Self.buffer(payload)))
            sent += header + payload
            if index % 10 == 9 { pair.dialer.flush() }
        }
        var frames: [ByteBuffer] = []
        while let frame = try pair.dialer.readOutbound(as: ByteBuffer.self) {
            frames.append(frame)
        }
        // Every frame but the last of each flush is full.
        let full = frames.filter { $0.readableBytes == 2 + 65535 }.count
        #expect(full >= sent.count / 65519 - 4)
        #expect(frames.allSatisfy { $0.readableBytes <= 2 + 65535 })
        for promise in promises {
            try promise.wait()
        }
        for frame in frames {
            try pair.listener.writeInbound(frame)
        }
        #expect(try NoisePair.received(by: pair.listener) == sent)
    }

    @Test func negotiatedMuxerIsReportedInTheEvent() throws {
        let pair = try NoisePair(
            dialerConfiguration: .init(muxers: ["/yamux/1.0.0"]),
            listenerConfiguration: .init(muxers: ["/mplex/6.7.0", "/yamux/1.0.0"]))
        defer { pair.finish() }
        try pair.shuttle()
        #expect(pair.dialerEvents.completions.first?.negotiatedMuxer == "/yamux/1.0.0")
        #expect(pair.listenerEvents.completions.first?.negotiatedMuxer == "/yamux/1.0.0")
    }

    @Test func garbageInsteadOfTheFirstMessageClosesTheListener() throws {
        let pair = try NoisePair()
        defer { pair.finish() }
        #expect(throws: TransportError(.noiseHandshakeFailed, "")) {
            try pair.listener.writeInbound(Self.buffer([0x00, 0x03, 0x47, 0x45, 0x54]))
        }
        #expect(!pair.listener.isActive)
    }

    @Test func garbageInsteadOfTheSecondMessageClosesTheDialer() throws {
        let pair = try NoisePair()
        defer { pair.finish() }
        _ = try pair.dialer.readOutbound(as: ByteBuffer.self)
        var garbage = ByteBuffer()
        garbage.writeInteger(UInt16(200))
        garbage.writeBytes(Self.pattern(count: 200))
        #expect(throws: TransportError(.noiseDecryptFailed, "")) { try pair.dialer.writeInbound(garbage) }
        #expect(!pair.dialer.isActive)
    }

    @Test func oversizedHandshakeLengthClosesBeforeTheBodyArrives() throws {
        let pair = try NoisePair()
        defer { pair.finish() }
        #expect(throws: TransportError(.noiseFrameTooLarge, "")) {
            try pair.listener.writeInbound(Self.buffer([0xFF, 0xFF]))
        }
        #expect(!pair.listener.isActive)
    }

    @Test func flippedBitAfterTheHandshakeClosesWithBadTag() throws {
        let pair = try NoisePair()
        defer { pair.finish() }
        try pair.shuttle()
        try pair.dialer.writeAndFlush(Self.buffer("secret".utf8)).wait()
        var frame = try #require(try pair.dialer.readOutbound(as: ByteBuffer.self))
        let last = frame.writerIndex - 1
        frame.setInteger(frame.getInteger(at: last, as: UInt8.self)! ^ 0x01, at: last)
        #expect(throws: TransportError(.noiseDecryptFailed, "")) { try pair.listener.writeInbound(frame) }
        #expect(!pair.listener.isActive)
        #expect(try NoisePair.received(by: pair.listener).isEmpty)
    }

    @Test func unexpectedPeerIDClosesTheDialer() throws {
        let pair = try NoisePair(expectedListener: PrivateKey.generate().peerID)
        defer { pair.finish() }
        #expect(throws: TransportError(.noisePeerIDMismatch, "")) { try pair.shuttle() }
        #expect(!pair.dialer.isActive)
        #expect(pair.dialerEvents.completions.isEmpty)
    }

    @Test func handshakeTimesOutOnTheVirtualClock() throws {
        let pair = try NoisePair()
        defer { pair.finish() }
        let heldBack = pair.listener.writeAndFlush(Self.buffer("never sent".utf8))
        pair.listener.embeddedEventLoop.advanceTime(by: .seconds(9))
        #expect(pair.listener.isActive)
        pair.listener.embeddedEventLoop.advanceTime(by: .seconds(1))
        #expect(throws: TransportError(.noiseHandshakeTimeout, "")) { try pair.listener.throwIfErrorCaught() }
        #expect(!pair.listener.isActive)
        #expect(throws: TransportError(.noiseHandshakeTimeout, "")) { try heldBack.wait() }
    }

    @Test func completedHandshakeDoesNotTimeOut() throws {
        let pair = try NoisePair()
        defer { pair.finish() }
        try pair.shuttle()
        pair.dialer.embeddedEventLoop.advanceTime(by: .seconds(60))
        pair.listener.embeddedEventLoop.advanceTime(by: .seconds(60))
        try pair.dialer.throwIfErrorCaught()
        try pair.listener.throwIfErrorCaught()
        #expect(pair.dialer.isActive && pair.listener.isActive)
    }

    @Test func writingMoreThanTheLimitBeforeCompletionFails() throws {
        let pair = try NoisePair(dialerConfiguration: .init(maximumBufferedPlaintextBeforeHandshake: 16))
        defer { pair.finish() }
        let first = pair.dialer.write(Self.buffer(repeatElement(1, count: 16)))
        let second = pair.dialer.write(Self.buffer([2]))
        #expect(throws: TransportError(.noiseBufferLimitExceeded, "")) { try second.wait() }
        #expect(throws: TransportError(.noiseBufferLimitExceeded, "")) { try first.wait() }
        #expect(throws: TransportError(.noiseBufferLimitExceeded, "")) { try pair.dialer.throwIfErrorCaught() }
        #expect(!pair.dialer.isActive)
    }
}

// MARK: - Loopback

/// Echoes every byte back.
private final class NoiseEchoHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        context.write(data, promise: nil)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        context.flush()
    }
}

/// Sends a payload once the handshake completes and collects the echo.
private final class EchoClient: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer
    struct Result: Sendable {
        var completed: NoiseHandshakeCompleted
        var echo: ByteBuffer
    }

    private let payload: ByteBuffer
    private let done: EventLoopPromise<Result>
    private var completed: NoiseHandshakeCompleted?
    private var echo = ByteBuffer()

    init(payload: ByteBuffer, done: EventLoopPromise<Result>) {
        self.payload = payload
        self.done = done
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        guard let event = event as? NoiseHandshakeCompleted else { return }
        completed = event
        echo.reserveCapacity(payload.readableBytes)
        context.writeAndFlush(wrapOutboundOut(payload), promise: nil)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var buffer = unwrapInboundIn(data)
        echo.writeBuffer(&buffer)
        if echo.readableBytes >= payload.readableBytes, let completed {
            done.succeed(Result(completed: completed, echo: echo))
            context.close(promise: nil)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        done.fail(error)
        context.close(promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        done.fail(ChannelError.eof)
    }
}

@Suite struct NoiseLoopbackTests {
    @Test func fourMebibytesEchoThroughRealSockets() async throws {
        let group = MultiThreadedEventLoopGroup.singleton
        let serverKey = PrivateKey.generate()
        let clientKey = PrivateKey.generate()
        let server = try await ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.recvAllocator, value: NoiseHandler.recommendedReceiveAllocator)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandlers(
                        NoiseHandler(role: .responder, localKey: serverKey), NoiseEchoHandler())
                }
            }
            .bind(host: "127.0.0.1", port: 0)
            .get()

        let payload = ByteBuffer(bytes: NoiseHandlerTests.pattern(count: 4 << 20))
        let done = group.next().makePromise(of: EchoClient.Result.self)
        // A guard against a hang, not a timing assertion: fail instead of waiting forever.
        let guardTask = group.next().scheduleTask(in: .seconds(120)) {
            done.fail(TransportError(.init("test.timeout"), "no echo within 120 s"))
        }
        let client = try await ClientBootstrap(group: group)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandlers(
                        NoiseHandler(role: .initiator, localKey: clientKey, expectedRemotePeerID: serverKey.peerID),
                        EchoClient(payload: payload, done: done))
                }
            }
            .connect(to: server.localAddress!)
            .get()

        let result = try await done.futureResult.get()
        guardTask.cancel()
        try? await client.close()
        try await server.close()

        #expect(result.completed.remotePeerID == serverKey.peerID)
        #expect(result.echo == payload)
    }
}
