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
    /// How long one message may take to arrive. Default 10 seconds.
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
            switch AddressScope(ip) {
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

    /// Where an address can be reached from.
    enum AddressScope {
        case `public`
        /// RFC 1918, RFC 6598 (carrier-grade NAT) and IPv6 unique-local.
        case `private`
        /// Loopback, unspecified, multicast, broadcast, link-local: never a peer's address.
        case local

        init(_ address: IPAddress) {
            let bytes = address.bytes
            if address.isIPv4 {
                let (a, b) = (bytes[0], bytes[1])
                switch a {
                case 0, 127: self = .local
                case 224...255: self = .local  // multicast, reserved, broadcast
                case 169 where b == 254: self = .local
                case 10: self = .private
                case 172 where (16...31).contains(b): self = .private
                case 192 where b == 168: self = .private
                case 100 where (64...127).contains(b): self = .private
                default: self = .public
                }
            } else {
                if bytes.allSatisfy({ $0 == 0 }) || bytes == [UInt8](repeating: 0, count: 15) + [1] {
                    self = .local
                } else if bytes[0] == 0xFF || (bytes[0] == 0xFE && bytes[1] & 0xC0 == 0x80) {
                    self = .local
                } else if bytes[0] & 0xFE == 0xFC {
                    self = .private
                } else {
                    self = .public
                }
            }
        }
    }
}

extension IPAddress {
    /// 127.0.0.0/8 or ::1.
    fileprivate var isLoopback: Bool {
        isIPv4 ? bytes[0] == 127 : bytes == [UInt8](repeating: 0, count: 15) + [1]
    }
}
