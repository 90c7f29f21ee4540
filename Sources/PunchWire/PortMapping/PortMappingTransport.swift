/// The transport protocol a port mapping forwards: what NAT-PMP's opcode, PCP's protocol
/// number and UPnP's `NewProtocol` argument each say in their own way.
public enum PortMappingTransport: String, Hashable, Sendable, CaseIterable, CustomStringConvertible {
    case udp
    case tcp

    /// The IANA protocol number PCP carries (RFC 6887 §11.1): 17 for UDP, 6 for TCP.
    public var ianaProtocolNumber: UInt8 {
        switch self {
        case .udp: 17
        case .tcp: 6
        }
    }

    /// The transport for an IANA protocol number, or `nil` for one that is neither UDP nor TCP.
    public init?(ianaProtocolNumber: UInt8) {
        switch ianaProtocolNumber {
        case 17: self = .udp
        case 6: self = .tcp
        default: return nil
        }
    }

    /// `"UDP"` or `"TCP"`, as UPnP-IGD writes it.
    public var upnpName: String { rawValue.uppercased() }

    public var description: String { upnpName }
}

/// Big-endian reads and writes on byte arrays, shared by the NAT-PMP and PCP codecs.
enum BigEndianBytes {
    static func append(_ value: UInt16, to bytes: inout [UInt8]) {
        bytes.append(UInt8(truncatingIfNeeded: value >> 8))
        bytes.append(UInt8(truncatingIfNeeded: value))
    }

    static func append(_ value: UInt32, to bytes: inout [UInt8]) {
        for shift in stride(from: 24, through: 0, by: -8) { bytes.append(UInt8(truncatingIfNeeded: value >> UInt32(shift))) }
    }

    /// Reads at an offset from the collection's start; the caller has checked the length.
    static func uint16<C: RandomAccessCollection>(_ bytes: C, at offset: Int) -> UInt16 where C.Element == UInt8, C.Index == Int {
        let i = bytes.startIndex + offset
        return UInt16(bytes[i]) << 8 | UInt16(bytes[i + 1])
    }

    static func uint32<C: RandomAccessCollection>(_ bytes: C, at offset: Int) -> UInt32 where C.Element == UInt8, C.Index == Int {
        let i = bytes.startIndex + offset
        return (0..<4).reduce(UInt32(0)) { $0 << 8 | UInt32(bytes[i + $1]) }
    }
}
