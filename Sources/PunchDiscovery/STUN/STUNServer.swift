import Logging
import NIOCore
import NIOPosix
import PunchWire

/// A STUN server (RFC 8489 Binding) and, given a second IP address, an RFC 5780 NAT behaviour
/// discovery server: it then listens on both addresses and on two ports of each, and honours
/// CHANGE-REQUEST by answering from the socket asked for.
///
/// Answers go only to a request's source address, at a bounded rate per source IP and in all;
/// malformed datagrams are dropped unanswered and counted (see ``STUNServerStateMachine``).
///
/// ```swift
/// let server = try await STUNServer.start(STUNServerConfiguration(listen: try IPEndpoint("0.0.0.0:3478")))
/// // ...
/// try await server.close()
/// ```
public final class STUNServer: Sendable {
    /// How many times a free pair of consecutive ports is looked for when RFC 5780 mode is
    /// asked to listen on port 0.
    public static let maximumPortPairAttempts = 16

    /// The configuration, with ``STUNServerConfiguration/listen`` as actually bound.
    public let configuration: STUNServerConfiguration
    private let sockets: [(STUNServerStateMachine.Socket, any Channel)]
    private let tcpListener: (any Channel)?
    private let core: NIOLoopBound<STUNServerCore>
    private let eventLoop: any EventLoop

    private init(
        configuration: STUNServerConfiguration, sockets: [(STUNServerStateMachine.Socket, any Channel)], tcpListener: (any Channel)?,
        core: NIOLoopBound<STUNServerCore>, eventLoop: any EventLoop
    ) {
        self.configuration = configuration
        self.sockets = sockets
        self.tcpListener = tcpListener
        self.core = core
        self.eventLoop = eventLoop
    }

    /// The addresses the server listens on: one, or four in RFC 5780 mode (primary first).
    public var localAddresses: [IPEndpoint] {
        sockets.compactMap { $0.1.localAddress.flatMap(IPEndpoint.init) }
    }

    /// Binds the sockets and starts answering.
    /// - Parameters:
    ///   - configuration: addresses, limits, SOFTWARE.
    ///   - group: the event loops; all sockets of one server share one loop.
    ///   - logger: where the server logs (`.debug` for drops).
    /// - Returns: the running server.
    /// - Throws: ``DiscoveryError`` `.invalidConfiguration` or `.stunServerBindFailed`.
    public static func start(
        _ configuration: STUNServerConfiguration,
        group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        logger: Logger = Logger(label: "punch.stun.server")
    ) async throws -> STUNServer {
        try configuration.validate()
        let eventLoop = group.next()
        // Port 0 with RFC 5780 or TCP needs more than one free port of the same number: retry.
        let attempts = (configuration.isRFC5780 || configuration.tcp) && configuration.listen.port == 0 ? maximumPortPairAttempts : 1
        var lastError: (any Error)?
        for _ in 0..<attempts {
            do {
                return try await bindAll(configuration, eventLoop: eventLoop, logger: logger)
            } catch {
                lastError = error
            }
        }
        throw DiscoveryError(.stunServerBindFailed, "cannot listen on \(configuration.listen)\(configuration.alternateAddress.map { " and \($0)" } ?? ""): \(lastError.map { "\($0)" } ?? "unknown error")")
    }

    private static func bindAll(_ requested: STUNServerConfiguration, eventLoop: any EventLoop, logger: Logger) async throws -> STUNServer {
        let core = try await eventLoop.submit { NIOLoopBound(STUNServerCore(), eventLoop: eventLoop) }.get()
        var sockets: [(STUNServerStateMachine.Socket, any Channel)] = []
        var tcpListener: (any Channel)?
        do {
            let primary = try await bind(requested.listen, socket: .primary, core: core, eventLoop: eventLoop, logger: logger)
            sockets.append((.primary, primary))
            guard let bound = primary.localAddress.flatMap(IPEndpoint.init) else {
                throw DiscoveryError(.stunServerBindFailed, "the primary socket has no IP address")
            }
            var configuration = requested
            configuration.listen = bound
            if let alternate = configuration.alternateAddress {
                for socket in STUNServerStateMachine.Socket.all where socket != .primary {
                    let endpoint = IPEndpoint(
                        address: socket.alternateAddress ? alternate : bound.address,
                        port: socket.alternatePort ? bound.port + 1 : bound.port)
                    sockets.append((socket, try await bind(endpoint, socket: socket, core: core, eventLoop: eventLoop, logger: logger)))
                }
            }
            if configuration.tcp {
                tcpListener = try await bindTCP(bound, configuration: configuration, core: core, eventLoop: eventLoop, logger: logger)
            }
            let channels = sockets
            let boundConfiguration = configuration
            try await eventLoop.submit {
                core.value.machine = STUNServerStateMachine(configuration: boundConfiguration, primary: bound, now: eventLoop.now)
                for (socket, channel) in channels { core.value.channels[socket] = channel }
            }.get()
            logger.debug("STUN server listening", metadata: ["addresses": "\(channels.compactMap { $0.1.localAddress })"])
            return STUNServer(configuration: boundConfiguration, sockets: sockets, tcpListener: tcpListener, core: core, eventLoop: eventLoop)
        } catch {
            for (_, channel) in sockets { try? await channel.close() }
            try? await tcpListener?.close()
            throw error
        }
    }

    /// The STUN-over-TCP listener (RFC 8489 §6.2.2) on the primary address and port: each
    /// connection's requests go to the same state machine (and rate limits) as UDP ones.
    private static func bindTCP(
        _ endpoint: IPEndpoint, configuration: STUNServerConfiguration, core: NIOLoopBound<STUNServerCore>, eventLoop: any EventLoop, logger: Logger
    ) async throws -> any Channel {
        try await ServerBootstrap(group: eventLoop)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let core = core.value
                    guard core.tcpConnections < configuration.maximumTCPConnections else {
                        channel.close(promise: nil)
                        return
                    }
                    core.tcpConnections += 1
                    // Child channels share the server's event loop, which owns `core`.
                    channel.closeFuture.assumeIsolated().whenComplete { _ in core.tcpConnections -= 1 }
                    try channel.pipeline.syncOperations.addHandler(IdleStateHandler(readTimeout: configuration.tcpIdleTimeout))
                    try channel.pipeline.syncOperations.addHandler(
                        STUNServerTCPHandler(core: core, maximumMessageLength: configuration.maximumMessageLength, logger: logger))
                }
            }
            .bind(to: try endpoint.socketAddress()).get()
    }

    private static func bind(
        _ endpoint: IPEndpoint, socket: STUNServerStateMachine.Socket, core: NIOLoopBound<STUNServerCore>, eventLoop: any EventLoop, logger: Logger
    ) async throws -> any Channel {
        try await DatagramBootstrap(group: eventLoop)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(STUNServerHandler(socket: socket, core: core.value, logger: logger))
                }
            }
            .bind(to: try endpoint.socketAddress()).get()
    }

    /// Counters of what the server answered and dropped.
    public func statistics() async throws -> STUNServerStateMachine.Statistics {
        let core = self.core
        return try await eventLoop.submit { core.value.machine?.statistics ?? .init() }.get()
    }

    /// The STUN-over-TCP address (the primary address and port), or `nil` without TCP.
    public var tcpAddress: IPEndpoint? { tcpListener?.localAddress.flatMap(IPEndpoint.init) }

    /// Stops answering and closes every socket (TCP connections in progress included).
    public func close() async throws {
        for (_, channel) in sockets { try? await channel.close() }
        try? await tcpListener?.close()
    }
}

/// The state the sockets of a server share; bound to the server's event loop.
final class STUNServerCore {
    var machine: STUNServerStateMachine?
    var channels: [STUNServerStateMachine.Socket: any Channel] = [:]
    /// TCP connections open now (bounded by ``STUNServerConfiguration/maximumTCPConnections``).
    var tcpConnections = 0
}

/// Frames STUN messages on one TCP connection by their header's length (RFC 8489 §6.2.2) and
/// answers them on the same connection. Anything that is not STUN, or a message over the
/// maximum length, closes the connection; a response the state machine would send from another
/// socket (CHANGE-REQUEST) cannot travel over this connection and closes it too.
final class STUNServerTCPHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let core: STUNServerCore
    private let maximumMessageLength: Int
    private let logger: Logger
    private var buffer = ByteBuffer()

    init(core: STUNServerCore, maximumMessageLength: Int, logger: Logger) {
        self.core = core
        self.maximumMessageLength = maximumMessageLength
        self.logger = logger
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var bytes = unwrapInboundIn(data)
        buffer.writeBuffer(&bytes)
        while buffer.readableBytes >= STUNMessage.headerLength {
            guard let first = buffer.getInteger(at: buffer.readerIndex, as: UInt8.self), first & 0xC0 == 0,
                let length = buffer.getInteger(at: buffer.readerIndex + 2, as: UInt16.self),
                STUNMessage.headerLength + Int(length) <= maximumMessageLength
            else {
                logger.trace("STUN over TCP: not STUN or too long; closing", metadata: ["source": "\(context.channel.remoteAddress.map { "\($0)" } ?? "?")"])
                core.machine?.countMalformedTCP()
                context.close(promise: nil)
                return
            }
            let total = STUNMessage.headerLength + Int(length)
            guard buffer.readableBytes >= total else { return }
            let message = buffer.readBytes(length: total)!
            guard core.machine != nil, let source = context.channel.remoteAddress.flatMap(IPEndpoint.init) else {
                context.close(promise: nil)
                return
            }
            switch core.machine!.receive(message, from: source, on: .primary, now: context.eventLoop.now) {
            case .drop:
                continue
            case .respond(let response, let from, _):
                guard from == .primary else {
                    context.close(promise: nil)
                    return
                }
                context.writeAndFlush(wrapOutboundOut(context.channel.allocator.buffer(bytes: response)), promise: nil)
            }
        }
        if buffer.readableBytes == 0 { buffer.clear() }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is IdleStateHandler.IdleStateEvent { context.close(promise: nil) } else { context.fireUserInboundEventTriggered(event) }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}

/// Feeds one socket's datagrams to the shared state machine and sends its answers.
final class STUNServerHandler: ChannelInboundHandler {
    typealias InboundIn = AddressedEnvelope<ByteBuffer>
    typealias OutboundOut = AddressedEnvelope<ByteBuffer>

    private let socket: STUNServerStateMachine.Socket
    private let core: STUNServerCore
    private let logger: Logger

    init(socket: STUNServerStateMachine.Socket, core: STUNServerCore, logger: Logger) {
        self.socket = socket
        self.core = core
        self.logger = logger
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let envelope = unwrapInboundIn(data)
        // Not started yet (the other sockets are still binding), or no IP source: ignore.
        guard core.machine != nil, let source = IPEndpoint(envelope.remoteAddress) else { return }
        let action = core.machine!.receive(Array(envelope.data.readableBytesView), from: source, on: socket, now: context.eventLoop.now)
        switch action {
        case .drop:
            logger.trace("STUN server dropped a datagram", metadata: ["source": "\(source)"])
        case .respond(let bytes, let from, _):
            // The state machine answers only the request's source, so its address is reused as is.
            guard let channel = core.channels[from] else { return }
            channel.writeAndFlush(AddressedEnvelope(remoteAddress: envelope.remoteAddress, data: channel.allocator.buffer(bytes: bytes)), promise: nil)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // A UDP socket reports ICMP errors of earlier sends here; they concern one client only.
        logger.debug("STUN server socket error", metadata: ["error": "\(error)"])
    }
}
