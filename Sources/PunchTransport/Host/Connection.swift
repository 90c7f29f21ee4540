import NIOConcurrencyHelpers
import NIOCore
import PunchCrypto
import PunchWire

/// A secure, multiplexed connection to one peer: Noise over TCP, with yamux streams.
///
/// Open streams with ``openStream(protocol:)``; ``ping()`` and ``identify()`` run the standard
/// libp2p protocols. Thread-safe.
public final class Connection: Sendable, Hashable, CustomStringConvertible {
    /// Which side dialed.
    public let direction: ConnectionDirection
    /// Our end of the TCP connection.
    public let localAddress: Multiaddr?
    /// The peer's end of the TCP connection (for an inbound connection behind NAT: its public
    /// mapping). This is what identify reports to the peer as its observed address.
    public let remoteAddress: Multiaddr?
    /// The TCP channel (for a relayed connection: the circuit's stream channel on the connection
    /// to the relay); the pipeline ends in the yamux multiplexer.
    public let channel: Channel
    /// Whether the bytes go straight to the peer or through a relay's circuit.
    public let path: ConnectionPath
    /// Whether this side ran the Noise handshake as initiator (and yamux as client): the dialer,
    /// except in a hole punch, where DCUtR decides.
    public let isSecurityInitiator: Bool
    /// The bytes carried so far, both ways (Noise frames and yamux headers included).
    public let bytes = ByteCounter()
    /// When the connection's upgrade began (it is handed out only after the upgrade).
    public let created = ContinuousClock.now

    private struct State {
        var remotePeerID: PeerID?
        var remotePublicKey: PublicKey?
        var opener: YamuxStreamOpener?
        var identify: Task<IdentifyInfo, Error>?
        var closeError: TransportError?
        var openStreams = 0
        /// When the last stream closed (or the connection came up without streams).
        var idleSince: NIODeadline? = .now()
        /// A ``PunchHost`` watches this relayed connection to close it once idle.
        var reaping = false
    }

    private let state = NIOLockedValueBox(State())
    /// How streams are negotiated and handed to handlers; set by the ``PunchHost``.
    let streamRouter: StreamRouter

    init(channel: Channel, direction: ConnectionDirection, router: StreamRouter, securityInitiator: Bool? = nil) {
        self.channel = channel
        self.direction = direction
        self.isSecurityInitiator = securityInitiator ?? (direction == .outbound)
        self.path = .direct
        self.localAddress = channel.localAddress.flatMap(Multiaddr.init(tcp:))
        self.remoteAddress = channel.remoteAddress.flatMap(Multiaddr.init(tcp:))
        self.streamRouter = router
    }

    /// A connection over a relay's circuit: `remoteAddress` is the circuit address
    /// (`…/p2p/RELAY/p2p-circuit[/p2p/PEER]`).
    init(circuit channel: Channel, direction: ConnectionDirection, remoteAddress: Multiaddr?, router: StreamRouter) {
        self.channel = channel
        self.direction = direction
        self.isSecurityInitiator = direction == .outbound
        self.path = .relayed
        self.localAddress = nil
        self.remoteAddress = remoteAddress
        self.streamRouter = router
    }

    /// The peer's PeerID, proven by the Noise handshake.
    public var remotePeerID: PeerID {
        guard let peer = state.withLockedValue({ $0.remotePeerID }) else {
            preconditionFailure("a Connection is handed out only after the Noise handshake")
        }
        return peer
    }

    /// The peer's identity key, from the Noise handshake.
    public var remotePublicKey: PublicKey {
        state.withLockedValue { $0.remotePublicKey! }
    }

    /// Whether the connection is still open.
    public var isActive: Bool { channel.isActive }

    /// Completes when the connection has closed.
    public var closeFuture: EventLoopFuture<Void> { channel.closeFuture }

    /// Why the connection closed, when it closed because of an error.
    public var closeError: TransportError? { state.withLockedValue { $0.closeError } }

    public var description: String {
        let peer = state.withLockedValue { $0.remotePeerID }.map { "\($0)" } ?? "?"
        return "Connection(\(direction.rawValue) \(path.rawValue) \(peer) \(remoteAddress.map { "\($0)" } ?? "?"))"
    }

    /// Streams open now, both directions (ping and identify included while they run).
    public var openStreamCount: Int { state.withLockedValue { $0.openStreams } }

    /// Since when the connection has had no open stream; `nil` while streams are open.
    public var idleSince: NIODeadline? { state.withLockedValue { $0.openStreams == 0 ? $0.idleSince : nil } }

    public static func == (lhs: Connection, rhs: Connection) -> Bool { lhs === rhs }
    public func hash(into hasher: inout Hasher) { hasher.combine(ObjectIdentifier(self)) }

    // MARK: Streams

    /// Opens a stream and negotiates `protocolID` on it with multistream-select.
    ///
    /// - Returns: the stream, as a `NIOAsyncChannel`; use `executeThenClose` on it. Finishing the
    ///   outbound writer half-closes the stream (yamux FIN); the inbound sequence ends at the
    ///   peer's FIN.
    /// - Throws: ``TransportError``: `.multistreamNoProtocol` when the peer does not speak the
    ///   protocol, yamux stream limits, `.connectionClosed`.
    public func openStream(protocol protocolID: String) async throws -> HostStream {
        try await openStream(protocols: [protocolID])
    }

    /// Opens a stream and negotiates the first of `protocols` that the peer supports.
    public func openStream(protocols: [String]) async throws -> HostStream {
        precondition(!protocols.isEmpty, "name at least one protocol")
        guard let opener = state.withLockedValue({ $0.opener }) else {
            throw TransportError(.connectionClosed, "the connection is not ready")
        }
        let router = streamRouter
        let negotiated = try await opener.openStream { [self] stream in
            self.streamOpened(stream)
            return stream.eventLoop.makeCompletedFuture {
                try router.negotiateOutbound(stream, proposing: protocols)
            }
        }
        let (chosen, asyncChannel) = try await negotiated.get()
        return HostStream(protocolID: chosen, connection: self, channel: asyncChannel)
    }

    /// Opens a stream, negotiates `protocolID`, and lets `initializer` set up a NIO pipeline on it
    /// (for example HTTP/2 or gRPC handlers).
    ///
    /// - Returns: what the initializer returned, once negotiation and the initializer are done.
    public func openChannel<Output: Sendable>(
        protocol protocolID: String,
        initializer: @escaping @Sendable (Channel) -> EventLoopFuture<Output>
    ) async throws -> Output {
        guard let opener = state.withLockedValue({ $0.opener }) else {
            throw TransportError(.connectionClosed, "the connection is not ready")
        }
        let router = streamRouter
        let negotiated = try await opener.openStream { [self] stream in
            self.streamOpened(stream)
            return stream.eventLoop.makeCompletedFuture {
                try router.negotiateOutbound(stream, proposing: [protocolID]) { _, channel in initializer(channel) }
            }
        }
        return try await negotiated.get()
    }

    /// Sends a yamux Ping and returns the round trip (the session-level ping, no stream needed).
    public func muxerPing() async throws -> TimeAmount {
        guard let opener = state.withLockedValue({ $0.opener }) else {
            throw TransportError(.connectionClosed, "the connection is not ready")
        }
        return try await opener.ping()
    }

    /// Runs identify (`/ipfs/id/1.0.0`) once and returns what the peer says about itself; later
    /// calls return the same answer.
    public func identify() async throws -> IdentifyInfo {
        let task = state.withLockedValue { state in
            if let task = state.identify { return task }
            let task = Task { try await Identify.request(on: self) }
            state.identify = task
            return task
        }
        return try await task.value
    }

    /// Closes the connection: yamux sends Go Away, streams close, then TCP closes.
    public func close() async {
        try? await channel.close()
    }

    // MARK: Internal

    func handshakeCompleted(_ completed: NoiseHandshakeCompleted) {
        state.withLockedValue {
            $0.remotePeerID = completed.remotePeerID
            $0.remotePublicKey = completed.remotePublicKey
        }
    }

    func multiplexerReady(_ opener: YamuxStreamOpener) {
        state.withLockedValue { $0.opener = opener }
    }

    /// Counts a stream (either direction) until its channel closes.
    func streamOpened(_ stream: Channel) {
        state.withLockedValue { $0.openStreams += 1 }
        stream.closeFuture.whenComplete { [self] _ in
            self.state.withLockedValue { state in
                state.openStreams -= 1
                if state.openStreams == 0 { state.idleSince = .now() }
            }
        }
    }

    /// Marks the connection as watched by a reaper; `false` if one already watches it.
    func startReaping() -> Bool {
        state.withLockedValue { state in
            guard !state.reaping else { return false }
            state.reaping = true
            return true
        }
    }

    func stopReaping() { state.withLockedValue { $0.reaping = false } }

    func recordError(_ error: TransportError) {
        state.withLockedValue { if $0.closeError == nil { $0.closeError = error } }
    }
}

/// How a connection's bytes travel.
public enum ConnectionPath: String, Sendable, Hashable, Codable {
    /// Straight to the peer (a dial, an accepted connection, or a punched one).
    case direct
    /// Through a relay's circuit (Circuit Relay v2), Noise end to end: the relay cannot read it.
    case relayed
}

/// One negotiated stream: its protocol, its connection, and the stream as a `NIOAsyncChannel`.
public struct HostStream: Sendable {
    /// The protocol negotiated on the stream.
    public let protocolID: String
    /// The connection the stream belongs to.
    public let connection: Connection
    /// The stream. Use `executeThenClose`; finishing the outbound writer sends FIN (half-close).
    public let channel: NIOAsyncChannel<ByteBuffer, ByteBuffer>
}

extension HostStream {
    /// Waits until the event loop has taken every write handed to `channel`'s outbound writer.
    ///
    /// `NIOAsyncChannel`'s writer returns from `write` before the event loop has taken the bytes,
    /// and it learns that the stream turned unwritable only once the loop has. A producer faster
    /// than the connection can therefore run ahead of the stream's writability by any amount
    /// (the stream keeps every byte; it never resets a writer). A bulk writer calls this every
    /// megabyte or so: afterwards the writer knows the stream's writability, so memory stays near
    /// ``YamuxConfiguration/streamWriteBufferLimit``. ``Connection/echo(bytes:)`` does this.
    public func waitForWriterToCatchUp() async throws {
        try await channel.channel.eventLoop.submit {}.get()
    }

    /// How many bytes a bulk writer hands over between calls to ``waitForWriterToCatchUp()``.
    public static let writerCatchUpInterval = 1024 * 1024
}

extension Multiaddr {
    /// `/ip4|ip6/A/tcp/P` for an IP socket address; `nil` for other kinds.
    public init?(tcp address: SocketAddress) {
        guard let endpoint = IPEndpoint(address) else { return nil }
        self = .tcp(endpoint)
    }
}
