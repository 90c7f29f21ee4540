import Foundation
import NIOCore

/// One yamux stream as a NIO `Channel` with its own pipeline, reading and writing `ByteBuffer`s.
///
/// Flow control is the stream's: the channel turns unwritable while it holds more unsent bytes than
/// the peer's window allows, and it grants window back to the peer only as its pipeline reads, so
/// a reader that stops (for example with `autoRead` off) stops the peer and buffers at most one
/// window. Writes never overtake the window: what does not fit waits for the peer's window update.
///
/// Closing:
/// - `close(mode: .output)` sends FIN after the queued writes (half-close).
/// - `close()` sends FIN after the queued writes, stops delivering reads, and completes once the
///   peer's FIN has arrived too (or after ``YamuxConfiguration/streamCloseTimeout``, with RST).
/// - ``YamuxStreamResetEvent`` resets the stream at once.
/// - A FIN from the peer fires `ChannelEvent.inputClosed` when `allowRemoteHalfClosure` is set;
///   otherwise it closes the channel as above.
/// - A RST from the peer fires a `.yamuxStreamReset` ``TransportError`` and closes the channel.
final class YamuxStreamChannel {
    private enum Lifecycle {
        /// The initializer runs; reads and writes are held.
        case initializing
        case active
        /// `close()` was called: queued writes drain, FIN goes out, the peer's FIN is awaited.
        case closing
        case closed
    }

    private enum PendingRead {
        case data(ByteBuffer)
        case endOfInput
    }

    private enum PendingWrite {
        case data(ByteBuffer, EventLoopPromise<Void>?)
        case fin(EventLoopPromise<Void>?)
    }

    /// The stream's yamux id.
    let streamID: UInt32
    let eventLoop: EventLoop
    let allocator: ByteBufferAllocator
    private let parentChannel: Channel
    private let multiplexer: YamuxMultiplexer
    private let configuration: YamuxConfiguration
    private var _pipeline: ChannelPipeline!
    private let closePromise: EventLoopPromise<Void>
    private let status = StreamChannelStatus()

    private var lifecycle = Lifecycle.initializing
    /// Received and not yet delivered; bounded by the receive window the session enforces.
    private var pendingReads = CircularBuffer<PendingRead>(initialCapacity: 4)
    /// Written and not yet sent; the channel turns unwritable above
    /// ``YamuxConfiguration/streamWriteBufferLimit`` or the peer's window, whichever is smaller.
    private var pendingWrites = MarkedCircularBuffer<PendingWrite>(initialCapacity: 4)
    private var queuedBytes = 0
    /// FIN requested (queued or sent).
    private var outputClosed = false
    /// The session reports both FINs exchanged.
    private var streamClosed = false
    private var autoRead = true
    private var allowRemoteHalfClosure = false
    private var unsatisfiedRead = false
    private var isDeliveringReads = false
    private var isDrainingWrites = false
    private var writable = true
    private var pendingClosePromise: EventLoopPromise<Void>?
    private var closeTimeout: Scheduled<Void>?
    private var closeError: Error?
    /// The receive window when the stream was released (the multiplexer forgets it then).
    private var releasedReceiveWindow = 0

    /// Whether the multiplexer will call ``parentReadComplete()`` for this stream.
    var awaitsReadComplete = false

    init(streamID: UInt32, parent: Channel, multiplexer: YamuxMultiplexer, configuration: YamuxConfiguration) {
        self.streamID = streamID
        self.parentChannel = parent
        self.eventLoop = parent.eventLoop
        self.allocator = parent.allocator
        self.multiplexer = multiplexer
        self.configuration = configuration
        self.closePromise = parent.eventLoop.makePromise()
        self._pipeline = ChannelPipeline(channel: self)
    }
}

// All mutable state is touched on `eventLoop` only: every `ChannelCore` entry point is invoked there
// by the pipeline, and the multiplexer calls in from the parent's pipeline on the same loop.
// `isActive` and `isWritable`, which any thread may read, live in a locked `StreamChannelStatus`.
extension YamuxStreamChannel: @unchecked Sendable {}

// MARK: - Channel

extension YamuxStreamChannel: Channel, ChannelCore {
    var closeFuture: EventLoopFuture<Void> { self.closePromise.futureResult }
    var pipeline: ChannelPipeline { self._pipeline }
    var localAddress: SocketAddress? { self.parentChannel.localAddress }
    var remoteAddress: SocketAddress? { self.status.reportedRemoteAddress ?? self.parentChannel.remoteAddress }
    var parent: Channel? { self.parentChannel }
    var isWritable: Bool { self.status.isWritable }
    var isActive: Bool { self.status.isActive }
    var _channelCore: ChannelCore { self }

    func setOption<Option: ChannelOption>(_ option: Option, value: Option.Value) -> EventLoopFuture<Void> {
        if self.eventLoop.inEventLoop {
            return self.eventLoop.makeCompletedFuture { try self.setOption0(option, value: value) }
        }
        return self.eventLoop.submit { try self.setOption0(option, value: value) }
    }

    func getOption<Option: ChannelOption>(_ option: Option) -> EventLoopFuture<Option.Value> {
        if self.eventLoop.inEventLoop {
            return self.eventLoop.makeCompletedFuture { try self.getOption0(option) }
        }
        return self.eventLoop.submit { try self.getOption0(option) }
    }

    var syncOptions: NIOSynchronousChannelOptions? { SynchronousOptions(channel: self) }

    private struct SynchronousOptions: NIOSynchronousChannelOptions {
        let channel: YamuxStreamChannel

        func setOption<Option: ChannelOption>(_ option: Option, value: Option.Value) throws {
            try self.channel.setOption0(option, value: value)
        }

        func getOption<Option: ChannelOption>(_ option: Option) throws -> Option.Value {
            try self.channel.getOption0(option)
        }
    }

    private func setOption0<Option: ChannelOption>(_ option: Option, value: Option.Value) throws {
        self.eventLoop.preconditionInEventLoop()
        switch option {
        case _ as ChannelOptions.Types.AutoReadOption:
            let enable = value as! Bool
            let wasEnabled = self.autoRead
            self.autoRead = enable
            if enable, !wasEnabled, self.lifecycle == .active {
                self.read0()
            }
        case _ as ChannelOptions.Types.AllowRemoteHalfClosureOption:
            self.allowRemoteHalfClosure = value as! Bool
        case _ as YamuxChannelOptions.Types.ReportedRemoteAddressOption:
            self.status.setReportedRemoteAddress(value as! SocketAddress?)
        default:
            throw ChannelError.operationUnsupported
        }
    }

    private func getOption0<Option: ChannelOption>(_ option: Option) throws -> Option.Value {
        self.eventLoop.preconditionInEventLoop()
        switch option {
        case _ as ChannelOptions.Types.AutoReadOption:
            return self.autoRead as! Option.Value
        case _ as ChannelOptions.Types.AllowRemoteHalfClosureOption:
            return self.allowRemoteHalfClosure as! Option.Value
        case _ as YamuxChannelOptions.Types.StreamIDOption:
            return self.streamID as! Option.Value
        case _ as YamuxChannelOptions.Types.ReportedRemoteAddressOption:
            return self.status.reportedRemoteAddress as! Option.Value
        case _ as YamuxChannelOptions.Types.ReceiveWindowOption:
            return (self.multiplexer.receiveWindow(ofStream: self.streamID) ?? self.releasedReceiveWindow) as! Option.Value
        default:
            throw ChannelError.operationUnsupported
        }
    }

    func localAddress0() throws -> SocketAddress {
        try self.parentChannel._channelCore.localAddress0()
    }

    func remoteAddress0() throws -> SocketAddress {
        if let reported = self.status.reportedRemoteAddress { return reported }
        return try self.parentChannel._channelCore.remoteAddress0()
    }

    func register0(promise: EventLoopPromise<Void>?) {
        promise?.fail(ChannelError.operationUnsupported)
    }

    func registerAlreadyConfigured0(promise: EventLoopPromise<Void>?) {
        promise?.fail(ChannelError.operationUnsupported)
    }

    func bind0(to: SocketAddress, promise: EventLoopPromise<Void>?) {
        promise?.fail(ChannelError.operationUnsupported)
    }

    func connect0(to: SocketAddress, promise: EventLoopPromise<Void>?) {
        promise?.fail(ChannelError.operationUnsupported)
    }

    func write0(_ data: NIOAny, promise: EventLoopPromise<Void>?) {
        switch self.lifecycle {
        case .initializing, .active:
            break
        case .closing, .closed:
            promise?.fail(ChannelError.ioOnClosedChannel)
            return
        }
        guard !self.outputClosed else {
            promise?.fail(ChannelError.outputClosed)
            return
        }
        // No write is ever refused for size: NIOAsyncChannel's writer hands writes to the event loop
        // without waiting for it, so even a writer that honours `isWritable` can run ahead of the
        // stream's writability. Refusing (or resetting) would lose the bytes of a correct writer.
        // What bounds the queue is writability (see `updateWritability`) and, for bulk async
        // writers, `HostStream.waitForWriterToCatchUp()`. A peer cannot grow it: what a stream
        // writes in answer to reads stops when the peer withholds window, because the stream then
        // turns unwritable and the answering reader stops reading.
        let buffer = self.unwrapData(data, as: ByteBuffer.self)
        self.queuedBytes += buffer.readableBytes
        self.pendingWrites.append(.data(buffer, promise))
        self.updateWritability()
    }

    func flush0() {
        self.pendingWrites.mark()
        switch self.lifecycle {
        case .active, .closing:
            self.drainWrites()
            self.multiplexer.childFlushed()
        case .initializing, .closed:
            break
        }
    }

    func read0() {
        switch self.lifecycle {
        case .initializing:
            self.unsatisfiedRead = true
        case .active:
            self.unsatisfiedRead = true
            if !self.pendingReads.isEmpty {
                self.deliverPendingReads()
                self.multiplexer.childFlushed()
            }
        case .closing, .closed:
            break
        }
    }

    func close0(error: Error, mode: CloseMode, promise: EventLoopPromise<Void>?) {
        switch mode {
        case .input:
            // Yamux has no way to tell the peer to stop sending short of a reset.
            promise?.fail(ChannelError.operationUnsupported)
        case .output:
            self.closeOutput(promise: promise)
        case .all:
            self.closeGracefully(promise: promise)
        }
    }

    func triggerUserOutboundEvent0(_ event: Any, promise: EventLoopPromise<Void>?) {
        guard event is YamuxStreamResetEvent else {
            promise?.fail(ChannelError.operationUnsupported)
            return
        }
        switch self.lifecycle {
        case .closed:
            promise?.fail(ChannelError.alreadyClosed)
        case .initializing, .active, .closing:
            self.resetLocally(error: nil)
            promise?.succeed(())
        }
    }

    func channelRead0(_ data: NIOAny) {
        // Reads that reached the end of the stream's pipeline unhandled are dropped, as on sockets.
    }

    func errorCaught0(error: Error) {
        // Errors that reached the end of the stream's pipeline unhandled are dropped, as on sockets.
    }
}

// MARK: - Driven by the multiplexer

extension YamuxStreamChannel {
    /// Runs the initializer, then activates the stream (sending the SYN for a stream this side
    /// opens) and completes `promise` with the initializer's result.
    func configure<Output: Sendable>(
        initializer: @escaping @Sendable (Channel) -> EventLoopFuture<Output>,
        promise: EventLoopPromise<Output>?
    ) {
        initializer(self).hop(to: self.eventLoop).assumeIsolated().whenComplete { result in
            switch result {
            case .success(let output):
                guard self.lifecycle == .initializing else {
                    promise?.fail(self.closeError ?? ChannelError.ioOnClosedChannel)
                    return
                }
                self.activate()
                promise?.succeed(output)
            case .failure(let error):
                promise?.fail(error)
                guard self.lifecycle == .initializing else { return }
                self.multiplexer.resetStream(streamID: self.streamID)
                self.finalize(error: error, notifyPipeline: false)
                self.multiplexer.childFlushed()
            }
        }
    }

    /// Applies what one received frame did to the stream.
    func receive(_ events: YamuxSessionStateMachine.StreamEvents) {
        if let data = events.data {
            switch self.lifecycle {
            case .initializing, .active:
                self.pendingReads.append(.data(data))
                self.multiplexer.scheduleReadComplete(for: self)
            case .closing, .closed:
                // Nobody reads any more: grant the window back so the peer can finish and send FIN.
                self.multiplexer.streamConsumed(streamID: self.streamID, count: data.readableBytes)
            }
        }
        if events.windowIncreased {
            self.drainWrites()
            self.updateWritability()
        }
        if events.reset {
            self.remoteReset()
            return
        }
        if events.remoteFinished {
            switch self.lifecycle {
            case .initializing, .active:
                self.pendingReads.append(.endOfInput)
                self.multiplexer.scheduleReadComplete(for: self)
            case .closing, .closed:
                break
            }
        }
        if events.closed {
            self.streamClosed = true
            self.finishIfDone()
        }
    }

    /// The peer broke the protocol on this stream; the session already sent RST.
    func fail(error: TransportError) {
        if self.lifecycle == .active {
            // What arrived before the violation was valid data.
            self.deliverPendingReadsIgnoringBackpressure()
        }
        self.finalize(error: error, notifyPipeline: true)
    }

    /// The parent's `channelReadComplete`: deliver what arrived if the pipeline asked for it.
    func parentReadComplete() {
        self.awaitsReadComplete = false
        guard self.lifecycle == .active, self.unsatisfiedRead, !self.pendingReads.isEmpty else { return }
        self.deliverPendingReads()
    }

    /// The parent's writability changed: data held back for it may go now.
    func parentWritabilityChanged() {
        self.drainWrites()
        self.multiplexer.childFlushed()
    }

    /// The session or its connection ended; the stream goes with it, without any frame.
    func sessionEnded(error: Error) {
        guard self.lifecycle != .closed else { return }
        if self.lifecycle == .active {
            self.deliverPendingReadsIgnoringBackpressure()
        }
        self.finalize(error: error, notifyPipeline: true)
    }
}

// MARK: - Internals

extension YamuxStreamChannel {
    private func activate() {
        self.lifecycle = .active
        self.multiplexer.streamActivated(streamID: self.streamID)
        self.status.setActive(true)
        self.pipeline.syncOperations.fireChannelActive()
        guard self.lifecycle == .active else { return }
        self.updateWritability()
        self.drainWrites()
        if self.autoRead {
            self.pipeline.syncOperations.read()
        } else if self.unsatisfiedRead, !self.pendingReads.isEmpty {
            self.deliverPendingReads()
        }
        self.multiplexer.childFlushed()
    }

    private func deliverPendingReads() {
        guard !self.isDeliveringReads else { return }
        self.isDeliveringReads = true
        self.unsatisfiedRead = false
        var consumed = 0
        while self.lifecycle == .active, let item = self.pendingReads.popFirst() {
            switch item {
            case .data(let buffer):
                consumed += buffer.readableBytes
                self.pipeline.syncOperations.fireChannelRead(NIOAny(buffer))
            case .endOfInput:
                self.endOfInput()
            }
        }
        self.isDeliveringReads = false
        if self.lifecycle == .active {
            self.pipeline.syncOperations.fireChannelReadComplete()
        }
        if consumed > 0 {
            self.multiplexer.streamConsumed(streamID: self.streamID, count: consumed)
        }
        self.finishIfDone()
        if self.lifecycle == .active, self.autoRead {
            self.pipeline.syncOperations.read()
        }
    }

    /// Hands over data that arrived before the stream ended, whether or not the pipeline asked.
    private func deliverPendingReadsIgnoringBackpressure() {
        var delivered = false
        while let item = self.pendingReads.popFirst() {
            if case .data(let buffer) = item {
                delivered = true
                self.pipeline.syncOperations.fireChannelRead(NIOAny(buffer))
            }
        }
        if delivered {
            self.pipeline.syncOperations.fireChannelReadComplete()
        }
    }

    private func endOfInput() {
        if self.allowRemoteHalfClosure {
            self.pipeline.syncOperations.fireUserInboundEventTriggered(ChannelEvent.inputClosed)
        } else {
            // As on a socket without half-closure: the peer's FIN closes the channel.
            self.closeGracefully(promise: nil)
        }
    }

    private func closeOutput(promise: EventLoopPromise<Void>?) {
        switch self.lifecycle {
        case .closed:
            promise?.fail(ChannelError.alreadyClosed)
        case .closing:
            promise?.fail(ChannelError.outputClosed)
        case .initializing, .active:
            guard !self.outputClosed else {
                promise?.fail(ChannelError.outputClosed)
                return
            }
            self.outputClosed = true
            self.pendingWrites.append(.fin(promise))
            self.flush0()
        }
    }

    private func closeGracefully(promise: EventLoopPromise<Void>?) {
        switch self.lifecycle {
        case .closed:
            promise?.fail(ChannelError.alreadyClosed)
        case .closing:
            if let promise {
                if let pending = self.pendingClosePromise {
                    pending.futureResult.cascade(to: promise)
                } else {
                    self.pendingClosePromise = promise
                }
            }
        case .initializing:
            // Never activated: the peer has seen nothing (outbound) or only our silence (inbound).
            self.pendingClosePromise = promise
            self.multiplexer.resetStream(streamID: self.streamID)
            self.finalize(error: nil, notifyPipeline: false)
            self.multiplexer.childFlushed()
        case .active:
            self.lifecycle = .closing
            self.pendingClosePromise = promise
            var discarded = 0
            while let item = self.pendingReads.popFirst() {
                if case .data(let buffer) = item { discarded += buffer.readableBytes }
            }
            if discarded > 0 {
                self.multiplexer.streamConsumed(streamID: self.streamID, count: discarded)
            }
            if !self.outputClosed {
                self.outputClosed = true
                self.pendingWrites.append(.fin(nil))
            }
            self.pendingWrites.mark()
            self.closeTimeout = self.eventLoop.assumeIsolated().scheduleTask(in: self.configuration.streamCloseTimeout) {
                self.closeTimedOut()
            }
            self.drainWrites()
            self.finishIfDone()
            self.multiplexer.childFlushed()
        }
    }

    private func closeTimedOut() {
        guard self.lifecycle == .closing else { return }
        let error = TransportError(
            .yamuxStreamCloseTimeout,
            "yamux stream \(self.streamID) did not finish closing within \(self.configuration.streamCloseTimeout); it was reset"
        )
        self.resetLocally(error: error)
    }

    private func resetLocally(error: Error?) {
        self.multiplexer.resetStream(streamID: self.streamID)
        self.finalize(error: error, notifyPipeline: error != nil)
        self.multiplexer.childFlushed()
    }

    private func remoteReset() {
        if self.lifecycle == .active {
            // The peer's data before its RST is still its data.
            self.deliverPendingReadsIgnoringBackpressure()
        }
        let error = TransportError(.yamuxStreamReset, "the peer reset yamux stream \(self.streamID)")
        self.finalize(error: error, notifyPipeline: true)
    }

    /// Sends queued, flushed writes as far as the peer's window allows, then the FIN if queued.
    private func drainWrites() {
        switch self.lifecycle {
        case .active, .closing:
            break
        case .initializing, .closed:
            return
        }
        guard !self.isDrainingWrites else { return }
        self.isDrainingWrites = true
        self.drainFlushedWrites()
        self.isDrainingWrites = false
        self.updateWritability()
        self.finishIfDone()
    }

    private func drainFlushedWrites() {
        // Writing to the parent can fire writability events into user code, which may close or reset
        // this stream: the loop re-checks the lifecycle after every call out. While the connection
        // itself is unwritable, data stays here (bounded by the window) rather than piling up in the
        // connection's buffer; the parent's writability event resumes it.
        writes: while self.lifecycle == .active || self.lifecycle == .closing, self.pendingWrites.hasMark,
            self.multiplexer.parentIsWritable, let write = self.pendingWrites.first
        {
            switch write {
            case .data(var buffer, let promise):
                if buffer.readableBytes == 0 {
                    _ = self.pendingWrites.popFirst()
                    promise?.succeed(())
                    continue
                }
                let before = buffer.readableBytes
                let result = self.multiplexer.sendData(streamID: self.streamID, from: &buffer)
                // A closed stream failed this write's promise along with the rest of the queue.
                guard self.lifecycle != .closed, !self.pendingWrites.isEmpty else { break writes }
                switch result {
                case .frame:
                    self.queuedBytes -= before - buffer.readableBytes
                    if buffer.readableBytes == 0 {
                        _ = self.pendingWrites.popFirst()
                        if let promise {
                            self.multiplexer.completeWhenWritten(promise)
                        }
                    } else {
                        self.pendingWrites[self.pendingWrites.startIndex] = .data(buffer, promise)
                    }
                case .windowExhausted:
                    break writes
                case .streamClosed:
                    self.failPendingWrites(error: self.closeError ?? ChannelError.outputClosed)
                    break writes
                }
            case .fin(let promise):
                _ = self.pendingWrites.popFirst()
                if self.multiplexer.closeOutput(streamID: self.streamID, promise: promise) {
                    self.streamClosed = true
                }
                if self.lifecycle == .active {
                    self.pipeline.syncOperations.fireUserInboundEventTriggered(ChannelEvent.outputClosed)
                }
            }
        }
    }

    private func failPendingWrites(error: Error) {
        while let write = self.pendingWrites.popFirst() {
            switch write {
            case .data(_, let promise), .fin(let promise):
                promise?.fail(error)
            }
        }
        self.queuedBytes = 0
    }

    private func updateWritability() {
        let window = self.multiplexer.sendWindow(ofStream: self.streamID)
        // A peer may grant a window far larger than the limit (go-yamux grows it to 16 MiB): the
        // smaller of the two decides, so a writer honouring writability never queues more than the
        // limit here.
        let highWatermark = min(window, self.configuration.streamWriteBufferLimit)
        let writable = self.multiplexer.parentIsWritable && self.queuedBytes <= highWatermark
        guard writable != self.writable else { return }
        self.writable = writable
        self.status.setWritable(writable)
        if self.lifecycle == .active {
            self.pipeline.syncOperations.fireChannelWritabilityChanged()
        }
    }

    /// Closes the channel once both FINs are exchanged and everything received was delivered (or,
    /// after `close()`, discarded).
    private func finishIfDone() {
        guard self.streamClosed, !self.isDeliveringReads, !self.isDrainingWrites else { return }
        switch self.lifecycle {
        case .closing:
            self.finalize(error: nil, notifyPipeline: false)
        case .active where self.pendingReads.isEmpty:
            self.finalize(error: nil, notifyPipeline: false)
        case .active, .initializing, .closed:
            break
        }
    }

    /// Tears the channel down exactly once: fails what is queued, tells the pipeline, releases the
    /// stream in the session, and completes the close future on the next loop tick.
    private func finalize(error: Error?, notifyPipeline: Bool) {
        let wasActive: Bool
        switch self.lifecycle {
        case .closed:
            return
        case .initializing:
            wasActive = false
        case .active, .closing:
            wasActive = true
        }
        self.lifecycle = .closed
        self.closeError = error
        self.closeTimeout?.cancel()
        self.closeTimeout = nil
        self.failPendingWrites(error: error ?? ChannelError.ioOnClosedChannel)
        self.pendingReads.removeAll()
        self.releasedReceiveWindow = self.multiplexer.receiveWindow(ofStream: self.streamID) ?? 0
        self.multiplexer.childReleased(streamID: self.streamID)
        self.status.setActive(false)
        if let error, notifyPipeline, wasActive {
            self.pipeline.syncOperations.fireErrorCaught(error)
        }
        if let promise = self.pendingClosePromise {
            self.pendingClosePromise = nil
            if let error {
                promise.fail(error)
            } else {
                promise.succeed(())
            }
        }
        if wasActive {
            self.pipeline.syncOperations.fireChannelInactive()
        }
        self.eventLoop.assumeIsolated().execute {
            self.removeHandlers(pipeline: self.pipeline)
            self.closePromise.succeed(())
        }
    }
}

/// `isActive` and `isWritable` of a stream channel, readable from any thread.
private final class StreamChannelStatus: @unchecked Sendable {
    // Sendable: every field is only read and written while holding `lock`.
    private let lock = NSLock()
    private var active = false
    private var writable = true
    private var reported: SocketAddress?

    var reportedRemoteAddress: SocketAddress? {
        self.lock.lock()
        defer { self.lock.unlock() }
        return self.reported
    }

    func setReportedRemoteAddress(_ value: SocketAddress?) {
        self.lock.lock()
        self.reported = value
        self.lock.unlock()
    }

    var isActive: Bool {
        self.lock.lock()
        defer { self.lock.unlock() }
        return self.active
    }

    var isWritable: Bool {
        self.lock.lock()
        defer { self.lock.unlock() }
        return self.writable
    }

    func setActive(_ value: Bool) {
        self.lock.lock()
        self.active = value
        self.lock.unlock()
    }

    func setWritable(_ value: Bool) {
        self.lock.lock()
        self.writable = value
        self.lock.unlock()
    }
}
