/// The behaviour of a lab router's NAT, in RFC 4787 terms.
///
/// The raw values are the `MODE` names of `punch lab up --r1 MODE` and `punch lab mode`.
///
/// | mode | mapping | filtering | port |
/// | --- | --- | --- | --- |
/// | ``portRestricted`` | endpoint-independent | address and port dependent | preserved |
/// | ``fullCone`` | endpoint-independent | endpoint-independent | preserved |
/// | ``addressRestricted`` | endpoint-independent | address-dependent | preserved |
/// | ``symmetric`` | address and port dependent | address and port dependent | random |
/// | ``portRemap`` | endpoint-independent | address and port dependent | remapped into 20000-29999 |
public enum NATMode: String, CaseIterable, Sendable, Codable, CustomStringConvertible {
    /// Port-restricted cone: Linux `masquerade`. The usual home router, and the lab's default.
    case portRestricted = "port-restricted"
    /// Full cone: once a host sent from a port, anyone may send to its public port.
    case fullCone = "full-cone"
    /// Address-restricted cone: any port of an address the host sent to may answer.
    case addressRestricted = "address-restricted"
    /// Symmetric: a new random public port for every destination (`masquerade random`).
    case symmetric
    /// Port-remapping: endpoint-independent mapping to a public port that differs from the
    /// local one (`masquerade to :20000-29999`); filtering as ``portRestricted``.
    case portRemap = "port-remap"

    /// The raw value, as `punch lab` spells it.
    public var description: String { rawValue }

    /// The mapping behaviour (RFC 4787 section 4.1) the mode is built to show.
    public var mapping: NATBehaviour {
        self == .symmetric ? .addressAndPortDependent : .endpointIndependent
    }

    /// The filtering behaviour (RFC 4787 section 5) the mode is built to show.
    public var filtering: NATBehaviour {
        switch self {
        case .fullCone: .endpointIndependent
        case .addressRestricted: .addressDependent
        case .portRestricted, .symmetric, .portRemap: .addressAndPortDependent
        }
    }

    /// Whether the public port equals the local port when it is free.
    public var preservesPort: Bool {
        switch self {
        case .portRestricted, .fullCone, .addressRestricted: true
        case .symmetric, .portRemap: false
        }
    }
}

/// A mapping or filtering behaviour, in RFC 4787's words.
public enum NATBehaviour: String, Sendable, Codable, CustomStringConvertible {
    /// The same for every remote endpoint.
    case endpointIndependent = "endpoint-independent"
    /// Depends on the remote address only.
    case addressDependent = "address-dependent"
    /// Depends on the remote address and port.
    case addressAndPortDependent = "address-and-port-dependent"

    /// The raw value, as `punch lab` spells it.
    public var description: String { rawValue }
}

/// What a lab router does besides its ``NATMode``: hairpinning, timeouts and impairment.
///
/// ```swift
/// try lab.setMode(.r1, .fullCone, options: NATOptions(hairpin: true, lossPercent: 5, delayMilliseconds: 40))
/// ```
public struct NATOptions: Hashable, Sendable, Codable {
    /// Whether a host may reach another host behind the same router (or itself) through the
    /// router's public address. Off by default, as on many home routers.
    public var hairpin: Bool
    /// Seconds an idle UDP mapping lives (the namespace's `nf_conntrack_udp_timeout` and
    /// `nf_conntrack_udp_timeout_stream`); `nil` keeps the kernel's defaults (30 s / 120 s).
    public var udpTimeout: Int?
    /// Seconds an idle established TCP mapping lives (`nf_conntrack_tcp_timeout_established`);
    /// `nil` keeps the kernel's default (5 days).
    public var tcpTimeout: Int?
    /// Percent (0-100) of IPv4 packets dropped on the router's WAN link, in each direction.
    public var lossPercent: Int
    /// Milliseconds every packet crossing the router waits, in each direction (so a round trip
    /// through one router grows by twice this).
    public var delayMilliseconds: Int
    /// Each packet's delay varies uniformly by up to this many milliseconds either way.
    public var jitterMilliseconds: Int
    /// Whether the router silently drops unsolicited packets to its WAN address. On by default:
    /// without it the router answers a punch packet with ICMP or a TCP RST, conntrack keeps that
    /// flow, and masquerade then picks another port, so hole punching fails every time.
    public var dropUnsolicited: Bool

    /// Creates options; the defaults are a plain router: no hairpin, kernel timeouts, no
    /// impairment, unsolicited input dropped.
    public init(
        hairpin: Bool = false,
        udpTimeout: Int? = nil,
        tcpTimeout: Int? = nil,
        lossPercent: Int = 0,
        delayMilliseconds: Int = 0,
        jitterMilliseconds: Int = 0,
        dropUnsolicited: Bool = true
    ) {
        self.hairpin = hairpin
        self.udpTimeout = udpTimeout
        self.tcpTimeout = tcpTimeout
        self.lossPercent = lossPercent
        self.delayMilliseconds = delayMilliseconds
        self.jitterMilliseconds = jitterMilliseconds
        self.dropUnsolicited = dropUnsolicited
    }

    /// Whether packets must pass through the delay program.
    var delaysPackets: Bool { delayMilliseconds > 0 || jitterMilliseconds > 0 }

    /// Throws if a value is out of range.
    func validate() throws {
        guard (0...100).contains(lossPercent) else {
            throw LabError(.invalidArgument, "loss must be 0-100 percent, not \(lossPercent)")
        }
        guard delayMilliseconds >= 0, jitterMilliseconds >= 0, delayMilliseconds <= 60_000, jitterMilliseconds <= 60_000 else {
            throw LabError(.invalidArgument, "delay and jitter must be 0-60000 ms, not \(delayMilliseconds) and \(jitterMilliseconds)")
        }
        for (name, value) in [("UDP", udpTimeout), ("TCP", tcpTimeout)] {
            if let value, !(1...864_000).contains(value) {
                throw LabError(.invalidArgument, "the \(name) mapping timeout must be 1-864000 s, not \(value)")
            }
        }
    }
}
