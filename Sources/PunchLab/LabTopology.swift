/// A machine of the lab: one network namespace, named the lab's prefix plus the raw value.
///
/// The names and addresses are a contract that tests and scripts rely on:
///
/// | host | role | addresses |
/// | --- | --- | --- |
/// | `inet` | the Internet: bridge `br0` | (none) |
/// | `srv` | public servers (coturn, probe server) | 203.0.113.10, 203.0.113.11 on `eth0` |
/// | `r1` | NAT router | `wan` 203.0.113.1, `lan` 10.0.1.1/24 |
/// | `r2` | NAT router | `wan` 203.0.113.2, `lan` 10.0.2.1/24 |
/// | `h1`, `h1b` | hosts behind `r1` | 10.0.1.2, 10.0.1.3 on `eth0` |
/// | `h2` | host behind `r2` | 10.0.2.2 on `eth0` |
public enum LabHost: String, CaseIterable, Sendable, Codable, CustomStringConvertible {
    /// The Internet: a bridge joining `srv`, `r1` and `r2` on 203.0.113.0/24.
    case inet
    /// The public server host, with two addresses (RFC 5780 needs two).
    case srv
    /// The first NAT router.
    case r1
    /// The second NAT router.
    case r2
    /// The host behind `r1`.
    case h1
    /// A second host behind `r1`, for hairpinning.
    case h1b
    /// The host behind `r2`.
    case h2

    /// The raw value, as `punch lab` spells it.
    public var description: String { rawValue }

    /// The IPv4 addresses of the host, the public one first.
    public var addresses: [String] {
        switch self {
        case .inet: []
        case .srv: [LabAddress.server, LabAddress.alternateServer]
        case .r1: [LabRouter.r1.wanAddress, LabRouter.r1.lanAddress]
        case .r2: [LabRouter.r2.wanAddress, LabRouter.r2.lanAddress]
        case .h1: ["10.0.1.2"]
        case .h1b: ["10.0.1.3"]
        case .h2: ["10.0.2.2"]
        }
    }

    /// The router in front of the host, for `h1`, `h1b` and `h2`.
    public var router: LabRouter? {
        switch self {
        case .h1, .h1b: .r1
        case .h2: .r2
        case .inet, .srv, .r1, .r2: nil
        }
    }
}

/// A NAT router of the lab.
public enum LabRouter: String, CaseIterable, Sendable, Codable, CustomStringConvertible {
    /// The router in front of `h1` and `h1b`.
    case r1
    /// The router in front of `h2`.
    case r2

    /// The raw value, as `punch lab` spells it.
    public var description: String { rawValue }

    /// The router's namespace as a ``LabHost``.
    public var host: LabHost { self == .r1 ? .r1 : .r2 }

    /// The public address on interface `wan`: 203.0.113.1 or 203.0.113.2.
    public var wanAddress: String { self == .r1 ? "203.0.113.1" : "203.0.113.2" }

    /// The address on the LAN bridge `lan`: 10.0.1.1 or 10.0.2.1.
    public var lanAddress: String { "10.0.\(subnetIndex).1" }

    /// The LAN: 10.0.1.0/24 or 10.0.2.0/24.
    public var lanSubnet: String { "10.0.\(subnetIndex).0/24" }

    /// The hosts behind the router.
    public var hosts: [LabHost] { self == .r1 ? [.h1, .h1b] : [.h2] }

    private var subnetIndex: Int { self == .r1 ? 1 : 2 }
}

/// The lab's well-known public addresses and ports.
public enum LabAddress {
    /// The primary address of `srv`: coturn and the probe server listen here.
    public static let server = "203.0.113.10"
    /// The second address of `srv`, for RFC 5780 and filtering tests.
    public static let alternateServer = "203.0.113.11"
    /// The Internet's prefix length (203.0.113.0/24, TEST-NET-3).
    static let internetPrefixLength = 24
    /// coturn in single-address mode (``NATLab/startSTUN()``): UDP and TCP.
    public static let stunPort = 3478
    /// coturn in RFC 5780 mode on both addresses; the alternate port is one above.
    public static let rfc5780Port = 3490
    /// The probe server's primary UDP and TCP port (``NATLab/startProbeServer()``).
    public static let probePort = 7000
    /// The probe server's second UDP port.
    public static let probeAlternatePort = 7001
}
