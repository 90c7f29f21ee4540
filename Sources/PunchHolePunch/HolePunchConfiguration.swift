import Logging
import NIOCore
import PunchWire

/// The DCUtR protocol id (libp2p/specs relay/DCUtR.md).
public enum HolePunchProtocol {
    public static let id = "/libp2p/dcutr"
}

/// Limits and timing of direct connection upgrades through a relay (DCUtR).
public struct HolePunchConfiguration: Sendable {
    /// The largest DCUtR message accepted. Default 4 KiB, as the spec says ("SHOULD refuse …
    /// larger than 4 KiB").
    public var maximumMessageLength = 4096
    /// Attempts by the initiating side before giving up: 3, as the spec says ("SHOULD retry
    /// twice").
    public var attempts = 3
    /// At most this many of the peer's addresses are dialed per attempt. Default 4.
    public var maximumAddresses = 4
    /// Whether private (RFC 1918, RFC 6598, unique-local) addresses may be sent and dialed. Off by
    /// default: a peer could otherwise make us dial into our own LAN. Turn it on for a LAN.
    public var allowPrivateAddresses = false
    /// How long one message may take to arrive. Default 10 seconds. The serving side waits longer
    /// for a retry's CONNECT after a failed attempt: this plus ``dialTimeout`` plus the host's
    /// upgrade timeout, as long as the initiator's attempt may still run.
    public var exchangeTimeout: TimeAmount = .seconds(10)
    /// How long one punch dial may take before the attempt counts as failed. Default 5 seconds
    /// (a lost SYN is retried by the kernel after 1 s and 3 s).
    public var dialTimeout: TimeAmount = .seconds(5)
    /// The most DCUtR exchanges served at once (the responding side). Default 16.
    public var maximumConcurrentExchanges = 16
    /// Whether ``HolePuncher/keepUpgrading(_:host:localAddresses:configuration:onRound:)`` first
    /// dials the public addresses the peer advertises in identify, before any DCUtR exchange
    /// (DCUtR.md: "a unilateral connection upgrade"). On by default.
    public var dialAdvertisedAddressesFirst = true
    /// Exchanges ``HolePuncher/keepUpgrading(_:host:localAddresses:configuration:onRound:)`` runs
    /// on one relayed connection before it leaves it relayed: the first and 3 retries. Default 4.
    public var rounds = 4
    /// The wait before the first retry; each later wait is ``retryMultiplier`` times longer
    /// (default 5 s, then 15 s, then 45 s).
    public var retryDelay: Duration = .seconds(5)
    /// How much longer each wait between rounds is than the one before. Default 3.
    public var retryMultiplier = 3
    /// How often our addresses are checked while waiting: a new public address starts the next
    /// round at once. Default 1 second.
    public var addressCheckInterval: Duration = .seconds(1)
    /// Whether loopback addresses may be sent and dialed: never in use (a peer could make us dial
    /// our own services), only for tests of the whole exchange on one machine.
    var allowLoopbackAddresses = false
    /// Where each attempt's steps (messages, round trip, dials and their errors) are logged at
    /// `.debug`, failed rounds too. Default: `punch.dcutr` from the logging system
    /// (`punch` prints it on stderr with `PUNCH_LOG_LEVEL=debug`).
    public var logger = Logger(label: "punch.dcutr")

    public init() {}
}

/// Which addresses DCUtR may send and dial (DCUtR.md; libp2p hole-punching.md): TCP over IPv4
/// or IPv6 only, never loopback, unspecified, multicast, broadcast or link-local, private ranges
/// only when allowed, at most `limit`, without duplicates. This keeps a peer from making us dial
/// arbitrary third parties.
public enum HolePunchAddressFilter {
    public static func usable(_ addresses: [Multiaddr], allowPrivate: Bool, limit: Int) -> [Multiaddr] {
        usable(addresses, allowPrivate: allowPrivate, allowLoopback: false, limit: limit)
    }

    /// As ``usable(_:allowPrivate:limit:)``, with loopback addresses kept when `allowLoopback`
    /// (tests on one machine).
    static func usable(_ addresses: [Multiaddr], allowPrivate: Bool, allowLoopback: Bool, limit: Int) -> [Multiaddr] {
        var result: [Multiaddr] = []
        for address in addresses where result.count < limit {
            guard !address.isCircuit, let transport = address.transport, transport.kind == .tcp, transport.port != 0,
                case .ip(let ip) = transport.host, address.components.count <= 3
            else { continue }
            switch ip.scope {
            case .public: break
            case .private where allowPrivate: break
            case .local where allowLoopback && ip.isLoopback: break
            case .private, .local: continue
            }
            let plain = Multiaddr.tcp(IPEndpoint(address: ip, port: transport.port))
            if !result.contains(plain) { result.append(plain) }
        }
        return result
    }
}
