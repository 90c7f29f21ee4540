import NIOCore
import PunchCrypto
import PunchWire

/// Everything a ``PunchHost`` is configured with. Every limit has a named default, documented here.
public struct HostConfiguration: Sendable {
    /// The default ``maximumConnections``: 1024 upgraded connections in both directions.
    public static let defaultMaximumConnections = 1024
    /// The default ``maximumPendingUpgrades``: 128 connections in the handshake at once.
    public static let defaultMaximumPendingUpgrades = 128
    /// The default ``dialTimeout``: ten seconds for the TCP connection.
    public static let defaultDialTimeout = TimeAmount.seconds(10)
    /// The default ``upgradeTimeout``: twenty seconds from TCP connected to yamux ready.
    public static let defaultUpgradeTimeout = TimeAmount.seconds(20)
    /// The default ``eventBufferLimit``: 1024 undelivered events; older ones are dropped first.
    public static let defaultEventBufferLimit = 1024
    /// The default ``maximumIdentifyMessageLength``: 64 KiB (go-libp2p uses 8 KiB for the message
    /// and allows signed peer records on top).
    public static let defaultMaximumIdentifyMessageLength = 64 * 1024
    /// The default ``streamNegotiationTimeout``: ten seconds.
    public static let defaultStreamNegotiationTimeout = TimeAmount.seconds(10)

    /// This node's identity key; its PeerID is the node's name.
    public var identity: PrivateKey
    /// identify's agent version: `punch/<version>`.
    public var agentVersion: String = PunchVersion.agentVersion
    /// identify's protocol version (the libp2p convention is `ipfs/0.1.0`).
    public var protocolVersion: String = "ipfs/0.1.0"
    /// How long a TCP connect may take.
    public var dialTimeout: TimeAmount = Self.defaultDialTimeout
    /// How long the upgrade (multistream-select, Noise, multistream-select, yamux) may take.
    public var upgradeTimeout: TimeAmount = Self.defaultUpgradeTimeout
    /// The most upgraded connections, inbound and outbound together. An inbound connection over
    /// the limit is closed at once; a dial over it fails with `.hostConnectionLimit`.
    public var maximumConnections: Int = Self.defaultMaximumConnections
    /// The most connections in the upgrade at once; inbound ones beyond it are closed at accept.
    public var maximumPendingUpgrades: Int = Self.defaultMaximumPendingUpgrades
    /// How long multistream-select may take on a new stream.
    public var streamNegotiationTimeout: TimeAmount = Self.defaultStreamNegotiationTimeout
    /// The largest identify message accepted.
    public var maximumIdentifyMessageLength: Int = Self.defaultMaximumIdentifyMessageLength
    /// Whether outbound TCP connections are bound to the port of a listener of the same address
    /// family, so that peers (and NATs) see the listening port. Hole punching needs it. When that
    /// bind fails (the 4-tuple is in use or in TIME_WAIT), the dial retries from an ephemeral port.
    public var bindDialsToListenPort: Bool = true
    /// Whether the host runs identify on every new connection and reports it as
    /// ``HostEvent/identified(_:_:)``.
    public var identifyOnConnect: Bool = true
    /// Once a direct connection to a peer exists, a relayed connection to the same peer is closed
    /// after it has had no open stream for this long (new streams go direct through
    /// ``PunchHost/connection(to:)``); `nil` keeps relayed connections. Default 10 seconds.
    public var relayedConnectionGrace: TimeAmount? = .seconds(10)
    /// The most events kept for a slow reader of ``PunchHost/events``; the oldest are dropped first.
    public var eventBufferLimit: Int = Self.defaultEventBufferLimit
    /// multistream-select limits for the connection and its streams.
    public var multistream = MultistreamSelectStateMachine.Configuration()
    /// Noise limits and timeout.
    public var noise = NoiseHandler.Configuration()
    /// yamux windows, stream limits and keep-alive.
    public var yamux = YamuxConfiguration()
    /// How many bytes a connection queues in SwiftNIO (written, not yet taken by the kernel)
    /// before it turns unwritable, and below which it turns writable again. Default: 1 MiB high,
    /// 256 KiB low.
    ///
    /// While the connection is unwritable no yamux stream sends, so this bounds what one
    /// connection holds for a slow peer (the high mark plus one frame) and is also how far its
    /// streams may encrypt ahead of the kernel. SwiftNIO's default (64 KiB / 32 KiB) is about one
    /// Noise frame: the sender then encrypts only after the kernel takes the previous frame, and a
    /// stream over loopback ran about 15 % slower (`scripts/bench --water-mark 64K`).
    public var writeBufferWaterMark = ChannelOptions.Types.WriteBufferWaterMark(low: 256 * 1024, high: 1024 * 1024)

    /// A configuration with the defaults above and this identity.
    public init(identity: PrivateKey) {
        self.identity = identity
    }
}

extension TransportError.Code {
    /// The address cannot be dialed or listened on by this host (not `/ip4|ip6|dns…/tcp/…`, or a
    /// circuit address, which the relay client handles).
    public static let hostUnsupportedAddress = Self("host.unsupportedAddress")
    /// The TCP connection could not be made (refused, unreachable, timed out).
    public static let hostDialFailed = Self("host.dialFailed")
    /// Listening failed (the address is in use or not local).
    public static let hostListenFailed = Self("host.listenFailed")
    /// ``HostConfiguration/maximumConnections`` or ``HostConfiguration/maximumPendingUpgrades``
    /// is reached.
    public static let hostConnectionLimit = Self("host.connectionLimit")
    /// The upgrade to a secure, multiplexed connection failed or timed out.
    public static let hostUpgradeFailed = Self("host.upgradeFailed")
    /// Another process listens on the TCP port already (`SO_REUSEPORT` would otherwise let both
    /// bind it, and the kernel would split incoming connections between them).
    public static let hostListenPortInUse = Self("host.listenPortInUse")
    /// The host was closed.
    public static let hostClosed = Self("host.closed")
    /// The connection closed.
    public static let connectionClosed = Self("connection.closed")
    /// A ping answer did not match what was sent, or the stream ended early.
    public static let pingFailed = Self("ping.failed")
    /// The peer's identify message is malformed, too large, or its key does not match its PeerID.
    public static let identifyFailed = Self("identify.failed")
}

/// Whether this side dialed the connection or accepted it.
public enum ConnectionDirection: String, Hashable, Sendable {
    /// We dialed.
    case outbound
    /// The peer dialed us.
    case inbound
}

/// What a ``PunchHost`` reports on ``PunchHost/events``.
public enum HostEvent: Sendable {
    /// A listener is up, with the addresses peers can use.
    case listening([Multiaddr])
    /// A connection finished its upgrade and carries streams.
    case connected(Connection)
    /// identify finished on a connection.
    case identified(Connection, IdentifyInfo)
    /// A connection closed; `error` says why when it was not a normal close.
    case disconnected(Connection, error: TransportError?)
    /// An inbound or outbound connection failed before it was usable.
    case connectionFailed(direction: ConnectionDirection, remote: Multiaddr?, error: TransportError)
}
