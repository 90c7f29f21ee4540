// A grpc-swift 2 server transport that serves on a PunchNode.

public import GRPCCore
public import GRPCNIOTransportHTTP2Posix
public import Punch
import NIOCore

/// Serves gRPC on a PunchNode: each peer that opens a ``PunchGRPC/protocolID`` stream gets a gRPC
/// connection (HTTP/2) on it, whatever path its Punch connection takes (direct or relayed).
///
/// Handlers learn who called: the request metadata carries the caller's PeerID under
/// ``PunchGRPC/peerIDMetadataKey`` (`metadata.punchPeerID`), as the Punch connection
/// authenticated it, and `context.remotePeer` reads `unix:/p2p/PEERID`
/// (`context.punchPeerID`).
///
/// ```swift
/// let server = GRPCServer(transport: PunchServerTransport(node: node), services: [MyService()])
/// try await server.serve()
/// ```
///
/// The transport registers its protocol with the node when ``listen(streamHandler:)`` starts and
/// removes it when listening ends.
public final class PunchServerTransport: ServerTransport {
    public typealias Bytes = GRPCNIOTransportBytes
    public typealias Config = HTTP2ServerTransport.Custom<PunchListenerFactory>.Config

    /// The node served on.
    public let node: PunchNode
    /// The protocol served.
    public let protocolID: String
    private let underlying: HTTP2ServerTransport.Custom<PunchListenerFactory>

    /// grpc-swift-nio-transport's server defaults with two changes for Punch:
    /// - `http2.targetWindowSize` 8 MiB (its client's default) instead of 64 KiB: a 64 KiB window
    ///   caps what a client sends to one round trip's worth, 1.6 MB/s across a 40 ms path;
    /// - `http2.maxConcurrentStreams` ``maximumConcurrentStreams`` instead of unlimited, so that
    ///   one peer cannot make the server run unboundedly many handlers.
    public static var defaultConfig: Config {
        var config = Config.defaults
        config.http2.targetWindowSize = 8 << 20
        config.http2.maxConcurrentStreams = maximumConcurrentStreams
        return config
    }

    /// The most RPCs one peer's gRPC connection may have open at once in ``defaultConfig``
    /// (HTTP/2 `SETTINGS_MAX_CONCURRENT_STREAMS`; further RPCs wait on the client's side).
    public static let maximumConcurrentStreams = 256

    /// A transport serving gRPC on `node` under `protocolID`.
    public init(node: PunchNode, protocolID: String = PunchGRPC.protocolID, config: Config = defaultConfig) {
        self.node = node
        self.protocolID = protocolID
        self.underlying = HTTP2ServerTransport.Custom(
            listenerFactory: PunchListenerFactory(node: node, protocolID: protocolID), config: config)
    }

    public func configure(context: GRPCServerContext) {
        underlying.configure(context: context)
    }

    public func listen(
        streamHandler: @escaping @Sendable (_ stream: RPCStream<Inbound, Outbound>, _ context: ServerContext) async -> Void
    ) async throws {
        try await underlying.listen { stream, context in
            guard let peer = context.punchPeerID else {
                // Every stream here comes from the listener below, which names its peer.
                await streamHandler(stream, context)
                return
            }
            let withPeer = stream.inbound.map { part -> RPCRequestPart<Bytes> in
                guard case .metadata(var metadata) = part else { return part }
                metadata.removeAllValues(forKey: PunchGRPC.peerIDMetadataKey)
                metadata.addString(peer.description, forKey: PunchGRPC.peerIDMetadataKey)
                return .metadata(metadata)
            }
            let rewritten = RPCStream(
                descriptor: stream.descriptor, inbound: RPCAsyncSequence(wrapping: withPeer), outbound: stream.outbound)
            await streamHandler(rewritten, context)
        }
    }

    public func beginGracefulShutdown() {
        underlying.beginGracefulShutdown()
    }
}

/// Hands grpc-swift-nio-transport the gRPC streams a PunchNode accepts, as if a listening socket
/// had accepted them. Used by ``PunchServerTransport``; not needed directly.
public struct PunchListenerFactory: HTTP2ServerTransport.ListenerFactory {
    let node: PunchNode
    let protocolID: String

    public var eventLoopGroup: any EventLoopGroup { node.host.eventLoopGroup }

    public func makeListeningChannel(
        listenerConfigurator: HTTP2ServerTransport.ListenerConfigurator,
        connectionConfigurator: HTTP2ServerTransport.ConnectionConfigurator
    ) async throws -> NIOAsyncChannel<HTTP2ServerTransport.ConnectionConfigurator.ConnectionChannel, Never> {
        let listener = StreamListenerChannel(eventLoop: eventLoopGroup.any())
        let accepted = try await listener.eventLoop.flatSubmit {
            listenerConfigurator.configure(channel: listener).flatMapThrowing {
                try listener.pipeline.syncOperations.addHandler(listener.configuredStreams)
                let accepted = try NIOAsyncChannel<HTTP2ServerTransport.ConnectionConfigurator.ConnectionChannel, Never>(
                    wrappingChannelSynchronously: listener)
                listener.activate()
                return accepted
            }
        }.get()

        let node = self.node
        let protocolID = self.protocolID
        node.setChannelHandler(for: protocolID) { channel, connection in
            // On the stream's event loop, before any byte of it is read: gRPC's pipeline first.
            do {
                try PunchGRPC.prepare(channel)
                let path = PunchGRPC.remotePeerPath(connection.remotePeerID)
                try channel.syncOptions?.setOption(
                    YamuxChannelOptions.reportedRemoteAddress, value: try NIOCore.SocketAddress(unixDomainSocketPath: path))
                return connectionConfigurator.configure(channel: channel, tls: .none).flatMap { configured in
                    listener.accept(channel, configured: configured)
                }
            } catch {
                return channel.eventLoop.makeFailedFuture(error)
            }
        }
        listener.closeFuture.whenComplete { _ in
            node.host.removeStreamHandler(for: protocolID)
        }
        return accepted
    }
}
