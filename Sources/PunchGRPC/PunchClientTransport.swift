// A grpc-swift 2 client transport that reaches a peer by PeerID through a PunchNode.

public import GRPCCore
public import GRPCNIOTransportHTTP2Posix
public import Punch
import NIOConcurrencyHelpers
import NIOCore

/// gRPC to one peer, by PeerID, over whatever connection the node keeps for it.
///
/// Each RPC asks the node for its connection to the peer (``PunchNode/connect(to:)``: connecting
/// directly or through a relay if there is none) and runs as an HTTP/2 stream of a gRPC
/// connection on one Punch stream of that connection. When the node's connection changes, for
/// example when a relayed connection is upgraded to a direct one, new RPCs open a gRPC connection
/// on the new one and the old gRPC connection shuts down gracefully: RPCs already running on it
/// finish there.
///
/// - An RPC the node cannot connect for fails with `unavailable`.
/// - An RPC whose connection is lost ends with `unavailable`, never a hang.
///
/// ```swift
/// try await withGRPCClient(transport: .punch(node: node, peer: serverID)) { client in
///     let reply = try await client.unary(request: ..., descriptor: ..., ...)
/// }
/// ```
public final class PunchClientTransport: ClientTransport {
    public typealias Bytes = GRPCNIOTransportBytes

    /// How the transport speaks gRPC over Punch.
    public struct Configuration: Sendable {
        /// The protocol negotiated on the Punch stream; the server must serve the same.
        public var protocolID: String
        /// HTTP/2 and gRPC settings of each gRPC connection.
        public var http2: HTTP2ClientTransport.WrappedChannel.Config
        /// Method configs (timeouts, retries) and retry throttling.
        public var serviceConfig: ServiceConfig

        public init(
            protocolID: String = PunchGRPC.protocolID,
            http2: HTTP2ClientTransport.WrappedChannel.Config = .defaults,
            serviceConfig: ServiceConfig = ServiceConfig()
        ) {
            self.protocolID = protocolID
            self.http2 = http2
            self.serviceConfig = serviceConfig
        }

        public static var defaults: Self { Self() }
    }

    /// The node the transport connects through.
    public let node: PunchNode
    /// The peer every RPC goes to.
    public let peer: PeerID
    public let configuration: Configuration
    public let retryThrottle: RetryThrottle?

    private typealias Subchannel = HTTP2ClientTransport.WrappedChannel

    private struct Current {
        var connection: ObjectIdentifier
        var subchannel: Subchannel
    }

    private struct State {
        var shutDown = false
        var connectStarted = false
        /// The gRPC connection new RPCs use, and the Punch connection it runs on.
        var current: Current?
        /// gRPC connections being opened, by the Punch connection they open on.
        var opening: [ObjectIdentifier: Task<Subchannel, any Error>] = [:]
        /// Every gRPC connection not yet closed (the current one and those shutting down).
        var live: [ObjectIdentifier: Subchannel] = [:]
    }

    private let state = NIOLockedValueBox(State())
    private let started: AsyncStream<Subchannel>
    private let startedContinuation: AsyncStream<Subchannel>.Continuation

    /// A transport for RPCs to `peer` through `node`. The node must be running when RPCs start.
    public init(node: PunchNode, peer: PeerID, configuration: Configuration = .defaults) {
        self.node = node
        self.peer = peer
        self.configuration = configuration
        self.retryThrottle = configuration.serviceConfig.retryThrottling.map { RetryThrottle(policy: $0) }
        (self.started, self.startedContinuation) = AsyncStream.makeStream()
    }

    public func config(forMethod descriptor: MethodDescriptor) -> MethodConfig? {
        configuration.serviceConfig.methodConfig(for: descriptor)
    }

    /// Runs the gRPC connections the transport opens, until ``beginGracefulShutdown()`` and the
    /// last of them has closed. `GRPCClient` calls it; call it once.
    public func connect() async throws {
        let first = state.withLockedValue { state in
            defer { state.connectStarted = true }
            return !state.connectStarted
        }
        guard first else {
            throw RPCError(code: .failedPrecondition, message: "connect() was already called on this transport")
        }
        await withDiscardingTaskGroup { group in
            for await subchannel in started {
                group.addTask {
                    // Returns when the gRPC connection has closed; its RPCs see any error.
                    try? await subchannel.connect()
                    self.closed(subchannel)
                }
            }
        }
    }

    /// Stops new RPCs (they fail with `unavailable`); running RPCs finish, then ``connect()``
    /// returns.
    public func beginGracefulShutdown() {
        let live = state.withLockedValue { state in
            state.shutDown = true
            state.current = nil
            return Array(state.live.values)
        }
        startedContinuation.finish()
        for subchannel in live {
            subchannel.beginGracefulShutdown()
        }
    }

    public func withStream<T: Sendable>(
        descriptor: MethodDescriptor,
        options: CallOptions,
        _ closure: (_ stream: RPCStream<Inbound, Outbound>, _ context: ClientContext) async throws -> T
    ) async throws -> T {
        let subchannel = try await subchannel()
        return try await subchannel.withStream(descriptor: descriptor, options: options, closure)
    }

    // MARK: - gRPC connections

    private enum Next {
        case use(Subchannel)
        case wait(Task<Subchannel, any Error>)
        case shutDown
    }

    /// The gRPC connection on the node's current connection to the peer, opened if needed.
    private func subchannel() async throws -> Subchannel {
        if state.withLockedValue({ $0.shutDown }) { throw Self.shutDownError }
        let connection: Connection
        do {
            connection = try await node.connect(to: peer)
        } catch {
            throw RPCError(code: .unavailable, message: "cannot reach \(peer): \(error)", cause: error)
        }
        let key = ObjectIdentifier(connection)
        let next: Next = state.withLockedValue { state in
            if state.shutDown { return .shutDown }
            if let current = state.current, current.connection == key { return .use(current.subchannel) }
            if let task = state.opening[key] { return .wait(task) }
            let task = Task { try await self.open(on: connection, key: key) }
            state.opening[key] = task
            return .wait(task)
        }
        switch next {
        case .use(let subchannel): return subchannel
        case .wait(let task): return try await task.value
        case .shutDown: throw Self.shutDownError
        }
    }

    private func open(on connection: Connection, key: ObjectIdentifier) async throws -> Subchannel {
        let protocolID = configuration.protocolID
        let channel = NIOLockedValueBox<(any Channel)?>(nil)
        let opened: Subchannel
        do {
            opened = try await Subchannel.wrapping(config: configuration.http2, serviceConfig: configuration.serviceConfig) { configure in
                try await connection.openChannel(protocol: protocolID) { streamChannel in
                    channel.withLockedValue { $0 = streamChannel }
                    do {
                        try PunchGRPC.prepare(streamChannel)
                    } catch {
                        return streamChannel.eventLoop.makeFailedFuture(error)
                    }
                    return configure(streamChannel)
                }
            }
        } catch {
            state.withLockedValue { _ = $0.opening.removeValue(forKey: key) }
            throw RPCError(
                code: .unavailable, message: "cannot open a gRPC stream (\(protocolID)) to \(peer): \(error)", cause: error)
        }
        let (accepted, previous): (Bool, Subchannel?) = state.withLockedValue { state in
            state.opening.removeValue(forKey: key)
            guard !state.shutDown else { return (false, nil) }
            let previous = state.current?.subchannel
            state.current = Current(connection: key, subchannel: opened)
            state.live[ObjectIdentifier(opened)] = opened
            return (true, previous)
        }
        guard accepted else {
            try? await channel.withLockedValue { $0 }?.close()
            throw Self.shutDownError
        }
        if case .terminated = startedContinuation.yield(opened) {
            // Shut down between the check above and here: nothing will run it.
            closed(opened)
            try? await channel.withLockedValue { $0 }?.close()
            throw Self.shutDownError
        }
        // RPCs already running on the previous connection finish there.
        previous?.beginGracefulShutdown()
        return opened
    }

    private func closed(_ subchannel: Subchannel) {
        state.withLockedValue { state in
            state.live.removeValue(forKey: ObjectIdentifier(subchannel))
            if state.current?.subchannel === subchannel { state.current = nil }
        }
    }

    private static var shutDownError: RPCError {
        RPCError(code: .unavailable, message: "the Punch client transport is shutting down")
    }
}

extension ClientTransport where Self == PunchClientTransport {
    /// A transport for RPCs to `peer`, reached by PeerID through `node`.
    public static func punch(
        node: PunchNode, peer: PeerID, configuration: PunchClientTransport.Configuration = .defaults
    ) -> Self {
        PunchClientTransport(node: node, peer: peer, configuration: configuration)
    }
}
