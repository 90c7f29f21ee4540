import NIOCore
import NIOEmbedded
import Testing

@testable import PunchTransport

@Suite struct YamuxMultiplexerTests {
    let window = Int(YamuxConfiguration.initialStreamWindow)

    /// Bytes whose value depends on their position, so reordering or loss shows.
    private func pattern(_ count: Int, seed: Int = 0) -> ByteBuffer {
        // A period of 251 bytes (prime) never lines up with frame or window sizes.
        let period = (0..<251).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ seed) }
        var buffer = ByteBuffer()
        buffer.reserveCapacity(count)
        while buffer.readableBytes < count {
            buffer.writeBytes(period.prefix(count - buffer.readableBytes))
        }
        return buffer
    }

    private func dataBytes(_ frames: [YamuxFrame], stream: UInt32) -> Int {
        frames.filter { $0.type == .data && $0.streamID == stream }.reduce(0) { $0 + $1.payload.readableBytes }
    }

    // MARK: Opening and data

    @Test func streamsOpenBothWaysAndCarryData() throws {
        let pair = try YamuxPair()
        let clientStream = try pair.openClientStream()
        #expect(try clientStream.syncOptions!.getOption(YamuxChannelOptions.streamID) == 1)
        #expect(clientStream.isActive)
        try clientStream.writeAndFlush(ByteBuffer(string: "hello server")).wait()
        try pair.shuttle()

        let accepted = try #require(pair.serverStreams.value.first)
        #expect(try accepted.syncOptions!.getOption(YamuxChannelOptions.streamID) == 1)
        #expect(accepted.recorder.received == ByteBuffer(string: "hello server"))

        let serverFuture = pair.serverMultiplexer.createStream { channel in
            channel.eventLoop.makeCompletedFuture { try Streams.recording()(channel) }
        }
        pair.loop.run()
        let serverStream = try serverFuture.wait()
        #expect(try serverStream.syncOptions!.getOption(YamuxChannelOptions.streamID) == 2)
        serverStream.writeAndFlush(ByteBuffer(string: "hello client"), promise: nil)
        accepted.writeAndFlush(ByteBuffer(string: "reply"), promise: nil)
        try pair.shuttle()

        let clientAccepted = try #require(pair.clientStreams.value.first)
        #expect(clientAccepted.recorder.received == ByteBuffer(string: "hello client"))
        #expect(clientStream.recorder.received == ByteBuffer(string: "reply"))
    }

    @Test func wireShowsWindowUpdateSYNAndAnACKOnTheFirstReply() throws {
        let pair = try YamuxPair(serverSetup: Streams.echo)
        let stream = try pair.openClientStream()
        stream.writeAndFlush(ByteBuffer(string: "ping"), promise: nil)
        try pair.shuttle()
        #expect(
            pair.framesToServer.prefix(2) == [
                .windowUpdate(streamID: 1, flags: .syn, delta: 0),
                .data(streamID: 1, payload: ByteBuffer(string: "ping")),
            ]
        )
        #expect(pair.framesToClient.first == .data(streamID: 1, flags: .ack, payload: ByteBuffer(string: "ping")))
        #expect(stream.recorder.received == ByteBuffer(string: "ping"))
    }

    @Test func echoKeepsOrderAcrossManyWrites() throws {
        let pair = try YamuxPair(serverSetup: Streams.echo)
        let stream = try pair.openClientStream()
        var expected = ByteBuffer()
        for index in 0..<200 {
            let chunk = self.pattern(997, seed: index)
            expected.writeImmutableBuffer(chunk)
            stream.write(chunk, promise: nil)
            if index % 7 == 0 {
                stream.flush()
                try pair.shuttle()
            }
        }
        stream.flush()
        try pair.shuttle()
        #expect(stream.recorder.received == expected)
    }

    @Test func writePromiseCompletesWhenTheFrameIsWritten() throws {
        let pair = try YamuxPair()
        let stream = try pair.openClientStream()
        let written = stream.writeAndFlush(ByteBuffer(string: "x"))
        var done = false
        written.assumeIsolated().whenSuccess { done = true }
        #expect(done)
    }

    @Test func dataArrivingWhileTheInitializerRunsWaitsForIt() throws {
        // The server's initializer finishes one second after the stream arrives.
        let loop = EmbeddedEventLoop()
        let accepted = NIOLoopBoundBox<[Channel]>([], eventLoop: loop)
        let server = EmbeddedChannel(loop: loop)
        let client = EmbeddedChannel(loop: loop)
        let serverMultiplexer = YamuxMultiplexer(role: .server) { channel in
            channel.eventLoop.scheduleTask(in: .seconds(1)) {
                try Streams.recording()(channel)
                accepted.value.append(channel)
            }.futureResult
        }
        let clientMultiplexer = YamuxMultiplexer(role: .client) { $0.eventLoop.makeSucceededVoidFuture() }
        try server.pipeline.syncOperations.addHandler(serverMultiplexer)
        try client.pipeline.syncOperations.addHandler(clientMultiplexer)
        try server.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        try client.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 2)).wait()

        let streamFuture = clientMultiplexer.createStream { channel in
            // Writes made before activation go out after the SYN.
            channel.writeAndFlush(ByteBuffer(string: "first "), promise: nil)
            return channel.eventLoop.makeSucceededVoidFuture()
        }
        let stream = try streamFuture.wait()
        stream.write(ByteBuffer(string: "second "), promise: nil)
        stream.writeAndFlush(ByteBuffer(string: "third"), promise: nil)
        stream.close(mode: .output, promise: nil)
        let toServer = try YamuxPair.drainFrames(client, forwardingTo: server)
        #expect(toServer.first == .windowUpdate(streamID: 1, flags: .syn))
        #expect(accepted.value.isEmpty)
        loop.advanceTime(by: .seconds(1))
        let channel = try #require(accepted.value.first)
        #expect(channel.recorder.received == ByteBuffer(string: "first second third"))
        #expect(channel.recorder.inputClosed)
    }

    @Test func openingFailsWithTypedErrorsAtTheLimits() throws {
        var configuration = YamuxConfiguration()
        configuration.maximumStreams = 2
        configuration.maximumUnacknowledgedOutboundStreams = 1
        let pair = try YamuxPair(configuration: configuration, serverSetup: Streams.echo)
        let first = try pair.openClientStream()
        #expect(throws: TransportError(.yamuxStreamBacklogFull, "")) { try pair.openClientStream() }
        first.writeAndFlush(ByteBuffer(string: "ack me"), promise: nil)
        try pair.shuttle()  // the echo carries the ACK
        _ = try pair.openClientStream()
        #expect(throws: TransportError(.yamuxTooManyStreams, "")) { try pair.openClientStream() }
    }

    @Test func closingBeforeActivationSendsNothing() throws {
        let pair = try YamuxPair()
        let future = pair.clientMultiplexer.createStream { channel in
            channel.close(promise: nil)
            return channel.eventLoop.makeSucceededVoidFuture()
        }
        #expect(throws: ChannelError.ioOnClosedChannel) { try future.wait() }
        try pair.shuttle()
        #expect(pair.framesToServer.isEmpty)
        // The id is spent; the next stream takes the next one.
        let next = try pair.openClientStream()
        #expect(try next.syncOptions!.getOption(YamuxChannelOptions.streamID) == 3)
    }

    // MARK: Flow control

    @Test func oneMebibyteCrossesA256KiBWindowByWaiting() throws {
        let pair = try YamuxPair()
        let stream = try pair.openClientStream()
        let payload = self.pattern(1024 * 1024)
        let written = stream.writeAndFlush(payload)

        // Before any window update only one window's worth is on the wire; the rest waits.
        let firstBurst = try YamuxPair.drainFrames(pair.client, forwardingTo: pair.server)
        #expect(self.dataBytes(firstBurst, stream: 1) == self.window)
        #expect(!stream.isWritable)

        try pair.shuttle()
        let accepted = try #require(pair.serverStreams.value.first)
        #expect(accepted.recorder.received == payload)
        #expect(self.dataBytes(firstBurst + pair.framesToServer, stream: 1) == 1024 * 1024)
        #expect(pair.framesToClient.contains { $0.type == .windowUpdate && $0.length >= UInt32(self.window / 2) })
        #expect(stream.isWritable)
        try written.wait()
    }

    @Test func aStreamWhoseReaderKeepsUpGrowsItsWindowAndLosesNothing() throws {
        let pair = try YamuxPair()
        // The server measures a 10 ms round trip; the transfer below then runs with the clock
        // standing still, so every grant comes well within four round trips.
        let rtt = pair.serverMultiplexer.ping()
        pair.loop.run()
        let request = try #require(try pair.server.readOutbound(as: ByteBuffer.self))
        pair.loop.advanceTime(by: .milliseconds(10))
        try pair.client.writeInbound(request)
        try pair.shuttle()
        #expect(try rtt.wait() == .milliseconds(10))

        let stream = try pair.openClientStream()
        let payload = self.pattern(8 * 1024 * 1024)
        let written = stream.writeAndFlush(payload)
        try pair.shuttle()
        try written.wait()
        let accepted = try #require(pair.serverStreams.value.first)
        #expect(accepted.recorder.received == payload)

        // Each grant after the first doubles the window (256 KiB -> 16 MiB in 6 steps), so each is
        // larger than the one before; no Data frame went beyond what was granted (the session
        // would have ended with a window violation and a Go Away).
        let grants = pair.framesToClient.filter { $0.type == .windowUpdate && $0.streamID == 1 }.map(\.length)
        #expect(grants.count >= 7)
        #expect(zip(grants, grants.dropFirst()).allSatisfy { $0 < $1 })
        #expect(try accepted.getOption(YamuxChannelOptions.receiveWindow).wait() == 16 * 1024 * 1024)
        #expect(try stream.getOption(YamuxChannelOptions.receiveWindow).wait() == self.window)
        #expect(!pair.framesToServer.contains { $0.type == .goAway })
    }

    @Test func withoutARoundTripTheFirstGrantPingsAndTheWindowStays() throws {
        let pair = try YamuxPair()
        let stream = try pair.openClientStream()
        let payload = self.pattern(1024 * 1024)
        let written = stream.writeAndFlush(payload)
        try pair.shuttle()
        try written.wait()
        let accepted = try #require(pair.serverStreams.value.first)
        #expect(accepted.recorder.received == payload)
        // The server's first grant came with a Ping; the client answered it with no time passing,
        // so the round trip is 0 and no grant is "within four round trips".
        #expect(pair.framesToClient.filter { $0.type == .ping } == [.ping(flags: .syn, opaque: 0)])
        #expect(pair.framesToServer.contains(.ping(flags: .ack, opaque: 0)))
        #expect(pair.serverMultiplexer.roundTripTime == .zero)
        #expect(try accepted.getOption(YamuxChannelOptions.receiveWindow).wait() == self.window)
    }

    /// The Ping sent with a first grant measures the round trip; on a slow link its answer waits
    /// behind the data the grant lets in, so it is not held to `pingTimeout`. A peer that goes
    /// quiet with it unanswered is still found dead: the keep-alive starts the timeout.
    @Test func theRoundTripPingOfAFirstGrantIsNotHeldToThePingTimeout() throws {
        var configuration = YamuxConfiguration()
        configuration.keepAliveInterval = .seconds(30)
        configuration.pingTimeout = .seconds(10)
        let peer = try RawYamuxPeer(configuration: configuration)
        try peer.receive(.windowUpdate(streamID: 1, flags: .syn), .data(streamID: 1, payload: self.pattern(self.window)))
        let stream = try #require(peer.streams.value.first)
        #expect(stream.recorder.received.readableBytes == self.window)
        let sent = try peer.sent()
        #expect(sent.contains(.ping(flags: .syn, opaque: 0)), "\(sent)")
        #expect(sent.contains { $0.type == .windowUpdate && $0.streamID == 1 }, "\(sent)")

        // The answer does not come, but data keeps arriving: well past the ping timeout.
        for _ in 0..<5 {
            peer.loop.advanceTime(by: .seconds(5))
            try peer.receive(.data(streamID: 1, payload: self.pattern(1024)))
        }
        #expect(peer.channel.isActive)
        #expect(stream.recorder.transportErrorCodes.isEmpty)

        // Then the peer goes quiet (last data at 25 s): the keep-alive at 30 s saw that data, the
        // one at 60 s finds the connection quiet and starts the timeout for the unanswered Ping.
        peer.loop.advanceTime(by: .seconds(35))
        #expect(peer.channel.isActive)
        peer.loop.advanceTime(by: .seconds(10))
        #expect(!peer.channel.isActive)
        #expect(stream.recorder.transportErrorCodes == [.yamuxPingTimeout])
    }

    /// A stream's burst reaches the connection in flushed pieces of about
    /// `YamuxMultiplexer.burstFlushSize`, not as one flush at its end.
    @Test func aLargeBurstIsFlushedToTheConnectionInPieces() throws {
        let pair = try YamuxPair()
        let counter = FlushCounter()
        try pair.client.pipeline.syncOperations.addHandler(counter, position: .first)
        let stream = try pair.openClientStream()
        try pair.shuttle()
        counter.flushedPieces.removeAll()
        // One window's worth (256 KiB) in 16 KiB writes and one flush.
        for _ in 0..<16 {
            stream.write(self.pattern(16 * 1024), promise: nil)
        }
        stream.flush()
        let flushed = counter.flushedPieces
        #expect(flushed.reduce(0, +) >= self.window, "\(flushed)")
        try #require(YamuxMultiplexer.burstFlushSize <= self.window / 2)
        #expect(flushed.count >= 2, "\(flushed)")
        #expect(flushed.allSatisfy { $0 < YamuxMultiplexer.burstFlushSize + 16 * 1024 + 2 * YamuxFrame.headerLength }, "\(flushed)")
        try pair.shuttle()
        #expect(pair.serverStreams.value.first?.recorder.received.readableBytes == self.window)
    }

    @Test func writabilityFlipsWhenTheWindowIsExhaustedAndBack() throws {
        let pair = try YamuxPair()
        let stream = try pair.openClientStream()
        stream.writeAndFlush(self.pattern(self.window), promise: nil)
        #expect(stream.isWritable)  // exactly one window went out; nothing waits
        stream.writeAndFlush(self.pattern(1), promise: nil)
        #expect(!stream.isWritable)
        #expect(stream.recorder.writability == [false])
        try pair.shuttle()
        #expect(stream.isWritable)
        #expect(stream.recorder.writability == [false, true])
        #expect(pair.serverStreams.value.first?.recorder.received.readableBytes == self.window + 1)
    }

    @Test func streamDataWaitsWhileTheConnectionIsUnwritable() throws {
        let pair = try YamuxPair()
        let stream = try pair.openClientStream()
        try pair.shuttle()
        pair.client.isWritable = false
        pair.client.pipeline.fireChannelWritabilityChanged()
        #expect(!stream.isWritable)
        stream.writeAndFlush(ByteBuffer(string: "held back"), promise: nil)
        try pair.shuttle()
        #expect(pair.serverStreams.value.first?.recorder.received.readableBytes == 0)
        // Control frames are never held back: a ping is still answered.
        try pair.client.writeInbound(ByteBuffer(bytes: [0, 2, 0, 1, 0, 0, 0, 0, 0, 0, 0, 7]))
        #expect(try YamuxPair.drainFrames(pair.client) == [.ping(flags: .ack, opaque: 7)])

        pair.client.isWritable = true
        pair.client.pipeline.fireChannelWritabilityChanged()
        try pair.shuttle()
        #expect(stream.isWritable)
        #expect(pair.serverStreams.value.first?.recorder.received == ByteBuffer(string: "held back"))
    }

    @Test func aReaderWithAutoReadOffStopsTheSender() throws {
        let pair = try YamuxPair(serverSetup: Streams.recording(autoRead: false))
        let stream = try pair.openClientStream()
        stream.writeAndFlush(self.pattern(3 * self.window), promise: nil)
        try pair.shuttle()
        let accepted = try #require(pair.serverStreams.value.first)
        // Nothing was read, so no window came back: one window crossed, the rest waits at the sender.
        #expect(accepted.recorder.received.readableBytes == 0)
        #expect(self.dataBytes(pair.framesToServer, stream: 1) == self.window)
        #expect(!pair.framesToClient.contains { $0.type == .windowUpdate && $0.length > 0 })
        #expect(!stream.isWritable)

        accepted.read()
        try pair.shuttle()
        #expect(accepted.recorder.received.readableBytes == self.window)
        #expect(self.dataBytes(pair.framesToServer, stream: 1) == 2 * self.window)

        try accepted.setOption(ChannelOptions.autoRead, value: true).wait()
        try pair.shuttle()
        #expect(accepted.recorder.received == self.pattern(3 * self.window))
        #expect(stream.isWritable)
    }

    /// Flips the parent's writability inside every write, as a socket does at its high-water mark.
    private final class WritabilityFlipper: ChannelOutboundHandler {
        typealias OutboundIn = ByteBuffer

        func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
            context.write(data, promise: promise)
            let channel = context.channel as! EmbeddedChannel
            channel.isWritable.toggle()
            context.fireChannelWritabilityChanged()
        }
    }

    /// Writes and flushes a marker whenever the stream turns unwritable.
    private final class NestedWriter: ChannelInboundHandler {
        typealias InboundIn = ByteBuffer
        typealias OutboundOut = ByteBuffer
        var markers = 0

        func channelWritabilityChanged(context: ChannelHandlerContext) {
            if !context.channel.isWritable, self.markers < 3 {
                self.markers += 1
                context.writeAndFlush(self.wrapOutboundOut(ByteBuffer(string: "<nested\(self.markers)>")), promise: nil)
            }
        }
    }

    @Test func framesWrittenFromInsideAParentWriteNeverSplitAFrame() throws {
        let pair = try YamuxPair()
        let bulk = try pair.openClientStream()
        let reactive = try pair.openClientStream { channel in
            try Streams.recording()(channel)
            try channel.pipeline.syncOperations.addHandler(NestedWriter())
        }
        try pair.shuttle()
        try pair.client.pipeline.syncOperations.addHandler(WritabilityFlipper(), position: .first)
        // The bulk frame's header and payload are separate writes; the first of them flips the
        // parent, and the other stream answers from inside that write.
        let big = self.pattern(20_000)
        bulk.writeAndFlush(big, promise: nil)
        try pair.shuttle()
        #expect(pair.server.isActive)
        let accepted = pair.serverStreams.value
        try #require(accepted.count == 2)
        #expect(accepted[0].recorder.received == big)
        #expect(accepted[1].recorder.received.readableBytes > 0)
        #expect(accepted[1].recorder.received.getString(at: 0, length: 9) == "<nested1>")
        #expect(reactive.isActive && bulk.isActive)
    }

    // MARK: Closing

    @Test func halfCloseLetsTheOtherSideStillAnswer() throws {
        let pair = try YamuxPair(serverSetup: Streams.recording(halfClosure: true))
        let stream = try pair.openClientStream()
        stream.writeAndFlush(ByteBuffer(string: "request"), promise: nil)
        try stream.close(mode: .output).wait()
        #expect(stream.recorder.outputClosed)
        try pair.shuttle()
        #expect(pair.framesToServer.last == .windowUpdate(streamID: 1, flags: .fin))

        let accepted = try #require(pair.serverStreams.value.first)
        #expect(accepted.recorder.inputClosed)
        #expect(accepted.isActive)
        accepted.writeAndFlush(ByteBuffer(string: "response"), promise: nil)
        try pair.shuttle()
        #expect(stream.recorder.received == ByteBuffer(string: "response"))
        #expect(stream.isActive)

        try accepted.close(mode: .output).wait()
        try pair.shuttle()
        // Both FINs exchanged: both channels are gone.
        #expect(stream.recorder.inputClosed)
        #expect(!stream.isActive && !accepted.isActive)
        try stream.closeFuture.wait()
        try accepted.closeFuture.wait()
        #expect(stream.recorder.errors.isEmpty && accepted.recorder.errors.isEmpty)
    }

    @Test func fullCloseSendsFINAndCompletesWhenThePeerFinishes() throws {
        // Without half-closure the server closes its side as soon as it sees the FIN.
        let pair = try YamuxPair(serverSetup: Streams.recording(halfClosure: false))
        let stream = try pair.openClientStream()
        stream.writeAndFlush(ByteBuffer(string: "bye"), promise: nil)
        let closed = stream.close()
        var closeDone = false
        closed.assumeIsolated().whenSuccess { closeDone = true }
        pair.loop.run()
        #expect(!closeDone)  // the peer has not sent its FIN yet
        try pair.shuttle()
        #expect(closeDone)
        let accepted = try #require(pair.serverStreams.value.first)
        #expect(accepted.recorder.received == ByteBuffer(string: "bye"))
        #expect(accepted.recorder.isInactive)
        try stream.closeFuture.wait()
        try accepted.closeFuture.wait()
        #expect(pair.framesToClient.contains(.windowUpdate(streamID: 1, flags: .fin)))
        #expect(!pair.framesToServer.contains { $0.flags.contains(.rst) })
    }

    @Test func closeDeliversQueuedWritesBeforeTheFIN() throws {
        let pair = try YamuxPair(serverSetup: Streams.recording(halfClosure: false))
        let stream = try pair.openClientStream()
        let payload = self.pattern(2 * self.window)
        stream.write(payload, promise: nil)
        stream.close(promise: nil)
        try pair.shuttle()
        #expect(pair.serverStreams.value.first?.recorder.received == payload)
        try stream.closeFuture.wait()
    }

    @Test func resetSendsRSTAndThePeerSeesAnError() throws {
        let pair = try YamuxPair()
        let stream = try pair.openClientStream()
        stream.writeAndFlush(ByteBuffer(string: "data"), promise: nil)
        try pair.shuttle()
        let accepted = try #require(pair.serverStreams.value.first)

        try stream.triggerUserOutboundEvent(YamuxStreamResetEvent()).wait()
        #expect(!stream.isActive)
        try pair.shuttle()
        #expect(pair.framesToServer.last == .windowUpdate(streamID: 1, flags: .rst))
        #expect(accepted.recorder.transportErrorCodes == [.yamuxStreamReset])
        #expect(accepted.recorder.received == ByteBuffer(string: "data"))
        try stream.closeFuture.wait()
        try accepted.closeFuture.wait()
        // A write on the reset stream fails.
        #expect(throws: ChannelError.ioOnClosedChannel) { try stream.writeAndFlush(ByteBuffer(string: "late")).wait() }
    }

    @Test func closeTimesOutIntoARSTWhenThePeerNeverFinishes() throws {
        var configuration = YamuxConfiguration()
        configuration.streamCloseTimeout = .seconds(30)
        configuration.keepAliveInterval = nil
        let pair = try YamuxPair(configuration: configuration, serverSetup: Streams.recording(halfClosure: true))
        let stream = try pair.openClientStream()
        let closed = stream.close()
        try pair.shuttle()
        #expect(stream.isActive)
        pair.loop.advanceTime(by: .seconds(30))
        try pair.shuttle()
        #expect(throws: TransportError(.yamuxStreamCloseTimeout, "")) { try closed.wait() }
        #expect(pair.framesToServer.last == .windowUpdate(streamID: 1, flags: .rst))
        try stream.closeFuture.wait()
    }

    @Test func closingTheParentClosesEveryStreamAfterAGoAway() throws {
        let pair = try YamuxPair()
        let first = try pair.openClientStream()
        let second = try pair.openClientStream()
        try pair.shuttle()
        try pair.client.close().wait()
        try pair.shuttle()
        #expect(pair.framesToServer.last == .goAway(.normal))
        for stream in [first, second] {
            #expect(!stream.isActive)
            #expect(stream.recorder.transportErrorCodes == [.yamuxSessionClosed])
            try stream.closeFuture.wait()
        }
        // The server keeps its streams (Go Away normal only stops new ones) but opens no new ones.
        #expect(pair.serverStreams.value.allSatisfy { $0.isActive })
        let refused = pair.serverMultiplexer.createStream { $0.eventLoop.makeSucceededVoidFuture() }
        #expect(throws: TransportError(.yamuxGoAwayReceived, "")) { try refused.wait() }
    }

    @Test func failingInboundInitializerResetsTheStream() throws {
        struct Refused: Error {}
        let pair = try YamuxPair(serverSetup: { _ in throw Refused() })
        let stream = try pair.openClientStream()
        stream.writeAndFlush(ByteBuffer(string: "anyone?"), promise: nil)
        try pair.shuttle()
        #expect(pair.framesToClient == [.windowUpdate(streamID: 1, flags: .rst)])
        #expect(stream.recorder.transportErrorCodes == [.yamuxStreamReset])
        try stream.closeFuture.wait()
    }

    @Test func theBufferLimitCapsWritabilityWhenTheWindowIsLarger() throws {
        var configuration = YamuxConfiguration()
        configuration.streamWriteBufferLimit = 64 * 1024
        let pair = try YamuxPair(configuration: configuration)
        let stream = try pair.openClientStream()
        // Unflushed bytes are queued: 100 KiB fits the 256 KiB window but not the 64 KiB limit.
        stream.write(self.pattern(100 * 1024), promise: nil)
        #expect(!stream.isWritable)
        #expect(stream.recorder.writability == [false])
        stream.flush()
        try pair.shuttle()
        #expect(stream.isWritable)
        #expect(pair.serverStreams.value.first?.recorder.received == self.pattern(100 * 1024))
    }

    @Test func aWriterRunningAheadOfWritabilityLosesNothing() throws {
        // NIOAsyncChannel's writer can hand over writes after the stream turned unwritable; the
        // stream keeps them all, in order, and never resets.
        var configuration = YamuxConfiguration()
        configuration.streamWriteBufferLimit = 64 * 1024
        let pair = try YamuxPair(configuration: configuration)
        let stream = try pair.openClientStream()
        let total = 4 * self.window + 12345
        let payload = self.pattern(total)
        var offset = 0
        var promises: [EventLoopFuture<Void>] = []
        while offset < total {
            let size = min(64 * 1024, total - offset)
            promises.append(stream.writeAndFlush(payload.getSlice(at: offset, length: size)!))
            offset += size
        }
        #expect(!stream.isWritable)
        try pair.shuttle()
        for promise in promises { try promise.wait() }
        #expect(stream.isActive)
        #expect(stream.recorder.transportErrorCodes.isEmpty)
        #expect(pair.serverStreams.value.first?.recorder.received == payload)
        #expect(!pair.framesToServer.contains { $0.flags.contains(.rst) })
    }

    // MARK: Ping and keep-alive

    @Test func pingMeasuresTheRoundTrip() throws {
        let pair = try YamuxPair()
        let rtt = pair.clientMultiplexer.ping()
        let request = try #require(try pair.client.readOutbound(as: ByteBuffer.self))
        pair.loop.advanceTime(by: .milliseconds(7))
        try pair.server.writeInbound(request)
        try pair.shuttle()
        #expect(try rtt.wait() == .milliseconds(7))
        #expect(pair.clientMultiplexer.roundTripTime == .milliseconds(7))
        #expect(pair.framesToClient == [.ping(flags: .ack, opaque: 0)])
    }

    @Test func keepAlivePingsAnIdleConnectionAndClosesADeadOne() throws {
        var configuration = YamuxConfiguration()
        configuration.keepAliveInterval = .seconds(30)
        configuration.pingTimeout = .seconds(10)
        let pair = try YamuxPair(configuration: configuration)
        let stream = try pair.openClientStream()
        try pair.shuttle()
        try #require(pair.serverStreams.value.first).writeAndFlush(ByteBuffer(string: "alive")).wait()
        try pair.shuttle()

        // Traffic within the interval proves the peer alive: no ping.
        pair.loop.advanceTime(by: .seconds(30))
        #expect(try pair.client.readOutbound(as: ByteBuffer.self) == nil)
        // A whole interval without traffic: ping.
        pair.loop.advanceTime(by: .seconds(30))
        let ping = try YamuxPair.drainFrames(pair.client)
        #expect(ping == [.ping(flags: .syn, opaque: 0)])

        // The peer never answers.
        pair.loop.advanceTime(by: .seconds(10))
        #expect(throws: TransportError(.yamuxPingTimeout, "")) { try pair.client.throwIfErrorCaught() }
        #expect(!pair.client.isActive)
        #expect(stream.recorder.transportErrorCodes == [.yamuxPingTimeout])
    }

    @Test func answeredKeepAliveKeepsTheConnection() throws {
        let pair = try YamuxPair()
        pair.loop.advanceTime(by: .seconds(30))
        try pair.shuttle()
        // Both sides were idle, so both pinged and both answered.
        #expect(Set(pair.framesToServer) == [.ping(flags: .syn, opaque: 0), .ping(flags: .ack, opaque: 0)])
        #expect(Set(pair.framesToClient) == [.ping(flags: .syn, opaque: 0), .ping(flags: .ack, opaque: 0)])
        pair.loop.advanceTime(by: .seconds(10))
        #expect(pair.client.isActive)
        #expect(pair.clientMultiplexer.roundTripTime == .zero)
    }

    // MARK: Bad input

    private func expectSessionError(_ code: TransportError.Code, _ peer: RawYamuxPeer, _ frames: YamuxFrame...) throws {
        var buffer = ByteBuffer()
        for frame in frames {
            frame.encode(into: &buffer)
        }
        try self.expectSessionError(code, peer, bytes: buffer)
    }

    private func expectSessionError(_ code: TransportError.Code, _ peer: RawYamuxPeer, bytes: ByteBuffer) throws {
        #expect(throws: TransportError(code, "")) { try peer.receive(bytes: bytes) }
        #expect(try peer.sent().last == .goAway(.protocolError))
        #expect(!peer.channel.isActive)
    }

    @Test func unknownFrameTypeClosesTheSessionWithGoAway() throws {
        let peer = try RawYamuxPeer()
        try self.expectSessionError(
            .yamuxInvalidFrameType,
            peer,
            bytes: ByteBuffer(bytes: [0, 7, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0])
        )
    }

    @Test func wrongVersionClosesTheSessionWithGoAway() throws {
        let peer = try RawYamuxPeer()
        try self.expectSessionError(
            .yamuxInvalidVersion,
            peer,
            bytes: ByteBuffer(bytes: [1, 1, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0])
        )
    }

    @Test func oversizedFrameClosesTheSessionBeforeItsPayloadArrives() throws {
        let peer = try RawYamuxPeer()
        try peer.receive(.windowUpdate(streamID: 1, flags: .syn))
        var header = ByteBuffer()
        header.writeMultipleIntegers(UInt8(0), UInt8(0), UInt16(0), UInt32(1), UInt32(1 << 30))
        try self.expectSessionError(.yamuxFrameTooLarge, peer, bytes: header)
        let stream = try #require(peer.streams.value.first)
        #expect(stream.recorder.transportErrorCodes == [.yamuxFrameTooLarge])
    }

    @Test func windowViolationClosesTheSessionAndItsStreams() throws {
        let peer = try RawYamuxPeer()
        try peer.receive(.windowUpdate(streamID: 1, flags: .syn))
        let stream = try #require(peer.streams.value.first)
        try self.expectSessionError(
            .yamuxWindowViolation,
            peer,
            .data(streamID: 1, payload: ByteBuffer(repeating: 0, count: self.window)),
            .data(streamID: 1, payload: ByteBuffer(repeating: 0, count: 1))
        )
        #expect(stream.recorder.received.readableBytes == self.window)
        #expect(stream.recorder.transportErrorCodes == [.yamuxWindowViolation])
        #expect(!stream.isActive)
    }

    @Test func dataOnAStreamNeverOpenedClosesTheSession() throws {
        let peer = try RawYamuxPeer()
        try self.expectSessionError(.yamuxUnknownStream, peer, .data(streamID: 5, payload: ByteBuffer(string: "?")))
    }

    @Test func reusedStreamIDClosesTheSession() throws {
        let peer = try RawYamuxPeer()
        try peer.receive(.windowUpdate(streamID: 3, flags: .syn))
        try self.expectSessionError(.yamuxInvalidStreamID, peer, .windowUpdate(streamID: 3, flags: .syn))
    }

    @Test func synWithTheWrongParityClosesTheSession() throws {
        let peer = try RawYamuxPeer(role: .server)
        try self.expectSessionError(.yamuxInvalidStreamID, peer, .windowUpdate(streamID: 2, flags: .syn))
    }

    @Test func streamsBeyondTheBacklogAreRefusedAndTheRestCarryOn() throws {
        var configuration = YamuxConfiguration()
        configuration.maximumUnacknowledgedInboundStreams = 2
        let peer = try RawYamuxPeer(configuration: configuration)
        try peer.receive(
            .windowUpdate(streamID: 1, flags: .syn),
            .windowUpdate(streamID: 3, flags: .syn),
            .data(streamID: 5, flags: .syn, payload: ByteBuffer(string: "one too many")),
            .data(streamID: 1, payload: ByteBuffer(string: "still here"))
        )
        #expect(try peer.sent() == [.windowUpdate(streamID: 5, flags: .rst)])
        #expect(peer.channel.isActive)
        #expect(peer.streams.value.count == 2)
        #expect(peer.streams.value[0].recorder.received == ByteBuffer(string: "still here"))
        // Late data for the refused stream is dropped, not an error.
        try peer.receive(.data(streamID: 5, payload: ByteBuffer(string: "more")))
        #expect(peer.channel.isActive)
    }

    @Test func dataAfterFINResetsOnlyThatStream() throws {
        let peer = try RawYamuxPeer()
        try peer.receive(.windowUpdate(streamID: 1, flags: .syn), .windowUpdate(streamID: 3, flags: .syn))
        try peer.receive(.data(streamID: 1, flags: .fin, payload: ByteBuffer(string: "end")))
        try peer.receive(.data(streamID: 1, payload: ByteBuffer(string: "after the end")))
        #expect(try peer.sent() == [.windowUpdate(streamID: 1, flags: .rst)])
        let (first, second) = (peer.streams.value[0], peer.streams.value[1])
        #expect(first.recorder.received == ByteBuffer(string: "end"))
        #expect(first.recorder.transportErrorCodes == [.yamuxStreamProtocolError])
        #expect(!first.isActive)
        #expect(second.isActive)
        #expect(peer.channel.isActive)
    }

    @Test func errorGoAwayFromThePeerClosesTheConnection() throws {
        let peer = try RawYamuxPeer()
        try peer.receive(.windowUpdate(streamID: 1, flags: .syn))
        #expect(throws: TransportError(.yamuxGoAwayReceived, "")) { try peer.receive(.goAway(.internalError)) }
        #expect(try peer.sent().isEmpty)
        #expect(!peer.channel.isActive)
        #expect(peer.streams.value.first?.isActive == false)
    }

    @Test func framesSplitAcrossReadsAreReassembled() throws {
        let peer = try RawYamuxPeer()
        var bytes = ByteBuffer()
        YamuxFrame.data(streamID: 1, flags: .syn, payload: ByteBuffer(string: "split across reads")).encode(into: &bytes)
        YamuxFrame.ping(flags: .syn, opaque: 9).encode(into: &bytes)
        while bytes.readableBytes > 0 {
            try peer.receive(bytes: bytes.readSlice(length: min(5, bytes.readableBytes))!)
        }
        #expect(peer.streams.value.first?.recorder.received == ByteBuffer(string: "split across reads"))
        #expect(try peer.sent() == [.ping(flags: .ack, opaque: 9)])
    }

    @Test func aSplitDataFrameStreamsItsPayloadAndAppliesFINLast() throws {
        let peer = try RawYamuxPeer()
        var bytes = ByteBuffer()
        let payload = ByteBuffer(repeating: 0x42, count: 30_000)
        YamuxFrame.data(streamID: 1, flags: [.syn, .fin], payload: payload).encode(into: &bytes)
        // The header and the first 10_000 payload bytes: the stream opens and reads them at once.
        try peer.receive(bytes: bytes.readSlice(length: 12 + 10_000)!)
        let stream = try #require(peer.streams.value.first)
        #expect(stream.recorder.received.readableBytes == 10_000)
        #expect(!stream.recorder.inputClosed)
        try peer.receive(bytes: bytes.readSlice(length: 10_000)!)
        #expect(stream.recorder.received.readableBytes == 20_000)
        #expect(!stream.recorder.inputClosed)
        try peer.receive(bytes: bytes)
        #expect(stream.recorder.received == payload)
        #expect(stream.recorder.inputClosed)
    }

    @Test func aSplitDataFrameBeyondTheWindowStillClosesTheSession() throws {
        // The reader does not read, so no window is granted back.
        let peer = try RawYamuxPeer(setup: Streams.recording(autoRead: false))
        try peer.receive(.windowUpdate(streamID: 1, flags: .syn), .data(streamID: 1, payload: ByteBuffer(repeating: 0, count: 100_000)))
        var bytes = ByteBuffer()
        YamuxFrame.data(streamID: 1, payload: ByteBuffer(repeating: 0, count: self.window)).encode(into: &bytes)
        try peer.receive(bytes: bytes.readSlice(length: 12 + 100_000)!)
        #expect(peer.channel.isActive)
        try self.expectSessionError(.yamuxWindowViolation, peer, bytes: bytes)
    }

    @Test func rawWritesOnTheParentAreRefused() throws {
        let peer = try RawYamuxPeer()
        #expect(throws: ChannelError.operationUnsupported) {
            try peer.channel.writeAndFlush(ByteBuffer(string: "raw")).wait()
        }
    }
}

/// Records how many bytes reach the connection between flushes.
private final class FlushCounter: ChannelOutboundHandler {
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer
    var flushedPieces: [Int] = []
    private var unflushed = 0

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        unflushed += unwrapOutboundIn(data).readableBytes
        context.write(data, promise: promise)
    }

    func flush(context: ChannelHandlerContext) {
        if unflushed > 0 { flushedPieces.append(unflushed) }
        unflushed = 0
        context.flush()
    }
}
