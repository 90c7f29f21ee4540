/// One `/protocol/value` step of a ``Multiaddr``.
///
/// A component built in code is checked when it becomes part of a multiaddr
/// (``Multiaddr/init(components:)``), so that every ``Multiaddr`` has a valid text and binary form.
public enum MultiaddrComponent: Hashable, Sendable, CustomStringConvertible {
    /// `/ip4/1.2.3.4`; the address must be IPv4.
    case ip4(IPAddress)
    /// `/ip6/::1`; the address must be IPv6 (an IPv4-mapped IPv6 address is fine).
    case ip6(IPAddress)
    /// `/tcp/4001`.
    case tcp(UInt16)
    /// `/udp/4001`.
    case udp(UInt16)
    /// `/dns/example.com`: a name to resolve to IPv4 or IPv6 addresses.
    case dns(String)
    /// `/dns4/example.com`: a name to resolve to IPv4 addresses only.
    case dns4(String)
    /// `/dns6/example.com`: a name to resolve to IPv6 addresses only.
    case dns6(String)
    /// `/dnsaddr/example.com`: a name whose `_dnsaddr` TXT records list multiaddrs.
    case dnsaddr(String)
    /// `/p2p/12D3KooW...`: the PeerID of the peer at the address before it.
    case p2p(Multihash)
    /// `/p2p-circuit`: what follows is reached through the relay described before it.
    case p2pCircuit
    /// `/quic-v1`: QUIC version 1 over the UDP port before it.
    case quicV1

    /// The protocol of this component.
    public var `protocol`: MultiaddrProtocol {
        switch self {
        case .ip4: .ip4
        case .ip6: .ip6
        case .tcp: .tcp
        case .udp: .udp
        case .dns: .dns
        case .dns4: .dns4
        case .dns6: .dns6
        case .dnsaddr: .dnsaddr
        case .p2p: .p2p
        case .p2pCircuit: .p2pCircuit
        case .quicV1: .quicV1
        }
    }

    /// The value in the text form (PeerIDs in base58btc), or `nil` for a protocol without a value.
    public var valueText: String? {
        switch self {
        case .ip4(let address), .ip6(let address): address.description
        case .tcp(let port), .udp(let port): String(port)
        case .dns(let name), .dns4(let name), .dns6(let name), .dnsaddr(let name): name
        case .p2p(let multihash): multihash.description
        case .p2pCircuit, .quicV1: nil
        }
    }

    /// The canonical text form, e.g. `/tcp/4001` or `/p2p-circuit`.
    public var description: String {
        guard let value = valueText else { return "/" + self.protocol.name }
        return "/" + self.protocol.name + "/" + value
    }

    /// The value bytes as the binary form writes them, without the code and length prefix.
    var valueBytes: [UInt8] {
        switch self {
        case .ip4(let address), .ip6(let address): address.bytes
        case .tcp(let port), .udp(let port): [UInt8(port >> 8), UInt8(port & 0xFF)]
        case .dns(let name), .dns4(let name), .dns6(let name), .dnsaddr(let name): Array(name.utf8)
        case .p2p(let multihash): multihash.bytes
        case .p2pCircuit, .quicV1: []
        }
    }

    /// Appends the binary form: code varint, length varint for variable-length values, value.
    func encode(into bytes: inout [UInt8]) {
        Varint.encode(self.protocol.code, into: &bytes)
        let value = valueBytes
        if case .lengthPrefixed = self.protocol.valueSize {
            Varint.encode(UInt64(value.count), into: &bytes)
        }
        bytes.append(contentsOf: value)
    }

    /// The length of the binary form in bytes.
    var encodedLength: Int {
        let valueLength = valueBytes.count
        var length = Varint.encodedLength(self.protocol.code) + valueLength
        if case .lengthPrefixed = self.protocol.valueSize { length += Varint.encodedLength(UInt64(valueLength)) }
        return length
    }

    /// Throws unless the value fits its protocol, which the enum alone cannot guarantee.
    ///
    /// - Throws: ``WireError`` `.malformedValue` for an address of the wrong family or a bad DNS name.
    func validate() throws {
        switch self {
        case .ip4(let address):
            guard address.isIPv4 else { throw WireError(.malformedValue, "ip4 value \(address) is not an IPv4 address") }
        case .ip6(let address):
            guard !address.isIPv4 else { throw WireError(.malformedValue, "ip6 value \(address) is not an IPv6 address") }
        case .dns(let name), .dns4(let name), .dns6(let name), .dnsaddr(let name):
            try Self.validateDNSName(name, protocol: self.protocol)
        case .tcp, .udp, .p2p, .p2pCircuit, .quicV1:
            break
        }
    }

    /// Refuses DNS names that cannot round-trip or could mislead a resolver.
    ///
    /// An empty name means nothing; a `/` would split the text form; a NUL would cut the name
    /// short when handed to a C resolver, so the name resolved would differ from the one shown.
    static func validateDNSName(_ name: String, protocol: MultiaddrProtocol) throws {
        guard !name.isEmpty else { throw WireError(.malformedValue, "\(`protocol`.name) name is empty") }
        guard !name.utf8.contains(UInt8(ascii: "/")) else {
            throw WireError(.malformedValue, "\(`protocol`.name) name '\(name)' contains '/'")
        }
        guard !name.utf8.contains(0) else {
            throw WireError(.malformedValue, "\(`protocol`.name) name contains a NUL byte")
        }
    }
}
