/// Where an IP address can be reached from: the one classification that DCUtR's address filter
/// and AutoNAT v2's "SHOULD NOT dial any private address" both use.
public enum IPAddressScope: Sendable, Hashable {
    /// Anything not listed below.
    case `public`
    /// RFC 1918, RFC 6598 (carrier-grade NAT) and IPv6 unique-local (fc00::/7).
    case `private`
    /// Loopback, unspecified, multicast, reserved, broadcast, link-local: never a peer's address.
    case local
}

extension IPAddress {
    /// The address's ``IPAddressScope``.
    public var scope: IPAddressScope {
        let bytes = self.bytes
        if isIPv4 {
            let (a, b) = (bytes[0], bytes[1])
            switch a {
            case 0, 127: return .local
            case 224...255: return .local  // multicast, reserved, broadcast
            case 169 where b == 254: return .local
            case 10: return .private
            case 172 where (16...31).contains(b): return .private
            case 192 where b == 168: return .private
            case 100 where (64...127).contains(b): return .private
            default: return .public
            }
        }
        if bytes.allSatisfy({ $0 == 0 }) || isLoopback { return .local }
        if bytes[0] == 0xFF || (bytes[0] == 0xFE && bytes[1] & 0xC0 == 0x80) { return .local }  // multicast, link-local
        if bytes[0] & 0xFE == 0xFC { return .private }
        return .public
    }

    /// 127.0.0.0/8 or ::1.
    public var isLoopback: Bool {
        isIPv4 ? bytes[0] == 127 : bytes == [UInt8](repeating: 0, count: 15) + [1]
    }
}
