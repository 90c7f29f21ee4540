// The "listening socket" of PunchServerTransport: a channel that is never bound, whose reads are the
// Punch streams that negotiated the gRPC protocol.
//
// grpc-swift-nio-transport's server takes connections from a listening channel: its quiescing
// handler collects each accepted child `Channel` (to tell it to shut down gracefully later), and
// its accept loop reads `ConnectionChannel`s. A Punch stream is accepted by the node's protocol
// router, not by a socket, so this channel stands in: `accept` fires the stream's channel through
// the quiescing handler, and `ConfiguredStreams` turns it into the `ConnectionChannel` that was
// configured for it.

import GRPCNIOTransportHTTP2Posix
import NIOConcurrencyHelpers
import NIOCore

final class StreamListenerChannel: Channel, ChannelCore, @unchecked Sendable {
    // Sendable: `pipeline` and `configuredStreams` are used on `eventLoop` only; `active` and
    // `closed` are read and written on it too, and read elsewhere through the lock.
    let eventLoop: any EventLoop
    let allocator = ByteBufferAllocator()
    let configuredStreams = ConfiguredStreams()
    private let closePromise: EventLoopPromise<Void>
    private var _pipeline: ChannelPipeline!
    private let status = NIOLockedValueBox((active: false, closed: false))

    init(eventLoop: any EventLoop) {
        self.eventLoop = eventLoop
        self.closePromise = eventLoop.makePromise()
        self._pipeline = ChannelPipeline(channel: self)
    }

    var closeFuture: EventLoopFuture<Void> { closePromise.futureResult }
    var pipeline: ChannelPipeline { _pipeline }
    var localAddress: NIOCore.SocketAddress? { nil }
    var remoteAddress: NIOCore.SocketAddress? { nil }
    var parent: (any Channel)? { nil }
    var isWritable: Bool { false }
    var isActive: Bool { status.withLockedValue { $0.active } }
    var _channelCore: any ChannelCore { self }

    func setOption<Option: ChannelOption>(_ option: Option, value: Option.Value) -> EventLoopFuture<Void> {
        eventLoop.makeFailedFuture(ChannelError.operationUnsupported)
    }

    func getOption<Option: ChannelOption>(_ option: Option) -> EventLoopFuture<Option.Value> {
        if option is ChannelOptions.Types.AutoReadOption { return eventLoop.makeSucceededFuture(true as! Option.Value) }
        return eventLoop.makeFailedFuture(ChannelError.operationUnsupported)
    }

    /// Registers and activates the channel (on `eventLoop`, after its handlers are added).
    func activate() {
        eventLoop.preconditionInEventLoop()
        status.withLockedValue { $0.active = true }
        pipeline.syncOperations.fireChannelRegistered()
        pipeline.syncOperations.fireChannelActive()
    }

    /// Hands an accepted gRPC stream, its gRPC pipeline configured, to the server. Fails (and the
    /// caller's stream closes) once the listener has closed.
    func accept(
        _ stream: any Channel, configured: HTTP2ServerTransport.ConnectionConfigurator.ConnectionChannel
    ) -> EventLoopFuture<Void> {
        eventLoop.submit {
            guard self.status.withLockedValue({ $0.active && !$0.closed }) else {
                throw ChannelError.ioOnClosedChannel
            }
            self.configuredStreams.pending[ObjectIdentifier(stream)] = configured
            self.pipeline.syncOperations.fireChannelRead(NIOAny(stream))
            // NIOAsyncChannel hands reads on at the end of a read burst.
            self.pipeline.syncOperations.fireChannelReadComplete()
        }
    }

    // MARK: ChannelCore

    func localAddress0() throws -> NIOCore.SocketAddress { throw ChannelError.operationUnsupported }
    func remoteAddress0() throws -> NIOCore.SocketAddress { throw ChannelError.operationUnsupported }
    func register0(promise: EventLoopPromise<Void>?) { promise?.succeed(()) }
    func registerAlreadyConfigured0(promise: EventLoopPromise<Void>?) { promise?.succeed(()) }
    func bind0(to: NIOCore.SocketAddress, promise: EventLoopPromise<Void>?) { promise?.fail(ChannelError.operationUnsupported) }
    func connect0(to: NIOCore.SocketAddress, promise: EventLoopPromise<Void>?) { promise?.fail(ChannelError.operationUnsupported) }
    func write0(_ data: NIOAny, promise: EventLoopPromise<Void>?) { promise?.fail(ChannelError.operationUnsupported) }
    func flush0() {}
    func read0() {}
    func triggerUserOutboundEvent0(_ event: Any, promise: EventLoopPromise<Void>?) {
        promise?.fail(ChannelError.operationUnsupported)
    }
    func channelRead0(_ data: NIOAny) {}
    func errorCaught0(error: any Error) {}

    func close0(error: any Error, mode: CloseMode, promise: EventLoopPromise<Void>?) {
        guard mode == .all else {
            promise?.fail(ChannelError.operationUnsupported)
            return
        }
        let wasActive: Bool? = status.withLockedValue { status in
            guard !status.closed else { return nil }
            defer { status = (active: false, closed: true) }
            return status.active
        }
        guard let wasActive else {
            promise?.fail(ChannelError.alreadyClosed)
            return
        }
        // Streams fired but not yet read on cannot be left: the pipeline goes now.
        configuredStreams.pending.removeAll()
        if wasActive {
            pipeline.syncOperations.fireChannelInactive()
            pipeline.syncOperations.fireChannelUnregistered()
        }
        eventLoop.assumeIsolated().execute {
            self.removeHandlers(pipeline: self.pipeline)
            self.closePromise.succeed(())
            promise?.succeed(())
        }
    }
}

/// Turns each accepted stream `Channel` into the `ConnectionChannel` configured for it, after
/// grpc-swift-nio-transport's quiescing handler has seen the `Channel`.
final class ConfiguredStreams: ChannelInboundHandler, @unchecked Sendable {
    // Sendable: used on the listener's event loop only.
    typealias InboundIn = any Channel
    typealias InboundOut = HTTP2ServerTransport.ConnectionConfigurator.ConnectionChannel

    var pending: [ObjectIdentifier: HTTP2ServerTransport.ConnectionConfigurator.ConnectionChannel] = [:]

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let stream = unwrapInboundIn(data)
        guard let configured = pending.removeValue(forKey: ObjectIdentifier(stream)) else { return }
        context.fireChannelRead(wrapInboundOut(configured))
    }
}
