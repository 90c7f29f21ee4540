import Logging
import NIOConcurrencyHelpers
import NIOCore

/// Handles a stream the peer opened for a protocol this host registered.
///
/// The handler owns the stream: use `stream.channel.executeThenClose`. The host closes the stream
/// when the handler returns, if it has not.
public typealias StreamHandler = @Sendable (HostStream) async throws -> Void

/// Handles a stream the peer opened, at the NIO level: called on the stream's event loop with the
/// negotiated stream channel (half-closure on) and its connection, to set up the stream's
/// pipeline. The stream is reset if the returned future fails. For protocols that hand the raw
/// stream on, such as a relay's circuits.
public typealias ChannelStreamHandler = @Sendable (Channel, Connection) -> EventLoopFuture<Void>

/// The protocol table of a host, and stream negotiation in both directions.
final class StreamRouter: Sendable {
    private enum Handler {
        case task(StreamHandler)
        case channel(ChannelStreamHandler)
    }

    private let handlers = NIOLockedValueBox([String: Handler]())
    let multistream: MultistreamSelectStateMachine.Configuration
    let negotiationTimeout: TimeAmount
    /// ``HostConfiguration/maximumIdentifyMessageLength``, for identify requests on connections.
    let maximumIdentifyMessageLength: Int
    let logger: Logger

    init(
        multistream: MultistreamSelectStateMachine.Configuration, negotiationTimeout: TimeAmount,
        maximumIdentifyMessageLength: Int, logger: Logger
    ) {
        self.multistream = multistream
        self.negotiationTimeout = negotiationTimeout
        self.maximumIdentifyMessageLength = maximumIdentifyMessageLength
        self.logger = logger
    }

    func register(_ protocolID: String, _ handler: @escaping StreamHandler) {
        handlers.withLockedValue { $0[protocolID] = .task(handler) }
    }

    func register(_ protocolID: String, channelHandler: @escaping ChannelStreamHandler) {
        handlers.withLockedValue { $0[protocolID] = .channel(channelHandler) }
    }

    func unregister(_ protocolID: String) {
        handlers.withLockedValue { _ = $0.removeValue(forKey: protocolID) }
    }

    var protocols: [String] { handlers.withLockedValue { $0.keys.sorted() } }

    /// Turns on `allowRemoteHalfClosure`, so the peer's FIN ends only the inbound side.
    static func enableHalfClosure(_ stream: Channel) throws {
        guard let options = stream.syncOptions else {
            throw TransportError(.hostUpgradeFailed, "the stream channel has no synchronous options")
        }
        try options.setOption(ChannelOptions.allowRemoteHalfClosure, value: true)
    }

    static func asyncChannel(_ channel: Channel) throws -> NIOAsyncChannel<ByteBuffer, ByteBuffer> {
        try NIOAsyncChannel(
            wrappingChannelSynchronously: channel,
            configuration: .init(isOutboundHalfClosureEnabled: true))
    }

    /// Sets up a new outbound stream (still initializing) to propose `protocols`, then run
    /// `configure` with the chosen one. Returns the future of `configure`'s output.
    func negotiateOutbound<Output: Sendable>(
        _ stream: Channel,
        proposing protocols: [String],
        configure: @escaping (String, Channel) -> EventLoopFuture<Output>
    ) throws -> EventLoopFuture<Output> {
        try Self.enableHalfClosure(stream)
        let negotiation = MultistreamSelectHandler<Output>(
            role: .dialer(protocols), configuration: multistream, timeout: negotiationTimeout,
            eventLoop: stream.eventLoop, configurator: configure)
        try stream.pipeline.syncOperations.addHandler(negotiation)
        return negotiation.negotiationResult
    }

    func negotiateOutbound(
        _ stream: Channel, proposing protocols: [String]
    ) throws -> EventLoopFuture<(String, NIOAsyncChannel<ByteBuffer, ByteBuffer>)> {
        try negotiateOutbound(stream, proposing: protocols) { chosen, channel in
            channel.eventLoop.makeCompletedFuture { (chosen, try Self.asyncChannel(channel)) }
        }
    }

    /// Sets up a stream the peer opened: negotiate one of our protocols, then run its handler in a
    /// task. Called on the stream's event loop by the multiplexer.
    func acceptInbound(_ stream: Channel, connection: Connection) -> EventLoopFuture<Void> {
        stream.eventLoop.makeCompletedFuture {
            try Self.enableHalfClosure(stream)
            let supported = Set(handlers.withLockedValue { $0.keys })
            let negotiation = MultistreamSelectHandler<(String, NIOAsyncChannel<ByteBuffer, ByteBuffer>?)>(
                role: .listener(supported), configuration: multistream, timeout: negotiationTimeout,
                eventLoop: stream.eventLoop
            ) { chosen, channel in
                switch self.handlers.withLockedValue({ $0[chosen] }) {
                case .channel(let handler):
                    return handler(channel, connection).map { (chosen, nil) }
                case .task, .none:
                    return channel.eventLoop.makeCompletedFuture { (chosen, try Self.asyncChannel(channel)) }
                }
            }
            try stream.pipeline.syncOperations.addHandler(negotiation)
            let logger = self.logger
            negotiation.negotiationResult.whenComplete { result in
                switch result {
                case .success((_, nil)):
                    // A channel handler took the stream.
                    break
                case .success(let (chosen, asyncChannel?)):
                    guard case .task(let handler) = self.handlers.withLockedValue({ $0[chosen] }) else {
                        stream.close(promise: nil)
                        return
                    }
                    let hostStream = HostStream(protocolID: chosen, connection: connection, channel: asyncChannel)
                    Task {
                        do {
                            try await handler(hostStream)
                        } catch {
                            logger.debug("stream handler failed", metadata: ["protocol": "\(chosen)", "error": "\(error)"])
                        }
                        stream.close(promise: nil)
                    }
                case .failure(let error):
                    logger.debug("inbound stream negotiation failed", metadata: ["error": "\(error)"])
                }
            }
        }
    }
}
