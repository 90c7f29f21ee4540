import NIOCore

/// A `Sendable` handle on a ``YamuxMultiplexer`` for async code: opens streams and pings from any
/// task, hopping to the connection's event loop.
///
/// ```swift
/// let stream = try await opener.openStream { channel in
///     channel.eventLoop.makeCompletedFuture {
///         try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel)
///     }
/// }
/// try await stream.executeThenClose { inbound, outbound in
///     try await outbound.write(ByteBuffer(string: "hello"))
///     for try await reply in inbound { print(reply) }
/// }
/// ```
///
/// Get one from ``YamuxMultiplexer/streamOpener`` on the event loop.
public struct YamuxStreamOpener: Sendable {
    private let multiplexer: NIOLoopBound<YamuxMultiplexer>
    private let eventLoop: EventLoop

    init(multiplexer: YamuxMultiplexer, eventLoop: EventLoop) {
        self.multiplexer = NIOLoopBound(multiplexer, eventLoop: eventLoop)
        self.eventLoop = eventLoop
    }

    /// Opens a stream; see ``YamuxMultiplexer/openStream(initializer:)``.
    /// - Parameter initializer: runs on the event loop to set up the stream's pipeline and returns
    ///   what the caller gets, for example a `NIOAsyncChannel` wrapping the stream.
    /// - Returns: the initializer's value once the stream is open.
    /// - Throws: ``TransportError`` (`.yamuxTooManyStreams`, `.yamuxStreamBacklogFull`,
    ///   `.yamuxGoAwayReceived`, `.yamuxSessionClosed`, `.yamuxStreamIDsExhausted`) or the
    ///   initializer's error.
    public func openStream<Output: Sendable>(
        initializer: @escaping @Sendable (Channel) -> EventLoopFuture<Output>
    ) async throws -> Output {
        let multiplexer = self.multiplexer
        return try await self.eventLoop.flatSubmit {
            multiplexer.value.openStream(initializer: initializer)
        }.get()
    }

    /// Pings the peer; see ``YamuxMultiplexer/ping()``.
    /// - Returns: the round-trip time.
    /// - Throws: ``TransportError`` `.yamuxPingTimeout` or `.yamuxSessionClosed`.
    public func ping() async throws -> TimeAmount {
        let multiplexer = self.multiplexer
        return try await self.eventLoop.flatSubmit {
            multiplexer.value.ping()
        }.get()
    }
}

extension ChannelPipeline {
    /// The ``YamuxStreamOpener`` of the ``YamuxMultiplexer`` in this pipeline, from any thread.
    ///
    /// ```swift
    /// let opener = try await connection.pipeline.yamuxStreamOpener().get()
    /// ```
    /// - Returns: the opener; fails with `ChannelPipelineError.notFound` if the pipeline holds no
    ///   multiplexer.
    public func yamuxStreamOpener() -> EventLoopFuture<YamuxStreamOpener> {
        self.eventLoop.submit {
            try self.syncOperations.handler(type: YamuxMultiplexer.self).streamOpener
        }
    }
}
