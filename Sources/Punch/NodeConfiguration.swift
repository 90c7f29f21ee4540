import Logging
import Metrics
import NIOCore
import PunchCrypto
import PunchDiscovery
import PunchHolePunch
import PunchPortMapping
import PunchRelay
import PunchTransport
import PunchWire

/// Everything a ``PunchNode`` is configured with. Every limit has a named, documented default.
///
/// ```swift
/// var configuration = NodeConfiguration(identity: try IdentityKeyFile.loadOrCreate(at: "node.key").key)
/// configuration.listenAddresses = [try Multiaddr("/ip4/0.0.0.0/tcp/4001")]
/// configuration.relays = [try Multiaddr("/ip4/203.0.113.10/tcp/4001/p2p/12D3KooW…")]
/// ```
public struct NodeConfiguration: Sendable {
    /// The node's own bounds; the host's, the peer store's and the policy's are with them.
    public struct Limits: Sendable, Hashable {
        /// The default ``maximumPendingDials``: 64 peers being dialed at once.
        public static let defaultMaximumPendingDials = 64
        /// The default ``maximumConnectionsPerIP``: 16 connections from or to one IP address.
        public static let defaultMaximumConnectionsPerIP = 16
        /// The default ``eventBufferLimit``: 1024 undelivered events per subscriber.
        public static let defaultEventBufferLimit = 1024
        /// The default ``maximumRelays``: 8 relays reserved on.
        public static let defaultMaximumRelays = 8

        /// Peers with a connection attempt running at once; `connect(to:)` for one more fails
        /// with `node.dialLimit`. Joining a running attempt does not count.
        public var maximumPendingDials = Self.defaultMaximumPendingDials
        /// Direct connections with one remote IP address; a connection over it is closed as soon
        /// as it is up (the total is the host's ``HostConfiguration/maximumConnections``).
        public var maximumConnectionsPerIP = Self.defaultMaximumConnectionsPerIP
        /// Undelivered events kept per subscriber of ``PunchNode/events``; one that falls further
        /// behind gets ``NodeEvent/eventsDropped(_:)``.
        public var eventBufferLimit = Self.defaultEventBufferLimit
        /// Relays in ``NodeConfiguration/relays`` (more are refused by ``NodeConfiguration/validate()``).
        public var maximumRelays = Self.defaultMaximumRelays

        public init() {}
    }

    /// Whether and how the node maps its listening port on the gateway.
    public enum PortMapping: Sendable, Hashable {
        /// No port mapping (the default: a library should not talk to the user's router unasked).
        case disabled
        /// Map the first TCP listening port with the first of these protocols the gateway speaks.
        case automatic(protocols: [PortMappingProtocol])

        /// PCP, then NAT-PMP, then UPnP-IGD.
        public static let enabled = PortMapping.automatic(protocols: [.pcp, .natpmp, .upnp])
    }

    /// The host's configuration: the identity, connection limits, timeouts, yamux and Noise.
    public var host: HostConfiguration
    /// This node's identity key (the host's).
    public var identity: PrivateKey {
        get { host.identity }
        set { host.identity = newValue }
    }
    /// TCP addresses to listen on (`/ip4/0.0.0.0/tcp/4001`; port 0 picks one). A node without one
    /// can dial, but a hole punch needs a listening port to leave from, so the node then listens
    /// on ``fallbackListenAddress``.
    public var listenAddresses: [Multiaddr] = []
    /// Where a node with no ``listenAddresses`` listens: `/ip4/0.0.0.0/tcp/0`. `nil`: nowhere.
    public var fallbackListenAddress: Multiaddr? = try! Multiaddr("/ip4/0.0.0.0/tcp/0")
    /// Relays to keep reservations on (`…/p2p/RELAY`), which also carry our circuits to peers.
    /// An address without `/p2p/` accepts whichever identity answers.
    public var relays: [Multiaddr] = []
    /// Addresses of peers known in advance: direct ones, or circuits (`…/p2p/RELAY/p2p-circuit`).
    public var knownPeers: [PeerID: [Multiaddr]] = [:]
    /// Whether the relays in ``relays`` are also used to reach peers with no known address
    /// (`…/p2p/RELAY/p2p-circuit/p2p/PEER`). On by default.
    public var dialThroughConfiguredRelays = true
    /// The node's own bounds.
    public var limits = Limits()
    /// The peer store's bounds and address lifetime.
    public var peerStore = PeerStore.Limits()
    /// The connect policy's timing and bounds (happy-eyeballs stagger, relay fallback, dials per
    /// attempt). The upgrade loop's rounds and retry delays are ``holePunch``'s.
    public var connectPolicy = ConnectPolicy.Configuration()
    /// DCUtR's limits and timing, and the upgrade loop's schedule (``HolePunchConfiguration/rounds``,
    /// ``HolePunchConfiguration/retryDelay``, ``HolePunchConfiguration/retryMultiplier``).
    public var holePunch = HolePunchConfiguration()
    /// Circuit Relay v2 client limits and timeouts.
    public var relayClient = RelayConfiguration()
    /// Reservation refresh and backoff.
    public var reservations = ReservationKeeper.Configuration()
    /// How many distinct peers must report an observed address before DCUtR offers it, and the
    /// observed-address book's bounds. The node's default is 1 confirmation, as `punch` uses: a
    /// node that knows one relay has one observer.
    public var observedAddresses: ObservedAddressBook.Configuration = {
        var configuration = ObservedAddressBook.Configuration()
        configuration.confirmations = 1
        return configuration
    }()
    /// How often the node looks at its confirmed public addresses; a change starts a waiting
    /// upgrade round at once. Default 1 second.
    public var addressCheckInterval: Duration = .seconds(1)
    /// How often a duplicate connection (one the one-connection rule does not keep) is checked
    /// for open streams; it closes at the first check after ``duplicateIdleGrace`` without one.
    /// Default 250 ms.
    public var duplicateCheckInterval: Duration = .milliseconds(250)
    /// How long a duplicate connection must have had no open stream before it closes. Default
    /// 5 seconds: a connection that just came up (a punch, a crossed dial) is idle until its
    /// first stream, and a program that was handed it may be about to open one.
    public var duplicateIdleGrace: Duration = .seconds(5)
    /// AutoNAT v2: whether our confirmed public addresses are reachable, asked of connected peers
    /// that serve `/libp2p/autonat/2/dial-request` (a `punch relay` does). `nil` turns it off.
    /// The node's default asks for 1 confirming server (a node that knows one relay has one
    /// server; the library's ``AutoNATClientConfiguration/confirmations`` is 3).
    public var autoNAT: AutoNATClientConfiguration? = {
        var configuration = AutoNATClientConfiguration()
        configuration.confirmations = 1
        return configuration
    }()
    /// How long before the same server is asked again about the same addresses (new addresses
    /// are asked about at once). Default 30 minutes.
    public var autoNATRecheckInterval: Duration = .seconds(30 * 60)
    /// The most servers remembered for ``autoNATRecheckInterval``; the oldest is forgotten first.
    /// Default 32.
    public var maximumAutoNATServers = 32
    /// Port mapping on the gateway. Default `.disabled`.
    public var portMapping = PortMapping.disabled
    /// Where metrics go; `nil`: the process's `MetricsSystem` (a no-op until bootstrapped).
    public var metricsFactory: (any MetricsFactory)?
    /// Where the node logs (debug and trace on the hot paths). Default: `punch.node` from the
    /// logging system.
    public var logger = Logger(label: "punch.node")

    /// A configuration with the defaults above and this identity.
    public init(identity: PrivateKey) {
        host = HostConfiguration(identity: identity)
        // The node runs identify itself on every connection (and reports it once).
        host.identifyOnConnect = false
    }

    /// Checks every value is in range.
    ///
    /// - Throws: ``NodeError`` `.invalidConfiguration` naming the value.
    public func validate() throws {
        func check(_ ok: Bool, _ what: String) throws {
            if !ok { throw NodeError(.invalidConfiguration, what) }
        }
        try check(limits.maximumPendingDials >= 1, "limits.maximumPendingDials must be at least 1")
        try check(limits.maximumConnectionsPerIP >= 1, "limits.maximumConnectionsPerIP must be at least 1")
        try check(limits.eventBufferLimit >= 2, "limits.eventBufferLimit must be at least 2")
        try check(relays.count <= limits.maximumRelays, "at most \(limits.maximumRelays) relays (limits.maximumRelays), not \(relays.count)")
        try check(peerStore.maximumPeers >= 1 && peerStore.maximumAddressesPerPeer >= 1, "the peer store must hold at least one peer and address")
        try check(connectPolicy.maximumDialsPerAttempt >= 1, "connectPolicy.maximumDialsPerAttempt must be at least 1")
        try check(holePunch.rounds >= 1, "holePunch.rounds must be at least 1")
        for address in listenAddresses {
            try check(address.transport?.kind == .tcp && address.components.count == 2, "can only listen on /ip4|ip6/A/tcp/P, not \(address)")
        }
        for relay in relays {
            try check(relay.transport != nil && !relay.isCircuit, "a relay address reads /ip4|ip6|dns/…/tcp/P[/p2p/RELAY], not \(relay)")
        }
        do {
            try observedAddresses.validate()
        } catch {
            throw NodeError(.invalidConfiguration, "observedAddresses: \(error)")
        }
    }
}
