import NIOCore
import PunchWire

/// What a ``STUNServer`` listens on, what it says, and how fast it answers. Every limit has a
/// documented default.
///
/// ```swift
/// var configuration = STUNServerConfiguration(listen: try IPEndpoint("203.0.113.10:3478"))
/// configuration.alternateAddress = try IPAddress("203.0.113.11")   // RFC 5780 mode
/// ```
public struct STUNServerConfiguration: Sendable, Hashable {
    /// The default ``perSourceRate``: 20 answers a second to one source IP.
    public static let defaultPerSourceRate = 20
    /// The default ``perSourceBurst``: 40 answers at once to one source IP (an RFC 5780 check
    /// sends a handful of requests at once, each possibly retransmitted).
    public static let defaultPerSourceBurst = 40
    /// The default ``totalRate``: 5000 answers a second in all.
    public static let defaultTotalRate = 5000
    /// The default ``totalBurst``: 10000 answers at once in all.
    public static let defaultTotalBurst = 10000
    /// The default ``maximumTrackedSources``: 4096 source IPs with a rate-limit bucket.
    public static let defaultMaximumTrackedSources = 4096

    /// The primary address and port. In RFC 5780 mode the server also listens on port + 1, and
    /// on both ports of ``alternateAddress``; port 0 then picks a free pair of consecutive ports.
    public var listen: IPEndpoint
    /// The second IP address, which turns on RFC 5780 mode (OTHER-ADDRESS, RESPONSE-ORIGIN,
    /// CHANGE-REQUEST), or `nil`. Must be of the same family as ``listen`` and differ from it.
    public var alternateAddress: IPAddress?
    /// SOFTWARE in every response, or `nil` for none.
    public var software: String? = "punch"
    /// Whether success responses also carry MAPPED-ADDRESS, for RFC 3489 clients. On by default.
    public var includeMappedAddress = true
    /// Answers per second to one source IP; more are dropped (and counted).
    public var perSourceRate = Self.defaultPerSourceRate
    /// The burst one source IP may use at once.
    public var perSourceBurst = Self.defaultPerSourceBurst
    /// Answers per second in all, whatever the sources.
    public var totalRate = Self.defaultTotalRate
    /// The burst of all sources together.
    public var totalBurst = Self.defaultTotalBurst
    /// The most source IPs tracked for the per-source limit. When the table is full, sources
    /// whose bucket has refilled are forgotten; if none has, a new source is refused until one
    /// does (spoofed floods cannot grow the table).
    public var maximumTrackedSources = Self.defaultMaximumTrackedSources
    /// The largest request accepted (see ``STUNMessage/defaultMaximumLength``).
    public var maximumMessageLength = STUNMessage.defaultMaximumLength
    /// Whether the server also answers STUN over TCP (RFC 8489 §6.2.2) on the primary address
    /// and port, so a client learns the reflexive address of a TCP port (the one a TCP hole
    /// punch uses). On by default. CHANGE-REQUEST is not honoured over TCP.
    public var tcp = true
    /// The default ``maximumTCPConnections``: 256.
    public static let defaultMaximumTCPConnections = 256
    /// TCP connections open at once; more are closed as they arrive.
    public var maximumTCPConnections = Self.defaultMaximumTCPConnections
    /// A TCP connection that sends no request for this long is closed. Default 10 seconds.
    public var tcpIdleTimeout: TimeAmount = .seconds(10)

    /// A configuration with the defaults above.
    public init(listen: IPEndpoint, alternateAddress: IPAddress? = nil) {
        self.listen = listen
        self.alternateAddress = alternateAddress
    }

    /// Whether the server runs in RFC 5780 mode.
    public var isRFC5780: Bool { alternateAddress != nil }

    func validate() throws {
        if let alternateAddress {
            guard alternateAddress.isIPv4 == listen.address.isIPv4 else {
                throw DiscoveryError(.invalidConfiguration, "the alternate address \(alternateAddress) must be of the same family as \(listen.address)")
            }
            guard alternateAddress != listen.address else {
                throw DiscoveryError(.invalidConfiguration, "the alternate address must differ from the primary one (\(listen.address))")
            }
            guard !Self.isUnspecified(listen.address), !Self.isUnspecified(alternateAddress) else {
                throw DiscoveryError(.invalidConfiguration, "RFC 5780 mode needs two specific addresses, not a wildcard: OTHER-ADDRESS and RESPONSE-ORIGIN name them")
            }
            guard listen.port != UInt16.max else {
                throw DiscoveryError(.invalidConfiguration, "RFC 5780 mode also listens on port + 1; \(listen.port) has none")
            }
        }
        for (name, value) in [("perSourceRate", perSourceRate), ("perSourceBurst", perSourceBurst), ("totalRate", totalRate),
                              ("totalBurst", totalBurst), ("maximumTrackedSources", maximumTrackedSources)] where value < 1 {
            throw DiscoveryError(.invalidConfiguration, "\(name) must be at least 1, not \(value)")
        }
    }

    static func isUnspecified(_ address: IPAddress) -> Bool {
        address.bytes.allSatisfy { $0 == 0 }
    }
}
