import NIOCore

/// What an ``AutoNATServer`` is willing to do, with every limit named and defaulted.
///
/// ```swift
/// var configuration = AutoNATServerConfiguration()
/// configuration.allowPrivateAddresses = true     // a lab or a LAN, not the Internet
/// let server = try AutoNATServer.serve(on: host, configuration: configuration)
/// ```
public struct AutoNATServerConfiguration: Sendable, Hashable {
    /// The default ``dialDataBytes``: 30 000, the low end of the spec's 30k–100k.
    public static let defaultDialDataBytes = AutoNATProtocol.minimumDialDataRequest
    /// The default ``maximumConcurrentRequests``: 16 requests served at once, in all.
    public static let defaultMaximumConcurrentRequests = 16
    /// The default ``maximumConcurrentRequestsPerPeer``: 2 requests of one peer at once.
    public static let defaultMaximumConcurrentRequestsPerPeer = 2
    /// The default ``maximumRequestsPerPeer``: 12 requests per peer per ``rateWindow``
    /// (go-libp2p's per-peer rate).
    public static let defaultMaximumRequestsPerPeer = 12
    /// The default ``rateWindow``: one minute.
    public static let defaultRateWindow = TimeAmount.minutes(1)
    /// The default ``maximumTrackedPeers``: 1024 peers with a request count.
    public static let defaultMaximumTrackedPeers = 1024
    /// The default ``maximumAddresses``: the first 32 addresses of a request are considered.
    public static let defaultMaximumAddresses = 32
    /// The default ``maximumMessageLength``: 8 KiB per message (a `DialDataResponse` of 4096
    /// bytes fits with room to spare).
    public static let defaultMaximumMessageLength = 8192
    /// The default ``messageTimeout``: 15 seconds for each message of the client.
    public static let defaultMessageTimeout = TimeAmount.seconds(15)
    /// The default ``dialBackTimeout``: 10 seconds for the `DialBackResponse` once the dial-back
    /// stream is open.
    public static let defaultDialBackTimeout = TimeAmount.seconds(10)

    /// Whether private, loopback and link-local addresses may be dialed. Off: the spec says a
    /// server SHOULD NOT dial private addresses. Turn it on for labs and loopback tests.
    public var allowPrivateAddresses = false
    /// How much dial data the server asks for before it dials an IP other than the client's
    /// observed one. Must be within 30 000…100 000 (the spec's SHOULD).
    public var dialDataBytes = Self.defaultDialDataBytes
    /// The most requests in progress at once; more are answered `E_REQUEST_REJECTED`.
    public var maximumConcurrentRequests = Self.defaultMaximumConcurrentRequests
    /// The most requests of one peer in progress at once; more are answered `E_REQUEST_REJECTED`.
    public var maximumConcurrentRequestsPerPeer = Self.defaultMaximumConcurrentRequestsPerPeer
    /// The most requests one peer may start within ``rateWindow``; more are answered
    /// `E_REQUEST_REJECTED`.
    public var maximumRequestsPerPeer = Self.defaultMaximumRequestsPerPeer
    /// The window of ``maximumRequestsPerPeer``.
    public var rateWindow = Self.defaultRateWindow
    /// The most peers whose recent requests are remembered. When full and no peer's window has
    /// passed, requests of new peers are rejected until one has.
    public var maximumTrackedPeers = Self.defaultMaximumTrackedPeers
    /// How many addresses of a request are considered, from the first; the rest are ignored.
    public var maximumAddresses = Self.defaultMaximumAddresses
    /// The largest message accepted on the dial-request stream; a larger one closes it.
    public var maximumMessageLength = Self.defaultMaximumMessageLength
    /// How long the server waits for each client message (the request, each dial-data chunk).
    public var messageTimeout = Self.defaultMessageTimeout
    /// How long the server waits for the `DialBackResponse` on the dial-back stream.
    public var dialBackTimeout = Self.defaultDialBackTimeout

    /// The defaults above.
    public init() {}

    /// Checks every value is in range.
    ///
    /// - Throws: ``DiscoveryError`` `.invalidConfiguration`.
    public func validate() throws {
        guard (AutoNATProtocol.minimumDialDataRequest...AutoNATProtocol.maximumDialDataRequest).contains(dialDataBytes) else {
            throw DiscoveryError(
                .invalidConfiguration,
                "dialDataBytes must be within \(AutoNATProtocol.minimumDialDataRequest)…\(AutoNATProtocol.maximumDialDataRequest) (autonat-v2.md), not \(dialDataBytes)")
        }
        guard maximumConcurrentRequests >= 1, maximumConcurrentRequestsPerPeer >= 1, maximumRequestsPerPeer >= 1, maximumTrackedPeers >= 1, maximumAddresses >= 1 else {
            throw DiscoveryError(.invalidConfiguration, "AutoNAT server limits must be at least 1")
        }
        guard maximumMessageLength >= 64 + AutoNATProtocol.maximumDialDataChunk else {
            throw DiscoveryError(.invalidConfiguration, "maximumMessageLength must fit a DialDataResponse of \(AutoNATProtocol.maximumDialDataChunk) bytes")
        }
        guard rateWindow > .zero, messageTimeout > .zero, dialBackTimeout > .zero else {
            throw DiscoveryError(.invalidConfiguration, "AutoNAT server times must be positive")
        }
    }
}

/// What an ``AutoNATClient`` does, with every limit named and defaulted.
public struct AutoNATClientConfiguration: Sendable, Hashable {
    /// The default ``maximumDialDataBytes``: 100 000, the spec's upper end of what a server
    /// should ask for.
    public static let defaultMaximumDialDataBytes = AutoNATProtocol.maximumDialDataRequest
    /// The default ``maximumAddressesPerRequest``: 16.
    public static let defaultMaximumAddressesPerRequest = 16
    /// The default ``maximumPendingChecks``: 16 requests waiting for their dial-back at once.
    public static let defaultMaximumPendingChecks = 16
    /// The default ``maximumMessageLength``: 8 KiB.
    public static let defaultMaximumMessageLength = 8192
    /// The default ``responseTimeout``: 60 seconds for each server message. The server dials
    /// before it answers: a dial to an unreachable address waits out the server's TCP timeout
    /// (10 s for a `PunchHost`), a dial that connects may take the upgrade's 20 s, and then the
    /// dial-back's acknowledgement its 10 s.
    public static let defaultResponseTimeout = TimeAmount.seconds(60)
    /// The default ``confirmations``: 3 distinct servers before an address is called reachable
    /// or unreachable (the spec suggests "more than 3").
    public static let defaultConfirmations = 3
    /// The default ``maximumTrackedAddresses``: 64 addresses with an aggregate reachability.
    public static let defaultMaximumTrackedAddresses = 64
    /// The default ``maximumServersPerAddress``: the latest verdict of 16 servers per address.
    public static let defaultMaximumServersPerAddress = 16

    /// The most dial data the client agrees to send; a server that asks for more gets the stream
    /// closed (the spec's "the client resets the stream").
    public var maximumDialDataBytes = Self.defaultMaximumDialDataBytes
    /// The most addresses sent in one `DialRequest`.
    public var maximumAddressesPerRequest = Self.defaultMaximumAddressesPerRequest
    /// The most checks waiting for a dial-back at once; more fail with `.autonatTooManyChecks`.
    public var maximumPendingChecks = Self.defaultMaximumPendingChecks
    /// The largest message accepted from a server.
    public var maximumMessageLength = Self.defaultMaximumMessageLength
    /// How long the client waits for each server message.
    public var responseTimeout = Self.defaultResponseTimeout
    /// How many distinct servers must agree before ``AutoNATClient/reachabilityUpdates``
    /// reports an address reachable or unreachable; 1 where there is a single server.
    public var confirmations = Self.defaultConfirmations
    /// The most addresses with an aggregate reachability.
    public var maximumTrackedAddresses = Self.defaultMaximumTrackedAddresses
    /// The most servers whose latest verdict is kept per address.
    public var maximumServersPerAddress = Self.defaultMaximumServersPerAddress

    /// The defaults above.
    public init() {}

    /// Checks every value is in range.
    ///
    /// - Throws: ``DiscoveryError`` `.invalidConfiguration`.
    public func validate() throws {
        guard maximumDialDataBytes >= 0, maximumAddressesPerRequest >= 1, maximumPendingChecks >= 1, maximumTrackedAddresses >= 1 else {
            throw DiscoveryError(.invalidConfiguration, "AutoNAT client limits must be at least 1")
        }
        guard confirmations >= 1, confirmations <= maximumServersPerAddress else {
            throw DiscoveryError(.invalidConfiguration, "confirmations must be within 1…maximumServersPerAddress (\(maximumServersPerAddress))")
        }
        guard maximumMessageLength >= 64, responseTimeout > .zero else {
            throw DiscoveryError(.invalidConfiguration, "maximumMessageLength and responseTimeout are too small")
        }
    }
}
