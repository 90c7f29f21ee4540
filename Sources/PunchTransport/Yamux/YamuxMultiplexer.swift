import Logging
import NIOCore

/// A yamux session (`/yamux/1.0.0`) on a secured connection, with every stream a child `Channel`.
///
/// Put it last in the connection's pipeline, after the security handler, so it reads and writes the
/// connection's plaintext bytes:
///
/// ```swift
/// let multiplexer = YamuxMultiplexer(role: .client) { stream in
///     // A stream the peer opened: set up its pipeline.
///     stream.pipeline.addHandler(MyProtocolHandler())
/// }
/// try channel.pipeline.syncOperations.addHandler(multiplexer)
/// let opener = multiplexer.streamOpener  // Sendable, for async code
/// let stream = try await opener.openStream { stream in
///     stream.eventLoop.makeCompletedFuture {
///         try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: stream)
///     }
/// }
/// ```
///
/// Each stream has its own flow control (yamux spec, "Flow Control"): a stream's channel is
/// unwritable while the peer's window is exhausted, data never overtakes the window, and window is
/// granted back only as the stream's pipeline reads. Protocol violations close the session with a
/// Go Away carrying the protocol-error code and fire a ``TransportError`` down the parent pipeline;
/// a violation confined to one stream resets only that stream. Closing the parent channel sends Go
/// Away (normal) first and closes every stream.
///
/// The multiplexer reads the connection continuously (leave the parent's `autoRead` on): frames of
/// all streams share it, and per-stream backpressure works through the windows instead.
///
/// All methods must be called on the connection's event loop.
public final class YamuxMultiplexer: ChannelDuplexHandler {
    /// The connection's plaintext bytes.
    public typealias InboundIn = ByteBuffer
    /// Nothing is passed on: received data goes to the stream channels.
    public typealias InboundOut = Never
    /// Nothing may be written on the parent: write on stream channels.
    public typealias OutboundIn = Never
    /// Encoded yamux frames.
    public typealias OutboundOut = ByteBuffer

    /// Frames are gathered into one buffer and written at the end of each burst, so the layer below
    /// (Noise) sees few writes; this bounds one gathered write.
    static let outboundChunkSize = 64 * 1024

    /// Data payloads at least this large are not copied into the gathered buffer: their header
    /// is, and the payload slice follows as its own write.
    static let zeroCopyPayloadSize = 4 * 1024

    /// A burst of writes (a stream draining a large window) flushes the parent every this many
    /// bytes (two Noise frames) instead of only at its end: the socket, and so the peer's decrypt,
    /// get the first frames while the later ones are still being encrypted, instead of the two
    /// event loops taking turns. Loopback, `punch-bench --only handler,async`, three interleaved
    /// runs each: NIO handler writer 522 -> 800 MiB/s (64 KiB: 665), async writer unchanged.
    static let burstFlushSize = 128 * 1024

    private let configuration: YamuxConfiguration
    private let logger: Logger
    private let inboundStreamInitializer: @Sendable (Channel) -> EventLoopFuture<Void>
    private var stateMachine: YamuxSessionStateMachine
    private var context: ChannelHandlerContext?
    private var eventLoop: EventLoop?
    private var allocator = ByteBufferAllocator()
    private var streams: [UInt32: YamuxStreamChannel] = [:]
    /// Bytes of a frame header (or a non-Data frame) not yet complete.
    private var inboundBuffer: ByteBuffer?
    /// The Data frame whose payload is arriving, when one was split across reads.
    private var inboundDataFrame: InboundDataFrame?
    /// Small frames gathered for one write to the parent.
    private var gathering: ByteBuffer?
    /// Completed when `gathering` has been written (other promises cascade from it).
    private var gatheringPromise: EventLoopPromise<Void>?
    /// Buffers to write to the parent, in order: gathered frames and large payloads.
    private var outboundQueue = CircularBuffer<(ByteBuffer, EventLoopPromise<Void>?)>(initialCapacity: 8)
    private var hasUnflushedWrites = false
    /// Bytes written to the parent since its last flush.
    private var unflushedBytes = 0
    /// Inside `context.write` or `context.flush`: see `emit(_:)`.
    private var isWritingToParent = false
    /// A flush was asked for while writing; it runs when the write returns.
    private var flushDeferred = false
    /// Between a `channelRead` and its `channelReadComplete` (or while every stream reacts to a
    /// writability change): frames are gathered and flushed once when the burst ends.
    private var flushesDeferred = false
    /// Streams with data waiting for the parent's `channelReadComplete`.
    private var readCompleteQueue: [YamuxStreamChannel] = []
    private var keepAliveTask: Scheduled<Void>?
    private var pingTimeoutTask: Scheduled<Void>?
    private var pingPromise: EventLoopPromise<TimeAmount>?
    private var isTornDown = false
    private(set) var parentIsWritable = true

    /// The round-trip time the latest answered Ping measured (keep-alive or ``ping()``), if any.
    public var roundTripTime: TimeAmount? { self.stateMachine.roundTripTime }

    /// Creates a multiplexer for one end of a connection.
    /// - Parameters:
    ///   - role: `.client` on the side that initiated the secure session (odd stream ids),
    ///     `.server` on the other (even ids).
    ///   - configuration: limits, windows and timers.
    ///   - inboundStreamInitializer: called on the event loop with each stream the peer opens, to set
    ///     up its pipeline. The stream is active once the returned future succeeds; if it fails, the
    ///     stream is reset. The stream is acknowledged with the first frame this side sends on it.
    ///   - logger: where session events (Go Away, refused and reset streams, the end of the
    ///     session) are logged, at `.debug`. Nothing is logged by default.
    public init(
        role: YamuxRole,
        configuration: YamuxConfiguration = YamuxConfiguration(),
        logger: Logger = Logger(label: "punch.yamux", factory: { _ in SwiftLogNoOpLogHandler() }),
        inboundStreamInitializer: @escaping @Sendable (Channel) -> EventLoopFuture<Void>
    ) {
        self.configuration = configuration
        var logger = logger
        logger[metadataKey: "yamux.role"] = "\(role)"
        self.logger = logger
        self.inboundStreamInitializer = inboundStreamInitializer
        self.stateMachine = YamuxSessionStateMachine(role: role, configuration: configuration)
    }

    /// A Data frame whose header has been read and whose payload is still arriving.
    private struct InboundDataFrame {
        let streamID: UInt32
        /// SYN and ACK (and unknown bits), applied with the first piece.
        var openingFlags: YamuxFrame.Flags
        /// FIN and RST, applied with the last piece.
        let closingFlags: YamuxFrame.Flags
        var remaining: Int
    }

    // MARK: Public API

    /// Opens a stream and returns its channel once `initializer` has set up its pipeline and the
    /// SYN has been written.
    ///
    /// Call on the connection's event loop (from async code, use ``streamOpener``). Data may be
    /// written at once: yamux does not wait for the peer's ACK (yamux spec, "Opening a stream"), but
    /// the peer may still refuse the stream with RST, which the channel reports as a
    /// `.yamuxStreamReset` error.
    /// - Parameter initializer: sets up the stream's pipeline.
    /// - Returns: the stream channel; fails with ``TransportError`` `.yamuxTooManyStreams`,
    ///   `.yamuxStreamBacklogFull`, `.yamuxGoAwayReceived`, `.yamuxSessionClosed` or
    ///   `.yamuxStreamIDsExhausted`, or with the initializer's error.
    public func createStream(initializer: @escaping @Sendable (Channel) -> EventLoopFuture<Void>) -> EventLoopFuture<Channel> {
        self.openStream { channel in initializer(channel).map { channel } }
    }

    /// Opens a stream and returns what `initializer` produced (for example a `NIOAsyncChannel`)
    /// once the SYN has been written.
    ///
    /// Call on the connection's event loop; see ``createStream(initializer:)``.
    /// - Parameter initializer: sets up the stream's pipeline and returns a value for the caller.
    /// - Returns: the initializer's value, or the errors of ``createStream(initializer:)``.
    public func openStream<Output: Sendable>(
        initializer: @escaping @Sendable (Channel) -> EventLoopFuture<Output>
    ) -> EventLoopFuture<Output> {
        guard let eventLoop = self.eventLoop else {
            preconditionFailure("YamuxMultiplexer must be added to a channel pipeline before it opens streams")
        }
        eventLoop.preconditionInEventLoop()
        guard let context = self.context, !self.isTornDown else {
            return eventLoop.makeFailedFuture(TransportError(.yamuxSessionClosed, "the yamux session is closed; open a new connection"))
        }
        let streamID: UInt32
        do {
            streamID = try self.stateMachine.openStream()
        } catch {
            return eventLoop.makeFailedFuture(error)
        }
        let stream = YamuxStreamChannel(streamID: streamID, parent: context.channel, multiplexer: self, configuration: self.configuration)
        self.streams[streamID] = stream
        let promise = eventLoop.makePromise(of: Output.self)
        stream.configure(initializer: initializer, promise: promise)
        return promise.futureResult
    }

    /// Sends a Ping and returns the round-trip time once the peer answers.
    ///
    /// If a Ping is already outstanding (a keep-alive or another call), its answer serves this call
    /// too. An answer overdue by ``YamuxConfiguration/pingTimeout`` closes the connection as dead and
    /// fails the future with `.yamuxPingTimeout`. Call on the connection's event loop.
    /// - Returns: the measured round-trip time.
    public func ping() -> EventLoopFuture<TimeAmount> {
        guard let eventLoop = self.eventLoop else {
            preconditionFailure("YamuxMultiplexer must be added to a channel pipeline before it pings")
        }
        eventLoop.preconditionInEventLoop()
        guard self.context != nil, !self.isTornDown else {
            return eventLoop.makeFailedFuture(TransportError(.yamuxSessionClosed, "the yamux session is closed"))
        }
        if let promise = self.pingPromise {
            return promise.futureResult
        }
        let promise = eventLoop.makePromise(of: TimeAmount.self)
        self.pingPromise = promise
        if let frame = self.stateMachine.sendPing(now: eventLoop.now) {
            self.emit(frame)
            self.schedulePingTimeout()
            self.childFlushed()
        } else if self.pingTimeoutTask == nil {
            // A round-trip measurement is outstanding: its answer serves this call, in time.
            self.schedulePingTimeout()
        }
        return promise.futureResult
    }

    /// A `Sendable` handle for opening streams and pinging from any thread or task.
    ///
    /// Read it on the connection's event loop, typically in the channel initializer that adds the
    /// multiplexer.
    public var streamOpener: YamuxStreamOpener {
        guard let eventLoop = self.eventLoop else {
            preconditionFailure("YamuxMultiplexer must be added to a channel pipeline before it hands out an opener")
        }
        return YamuxStreamOpener(multiplexer: self, eventLoop: eventLoop)
    }

    // MARK: ChannelHandler

    public func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        self.eventLoop = context.eventLoop
        self.allocator = context.channel.allocator
        self.parentIsWritable = context.channel.isWritable
        if context.channel.isActive {
            self.scheduleKeepAlive()
        }
    }

    public func handlerRemoved(context: ChannelHandlerContext) {
        self.endSession(
            error: TransportError(.yamuxSessionClosed, "the yamux multiplexer was removed from the pipeline"),
            goAway: nil,
            closeConnection: false
        )
        self.context = nil
    }

    public func channelActive(context: ChannelHandlerContext) {
        self.scheduleKeepAlive()
        context.fireChannelActive()
    }

    public func channelInactive(context: ChannelHandlerContext) {
        self.endSession(
            error: TransportError(.yamuxSessionClosed, "the connection carrying the yamux session closed"),
            goAway: nil,
            closeConnection: false
        )
        context.fireChannelInactive()
    }

    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var incoming = self.unwrapInboundIn(data)
        guard !self.isTornDown else { return }
        var buffer: ByteBuffer
        if var pending = self.inboundBuffer, pending.readableBytes > 0 {
            self.inboundBuffer = nil
            pending.writeBuffer(&incoming)
            buffer = pending
        } else {
            buffer = incoming
        }
        self.flushesDeferred = true
        let maximumDataLength = self.stateMachine.maximumInboundDataLength
        while !self.isTornDown {
            if var partial = self.inboundDataFrame {
                let count = min(partial.remaining, buffer.readableBytes)
                guard count > 0 || !partial.openingFlags.isEmpty else { break }
                let piece = buffer.readSlice(length: count)!
                var flags = partial.openingFlags
                partial.openingFlags = []
                partial.remaining -= count
                if partial.remaining == 0 {
                    flags.formUnion(partial.closingFlags)
                    self.inboundDataFrame = nil
                } else {
                    self.inboundDataFrame = partial
                }
                self.perform(self.stateMachine.receive(.data(streamID: partial.streamID, flags: flags, payload: piece)), context: context)
                continue
            }
            let header: YamuxFrame.Header?
            do {
                header = try YamuxFrame.Header.peek(in: buffer, maximumDataLength: maximumDataLength)
            } catch {
                self.endSession(error: error, goAway: self.stateMachine.decodingFailed(), closeConnection: true)
                return
            }
            guard let header else { break }
            let payloadLength = header.type == .data ? Int(header.length) : 0
            if buffer.readableBytes < YamuxFrame.headerLength + payloadLength {
                // A Data frame split across reads: its payload goes to the stream piece by piece as it
                // arrives (SYN and ACK with the first piece, FIN and RST with the last), so nothing is
                // copied to reassemble it. The header already passed the size check.
                buffer.moveReaderIndex(forwardBy: YamuxFrame.headerLength)
                self.inboundDataFrame = InboundDataFrame(
                    streamID: header.streamID,
                    openingFlags: header.flags.subtracting([.fin, .rst]),
                    closingFlags: header.flags.intersection([.fin, .rst]),
                    remaining: payloadLength
                )
                continue
            }
            buffer.moveReaderIndex(forwardBy: YamuxFrame.headerLength)
            let payload = payloadLength > 0 ? buffer.readSlice(length: payloadLength)! : ByteBuffer()
            let frame = YamuxFrame(type: header.type, flags: header.flags, streamID: header.streamID, length: header.length, payload: payload)
            self.perform(self.stateMachine.receive(frame), context: context)
        }
        self.inboundBuffer = self.isTornDown || buffer.readableBytes == 0 ? nil : buffer
    }

    public func channelReadComplete(context: ChannelHandlerContext) {
        var ready: [YamuxStreamChannel] = []
        swap(&ready, &self.readCompleteQueue)
        for stream in ready {
            stream.parentReadComplete()
        }
        ready.removeAll(keepingCapacity: true)
        if self.readCompleteQueue.isEmpty {
            self.readCompleteQueue = ready
        }
        self.flushesDeferred = false
        self.flushOutbound()
        context.fireChannelReadComplete()
    }

    public func channelWritabilityChanged(context: ChannelHandlerContext) {
        self.parentIsWritable = context.channel.isWritable
        let wasDeferring = self.flushesDeferred
        self.flushesDeferred = true
        for stream in Array(self.streams.values) {
            stream.parentWritabilityChanged()
        }
        self.flushesDeferred = wasDeferring
        if !wasDeferring {
            self.flushOutbound()
        }
        context.fireChannelWritabilityChanged()
    }

    public func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        // Raw bytes would corrupt the framing: data belongs on stream channels.
        promise?.fail(ChannelError.operationUnsupported)
    }

    public func close(context: ChannelHandlerContext, mode: CloseMode, promise: EventLoopPromise<Void>?) {
        if mode == .all, let goAway = self.stateMachine.goAway(.normal) {
            // Tell the peer this is a deliberate shutdown, not a failure (yamux spec, "Session termination").
            self.emit(goAway)
            self.flushOutbound()
        }
        context.close(mode: mode, promise: promise)
    }

    // MARK: Performing state machine actions

    private func perform(_ action: YamuxSessionStateMachine.FrameAction, context: ChannelHandlerContext) {
        switch action {
        case .none:
            break
        case .goAwayReceived(let code):
            self.logger.debug("yamux peer sent Go Away; no new streams", metadata: ["yamux.goAway": "\(code)"])
        case .streamOpened(let streamID, let events):
            let stream = YamuxStreamChannel(streamID: streamID, parent: context.channel, multiplexer: self, configuration: self.configuration)
            self.streams[streamID] = stream
            stream.configure(initializer: self.inboundStreamInitializer, promise: nil)
            stream.receive(events)
        case .streamEvents(let streamID, let events):
            self.streams[streamID]?.receive(events)
        case .resetStream(let streamID, let error, let rst):
            self.logger.debug("yamux stream reset", metadata: ["yamux.stream": "\(streamID)", "error": "\(error)"])
            self.emit(rst)
            self.streams[streamID]?.fail(error: error)
        case .write(let frame):
            if frame.flags.contains(.rst) {
                self.logger.debug("yamux refused an inbound stream (limits or Go Away)", metadata: ["yamux.stream": "\(frame.streamID)"])
            }
            self.emit(frame)
        case .pingAnswered(let sentAt):
            let rtt = context.eventLoop.now - sentAt
            self.stateMachine.roundTripMeasured(rtt)
            self.pingTimeoutTask?.cancel()
            self.pingTimeoutTask = nil
            if let promise = self.pingPromise {
                self.pingPromise = nil
                promise.succeed(rtt)
            }
        case .closeSession(let error, let goAway):
            self.endSession(error: error, goAway: goAway, closeConnection: true)
        }
    }

    /// Ends the session once: writes `goAway` if given, fails every stream and pending ping, and
    /// (for errors found here) reports the error and closes the connection.
    private func endSession(error: Error, goAway: YamuxFrame?, closeConnection: Bool) {
        guard !self.isTornDown else { return }
        self.isTornDown = true
        self.logger.debug("yamux session ended", metadata: ["error": "\(error)", "yamux.streams": "\(self.streams.count)"])
        self.stateMachine.connectionClosed()
        self.keepAliveTask?.cancel()
        self.keepAliveTask = nil
        self.pingTimeoutTask?.cancel()
        self.pingTimeoutTask = nil
        self.inboundBuffer = nil
        self.inboundDataFrame = nil
        if let goAway {
            self.emit(goAway)
        }
        self.flushesDeferred = false
        self.flushOutbound()
        if let promise = self.pingPromise {
            self.pingPromise = nil
            promise.fail(error)
        }
        for stream in Array(self.streams.values) {
            stream.sessionEnded(error: error)
        }
        if closeConnection, let context = self.context {
            context.fireErrorCaught(error)
            context.close(promise: nil)
        }
    }

    // MARK: Keep-alive and ping

    private func scheduleKeepAlive() {
        guard let interval = self.configuration.keepAliveInterval, let eventLoop = self.eventLoop,
            self.keepAliveTask == nil, !self.isTornDown
        else {
            return
        }
        self.keepAliveTask = eventLoop.assumeIsolated().scheduleTask(in: interval) {
            self.keepAliveFired()
        }
    }

    private func keepAliveFired() {
        self.keepAliveTask = nil
        guard !self.isTornDown, let eventLoop = self.eventLoop else { return }
        let quiet = !self.stateMachine.receivedSinceKeepAlive
        if let frame = self.stateMachine.keepAliveTimerFired(now: eventLoop.now) {
            self.emit(frame)
            self.schedulePingTimeout()
            self.childFlushed()
        } else if quiet, self.stateMachine.isPingOutstanding, self.pingTimeoutTask == nil {
            // A quiet connection with only a round-trip measurement outstanding: now its answer is
            // overdue after pingTimeout, as a keep-alive's would be.
            self.schedulePingTimeout()
        }
        self.scheduleKeepAlive()
    }

    private func schedulePingTimeout() {
        guard let eventLoop = self.eventLoop, let opaque = self.stateMachine.outstandingPingOpaque else { return }
        self.pingTimeoutTask?.cancel()
        self.pingTimeoutTask = eventLoop.assumeIsolated().scheduleTask(in: self.configuration.pingTimeout) {
            self.pingTimedOut(opaque: opaque)
        }
    }

    private func pingTimedOut(opaque: UInt32) {
        self.pingTimeoutTask = nil
        guard let error = self.stateMachine.pingTimedOut(opaque: opaque) else { return }
        self.endSession(error: error, goAway: nil, closeConnection: true)
    }

    // MARK: Writing frames

    /// Queues a frame for the parent.
    ///
    /// Small frames are gathered into one buffer; a large Data payload is not copied: its header
    /// ends the gathered buffer and the payload slice follows as its own write. Writing to the
    /// parent can run user code synchronously (a writability change reaches the stream pipelines),
    /// which may emit and flush frames of its own: those only join the queue, and the write loop
    /// already running sends them in order, so no frame is split or overtaken.
    private func emit(_ frame: YamuxFrame) {
        if frame.type == .data, frame.payload.readableBytes >= Self.zeroCopyPayloadSize {
            if self.gathering == nil {
                self.gathering = self.allocator.buffer(capacity: YamuxFrame.headerLength)
            }
            frame.encodeHeader(into: &self.gathering!)
            self.enqueueGathered()
            self.outboundQueue.append((frame.payload, nil))
            self.writeQueued()
            return
        }
        if self.gathering == nil {
            self.gathering = self.allocator.buffer(capacity: max(frame.encodedLength, 512))
        }
        frame.encode(into: &self.gathering!)
        if self.gathering!.readableBytes >= Self.outboundChunkSize {
            self.enqueueGathered()
            self.writeQueued()
        }
    }

    /// Moves the gathered frames (and the promise waiting on them) to the write queue.
    private func enqueueGathered() {
        let buffer = self.gathering
        let promise = self.gatheringPromise
        self.gathering = nil
        self.gatheringPromise = nil
        guard buffer != nil || promise != nil else { return }
        // An empty write still completes in order, after the writes before it.
        self.outboundQueue.append((buffer ?? ByteBuffer(), promise))
    }

    /// Writes the queue to the parent, unless a write is already in progress (it will continue).
    private func writeQueued() {
        guard !self.isWritingToParent else { return }
        guard let context = self.context else {
            while let (_, promise) = self.outboundQueue.popFirst() {
                promise?.fail(TransportError(.yamuxSessionClosed, "the yamux multiplexer is no longer in a pipeline"))
            }
            return
        }
        self.isWritingToParent = true
        while let (buffer, promise) = self.outboundQueue.popFirst() {
            self.hasUnflushedWrites = true
            self.unflushedBytes += buffer.readableBytes
            context.write(self.wrapOutboundOut(buffer), promise: promise)
            if self.unflushedBytes >= Self.burstFlushSize {
                self.unflushedBytes = 0
                self.hasUnflushedWrites = false
                context.flush()
            }
        }
        self.isWritingToParent = false
    }

    private func flushOutbound() {
        guard !self.isWritingToParent else {
            self.flushDeferred = true
            return
        }
        repeat {
            self.flushDeferred = false
            self.enqueueGathered()
            self.writeQueued()
            guard self.hasUnflushedWrites, let context = self.context else { return }
            self.hasUnflushedWrites = false
            self.unflushedBytes = 0
            self.isWritingToParent = true
            context.flush()
            self.isWritingToParent = false
        } while self.flushDeferred || self.gathering != nil || self.gatheringPromise != nil || !self.outboundQueue.isEmpty
    }
}

// MARK: - Called by stream channels

extension YamuxMultiplexer {
    func sendData(streamID: UInt32, from buffer: inout ByteBuffer) -> YamuxSessionStateMachine.SendDataResult {
        let result = self.stateMachine.sendData(streamID: streamID, from: &buffer)
        if case .frame(let frame) = result {
            self.emit(frame)
        }
        return result
    }

    /// Completes `promise` once everything emitted so far has been written to the parent.
    func completeWhenWritten(_ promise: EventLoopPromise<Void>) {
        if let pending = self.gatheringPromise {
            pending.futureResult.cascade(to: promise)
        } else {
            self.gatheringPromise = promise
        }
    }

    /// Sends FIN; returns whether the stream is now closed both ways.
    func closeOutput(streamID: UInt32, promise: EventLoopPromise<Void>?) -> Bool {
        let (frames, closed) = self.stateMachine.closeOutput(streamID: streamID)
        for frame in frames {
            self.emit(frame)
        }
        if let promise {
            if frames.isEmpty {
                promise.fail(ChannelError.outputClosed)
            } else {
                self.completeWhenWritten(promise)
            }
        }
        return closed
    }

    func resetStream(streamID: UInt32) {
        if let rst = self.stateMachine.resetStream(streamID: streamID) {
            self.emit(rst)
        }
    }

    func streamConsumed(streamID: UInt32, count: Int) {
        guard let eventLoop = self.eventLoop else { return }
        let frames = self.stateMachine.streamConsumed(streamID: streamID, count: count, now: eventLoop.now)
        if let update = frames.windowUpdate {
            self.emit(update)
        }
        if let ping = frames.ping {
            // Only a round-trip measurement: its answer may wait behind a window's worth of the
            // peer's data on a slow link, so it is not held to pingTimeout. A keep-alive or
            // ping() while it is outstanding starts the timeout (see keepAliveFired).
            self.emit(ping)
        }
    }

    /// The stream's current receive window (auto-tuning grows it), or `nil` once it is released.
    func receiveWindow(ofStream streamID: UInt32) -> Int? {
        self.stateMachine.receiveWindow(ofStream: streamID)
    }

    func streamActivated(streamID: UInt32) {
        if let syn = self.stateMachine.streamActivated(streamID: streamID) {
            self.emit(syn)
        }
    }

    func sendWindow(ofStream streamID: UInt32) -> Int {
        self.stateMachine.sendWindow(ofStream: streamID)
    }

    func scheduleReadComplete(for stream: YamuxStreamChannel) {
        guard !stream.awaitsReadComplete else { return }
        stream.awaitsReadComplete = true
        self.readCompleteQueue.append(stream)
    }

    /// A stream wrote or closed: flush now, unless a read burst is in progress (it flushes at its end).
    func childFlushed() {
        guard !self.flushesDeferred else { return }
        self.flushOutbound()
    }

    func childReleased(streamID: UInt32) {
        self.stateMachine.streamReleased(streamID: streamID)
        self.streams.removeValue(forKey: streamID)
    }
}
