import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import PunchCrypto
import PunchTransport
import PunchWire

/// What one transfer measured: the byte count the receiver acknowledged, and the time from the
/// first write to the acknowledgement.
struct TransferOutcome: Sendable {
    var acknowledged: UInt64
    var nanoseconds: UInt64
}

/// Writes `total` bytes in 64 KiB slices of one buffer while the channel is writable, half-closes,
/// then waits for the receiver's 8-byte acknowledgement (the count it received) and closes.
///
/// Used on a raw TCP channel and on a yamux stream channel alike.
final class BulkSender: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    let result: EventLoopPromise<TransferOutcome>
    private let chunk: ByteBuffer
    private var remaining: Int
    private var start: UInt64?
    private var finished = false
    private var pumping = false
    private var pumpAgain = false
    private var completed = false
    private var acknowledgement = ByteBuffer()

    init(chunk: ByteBuffer, total: Int, result: EventLoopPromise<TransferOutcome>) {
        self.chunk = chunk
        self.remaining = total
        self.result = result
    }

    func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { pump(context: context) }
    }

    func channelActive(context: ChannelHandlerContext) {
        pump(context: context)
        context.fireChannelActive()
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable { pump(context: context) }
        context.fireChannelWritabilityChanged()
    }

    /// Writes while writable. A writability change inside `flush` calls back in: it only asks the
    /// running loop to go on.
    private func pump(context: ChannelHandlerContext) {
        if start == nil { start = nanoseconds() }
        guard !finished else { return }
        guard !pumping else {
            pumpAgain = true
            return
        }
        pumping = true
        repeat {
            pumpAgain = false
            while remaining > 0, context.channel.isWritable {
                let count = min(chunk.readableBytes, remaining)
                context.write(wrapOutboundOut(chunk.getSlice(at: chunk.readerIndex, length: count)!), promise: nil)
                remaining -= count
            }
            context.flush()
        } while pumpAgain && remaining > 0
        pumping = false
        if remaining == 0 {
            finished = true
            context.close(mode: .output, promise: nil)
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var bytes = unwrapInboundIn(data)
        acknowledgement.writeBuffer(&bytes)
        guard !completed, let count = acknowledgement.readInteger(as: UInt64.self) else { return }
        completed = true
        result.succeed(TransferOutcome(acknowledged: count, nanoseconds: nanoseconds() - (start ?? 0)))
        context.close(promise: nil)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        fail(BenchmarkError("the sending channel failed: \(error)"))
        context.close(promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        fail(BenchmarkError("the sending channel closed before the acknowledgement"))
        context.fireChannelInactive()
    }

    private func fail(_ error: BenchmarkError) {
        guard !completed else { return }
        completed = true
        result.fail(error)
    }
}

/// The raw TCP receiver: counts and drops everything until the sender's FIN, then writes the count
/// as a big-endian UInt64 and closes.
final class DiscardAcknowledger: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private var count: UInt64 = 0

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        count += UInt64(unwrapInboundIn(data).readableBytes)
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case ChannelEvent.inputClosed = event {
            var answer = context.channel.allocator.buffer(capacity: 8)
            answer.writeInteger(count)
            context.writeAndFlush(wrapOutboundOut(answer)).assumeIsolated().whenComplete { _ in
                context.close(promise: nil)
            }
        }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}

/// Both ends of the loopback measurements, each on its own single-threaded event loop group (as
/// two processes on this 2-core machine would be).
actor LoopbackBench {
    /// The receiving stream's yamux window at the end of the last transfer (auto-tuning grows it).
    static let lastReceiveWindow = NIOLockedValueBox(0)

    static let discardProtocol = "/punch/bench/discard/1.0.0"

    let serverGroup = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    let clientGroup = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    let chunk = makeChunk()
    private var tcpServer: Channel?
    private var listener: PunchHost?
    private var dialer: PunchHost?
    private var connection: Connection?

    // MARK: Raw TCP

    /// Starts the raw TCP discard server.
    func startTCP() async throws {
        let server = try await ServerBootstrap(group: serverGroup)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelOption(.allowRemoteHalfClosure, value: true)
            // The same receive allocator as PunchHost's connections, so both read alike.
            .childChannelOption(.recvAllocator, value: NoiseHandler.recommendedReceiveAllocator)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(DiscardAcknowledger())
                }
            }
            .bind(host: "127.0.0.1", port: 0)
            .get()
        tcpServer = server
    }

    /// One raw TCP transfer of `bytes` on a new connection; returns seconds.
    func tcpTransfer(bytes: Int) async throws -> Double {
        guard let address = tcpServer?.localAddress else { throw BenchmarkError("the TCP server is not running") }
        let chunk = self.chunk
        let resultHolder = NIOLockedResult()
        let channel = try await ClientBootstrap(group: clientGroup)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let sender = BulkSender(chunk: chunk, total: bytes, result: channel.eventLoop.makePromise())
                    resultHolder.set(sender.result.futureResult)
                    try channel.pipeline.syncOperations.addHandler(sender)
                }
            }
            .connect(to: address)
            .get()
        let outcome = try await resultHolder.future!.get()
        try? await channel.closeFuture.get()
        return try Self.seconds(outcome, expected: bytes)
    }

    // MARK: Noise + yamux

    /// Starts two PunchHosts on loopback and connects them.
    func startHosts(window: Int?) async throws {
        var listenerConfiguration = HostConfiguration(identity: .generate())
        listenerConfiguration.identifyOnConnect = false
        if let window { listenerConfiguration.yamux.streamReceiveWindow = UInt32(window) }
        if let waterMark = options.waterMark {
            listenerConfiguration.writeBufferWaterMark = .init(low: waterMark / 4, high: waterMark)
        }
        let listener = PunchHost(configuration: listenerConfiguration, group: serverGroup)
        Self.serveDiscard(on: listener)
        self.listener = listener
        let address = try await listener.listen(Multiaddr("/ip4/127.0.0.1/tcp/0"))[0]

        // The default configuration, for both writers.
        var dialerConfiguration = HostConfiguration(identity: .generate())
        dialerConfiguration.identifyOnConnect = false
        if let window { dialerConfiguration.yamux.streamReceiveWindow = UInt32(window) }
        if let waterMark = options.waterMark {
            dialerConfiguration.writeBufferWaterMark = .init(low: waterMark / 4, high: waterMark)
        }
        let dialer = PunchHost(configuration: dialerConfiguration, group: clientGroup)
        self.dialer = dialer
        connection = try await dialer.dial(address)

    }

    /// Serves the discard protocol: counts what arrives until the FIN, answers the count as a
    /// big-endian UInt64, and closes.
    static func serveDiscard(on host: PunchHost) {
        host.setStreamHandler(for: discardProtocol) { stream in
            try await stream.channel.executeThenClose { inbound, outbound in
                var count: UInt64 = 0
                for try await chunk in inbound {
                    count += UInt64(chunk.readableBytes)
                }
                let window = try? await stream.channel.channel.getOption(YamuxChannelOptions.receiveWindow).get()
                LoopbackBench.lastReceiveWindow.withLockedValue { $0 = window ?? 0 }
                var answer = ByteBuffer()
                answer.writeInteger(count)
                try await outbound.write(answer)
                outbound.finish()
            }
        }
    }

    /// One transfer on a new stream, written through `NIOAsyncChannel`'s outbound writer in 64 KiB
    /// chunks; returns seconds from the first write to the acknowledgement.
    func asyncWriterTransfer(bytes: Int) async throws -> Double {
        guard let connection else { throw BenchmarkError("the hosts are not connected") }
        return try await asyncWriterTransfer(bytes: bytes, on: connection)
    }

    private func asyncWriterTransfer(bytes: Int, on connection: Connection) async throws -> Double {
        let stream = try await connection.openStream(protocol: Self.discardProtocol)
        let chunk = self.chunk
        let outcome = try await stream.channel.executeThenClose { inbound, outbound in
            let start = nanoseconds()
            var sent = 0
            while sent < bytes {
                let count = min(chunk.readableBytes, bytes - sent)
                try await outbound.write(chunk.getSlice(at: chunk.readerIndex, length: count)!)
                let before = sent
                sent += count
                // As Connection.echo does: keep the writer from running ahead of the stream.
                if before / HostStream.writerCatchUpInterval != sent / HostStream.writerCatchUpInterval {
                    try await stream.waitForWriterToCatchUp()
                }
            }
            outbound.finish()
            var acknowledgement = ByteBuffer()
            for try await part in inbound {
                acknowledgement.writeImmutableBuffer(part)
                if acknowledgement.readableBytes >= 8 { break }
            }
            let elapsed = nanoseconds() - start
            guard let count = acknowledgement.readInteger(as: UInt64.self) else {
                throw BenchmarkError("the stream ended without an acknowledgement")
            }
            return TransferOutcome(acknowledged: count, nanoseconds: elapsed)
        }
        return try Self.seconds(outcome, expected: bytes)
    }

    /// One transfer on a new stream, written by a `BulkSender` handler in the stream's pipeline
    /// (set up with `Connection.openChannel(protocol:initializer:)`); returns seconds.
    func handlerWriterTransfer(bytes: Int) async throws -> Double {
        guard let connection else { throw BenchmarkError("the hosts are not connected") }
        return try await Self.handlerWriterTransfer(bytes: bytes, chunk: chunk, on: connection)
    }

    /// One handler-written transfer on a new discard stream of `connection`; returns seconds.
    static func handlerWriterTransfer(bytes: Int, chunk: ByteBuffer, on connection: Connection) async throws -> Double {
        let result = try await connection.openChannel(protocol: Self.discardProtocol) { channel in
            channel.eventLoop.makeCompletedFuture {
                let sender = BulkSender(chunk: chunk, total: bytes, result: channel.eventLoop.makePromise())
                try channel.pipeline.syncOperations.addHandler(sender)
                return sender.result.futureResult
            }
        }
        return try Self.seconds(try await result.get(), expected: bytes)
    }

    func shutdown() async {
        try? await tcpServer?.close()
        await dialer?.close()
        await listener?.close()
        try? await clientGroup.shutdownGracefully()
        try? await serverGroup.shutdownGracefully()
    }

    static func seconds(_ outcome: TransferOutcome, expected: Int) throws -> Double {
        guard outcome.acknowledged == UInt64(expected) else {
            throw BenchmarkError("the receiver acknowledged \(outcome.acknowledged) of \(expected) bytes")
        }
        return Double(outcome.nanoseconds) / 1e9
    }
}

/// Hands a future out of a channel initializer.
final class NIOLockedResult: @unchecked Sendable {
    // Sendable: `set` runs in the initializer, which completes before `connect` returns and
    // `future` is read; the lock orders the two.
    private let lock = NIOLock()
    private var _future: EventLoopFuture<TransferOutcome>?

    func set(_ future: EventLoopFuture<TransferOutcome>) {
        lock.withLock { _future = future }
    }

    var future: EventLoopFuture<TransferOutcome>? {
        lock.withLock { _future }
    }
}
