/// The multiaddr protocols Punch understands, with their codes from the multiformats multicodec
/// table. Any other protocol is refused with ``WireError/Code/unknownProtocol``.
public enum MultiaddrProtocol: UInt64, CaseIterable, Hashable, Sendable, CustomStringConvertible {
    /// IPv4 address, 4 bytes.
    case ip4 = 0x04
    /// TCP port, 2 bytes big-endian.
    case tcp = 0x06
    /// IPv6 address, 16 bytes.
    case ip6 = 0x29
    /// DNS name resolved to any address family; varint-length-prefixed UTF-8.
    case dns = 0x35
    /// DNS name resolved to IPv4 only; varint-length-prefixed UTF-8.
    case dns4 = 0x36
    /// DNS name resolved to IPv6 only; varint-length-prefixed UTF-8.
    case dns6 = 0x37
    /// DNS name whose `_dnsaddr` TXT records hold multiaddrs; varint-length-prefixed UTF-8.
    case dnsaddr = 0x38
    /// UDP port, 2 bytes big-endian.
    case udp = 0x0111
    /// Circuit relay v2 hop: what follows is reached through the relay before it. No value.
    case p2pCircuit = 0x0122
    /// A PeerID; varint-length-prefixed multihash bytes, base58btc in text.
    case p2p = 0x01A5
    /// QUIC version 1 (RFC 9000) over the UDP port before it. No value.
    case quicV1 = 0x01CD

    /// The multicodec code, as written in the binary form.
    public var code: UInt64 { rawValue }

    /// The name used in the text form, e.g. `p2p-circuit`.
    public var name: String {
        switch self {
        case .ip4: "ip4"
        case .tcp: "tcp"
        case .ip6: "ip6"
        case .dns: "dns"
        case .dns4: "dns4"
        case .dns6: "dns6"
        case .dnsaddr: "dnsaddr"
        case .udp: "udp"
        case .p2pCircuit: "p2p-circuit"
        case .p2p: "p2p"
        case .quicV1: "quic-v1"
        }
    }

    /// The text name, as ``name``.
    public var description: String { name }

    /// The protocol with text name `name`.
    ///
    /// `ipfs`, the historical name of `p2p`, is accepted too (go-multiaddr still reads it).
    public init?(name: some StringProtocol) {
        if name == "ipfs" {
            self = .p2p
            return
        }
        guard let found = Self.allCases.first(where: { $0.name == name }) else { return nil }
        self = found
    }

    /// The protocol with multicodec code `code`.
    public init?(code: UInt64) {
        self.init(rawValue: code)
    }

    /// How long a value is in the binary form.
    enum ValueSize {
        /// No value: the protocol alone means something (`p2p-circuit`, `quic-v1`).
        case none
        /// A value of this many bytes.
        case fixed(Int)
        /// A varint length, then that many bytes.
        case lengthPrefixed
    }

    var valueSize: ValueSize {
        switch self {
        case .ip4: .fixed(4)
        case .ip6: .fixed(16)
        case .tcp, .udp: .fixed(2)
        case .dns, .dns4, .dns6, .dnsaddr, .p2p: .lengthPrefixed
        case .p2pCircuit, .quicV1: .none
        }
    }
}
