#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import NIOCore

/// An IPv4 or IPv6 address as a plain value: what multiaddr, STUN, NAT-PMP and PCP carry.
///
/// ```swift
/// let address = try IPAddress("203.0.113.10")
/// print(address.bytes)   // [203, 0, 113, 10]
/// ```
public enum IPAddress: Hashable, Sendable, CustomStringConvertible {
    /// An IPv4 address, 4 bytes in network order.
    case v4(IPv4Bytes)
    /// An IPv6 address, 16 bytes in network order.
    case v6(IPv6Bytes)

    /// Four bytes of an IPv4 address, network order.
    public struct IPv4Bytes: Hashable, Sendable {
        public var a: UInt8, b: UInt8, c: UInt8, d: UInt8
        public init(_ a: UInt8, _ b: UInt8, _ c: UInt8, _ d: UInt8) {
            (self.a, self.b, self.c, self.d) = (a, b, c, d)
        }
        public var array: [UInt8] { [a, b, c, d] }
    }

    /// Sixteen bytes of an IPv6 address, network order.
    public struct IPv6Bytes: Hashable, Sendable {
        public var high: UInt64
        public var low: UInt64
        public init(high: UInt64, low: UInt64) {
            self.high = high
            self.low = low
        }
        public var array: [UInt8] {
            var out: [UInt8] = []
            out.reserveCapacity(16)
            for shift in stride(from: 56, through: 0, by: -8) { out.append(UInt8(truncatingIfNeeded: high >> UInt64(shift))) }
            for shift in stride(from: 56, through: 0, by: -8) { out.append(UInt8(truncatingIfNeeded: low >> UInt64(shift))) }
            return out
        }
    }

    /// Parses the usual text forms: dotted quad for IPv4, RFC 4291 / RFC 5952 text for IPv6.
    ///
    /// - Throws: ``WireError`` `.malformedValue` if `text` is neither.
    public init(_ text: String) throws {
        if let v4 = Self.parse(text, family: AF_INET) {
            self = v4
        } else if let v6 = Self.parse(text, family: AF_INET6) {
            self = v6
        } else {
            throw WireError(.malformedValue, "'\(text)' is not an IPv4 or IPv6 address")
        }
    }

    /// Creates an address from 4 (IPv4) or 16 (IPv6) bytes in network order.
    ///
    /// - Throws: ``WireError`` `.malformedValue` for any other length.
    public init<Bytes: Collection>(bytes: Bytes) throws where Bytes.Element == UInt8 {
        let array = Array(bytes)
        switch array.count {
        case 4:
            self = .v4(IPv4Bytes(array[0], array[1], array[2], array[3]))
        case 16:
            var high: UInt64 = 0
            var low: UInt64 = 0
            for i in 0..<8 { high = high << 8 | UInt64(array[i]) }
            for i in 8..<16 { low = low << 8 | UInt64(array[i]) }
            self = .v6(IPv6Bytes(high: high, low: low))
        default:
            throw WireError(.malformedValue, "an IP address has 4 or 16 bytes, not \(array.count)")
        }
    }

    /// The address in network byte order: 4 or 16 bytes.
    public var bytes: [UInt8] {
        switch self {
        case .v4(let v4): v4.array
        case .v6(let v6): v6.array
        }
    }

    /// Whether this is an IPv4 address.
    public var isIPv4: Bool {
        if case .v4 = self { return true }
        return false
    }

    /// The canonical text form (dotted quad, or RFC 5952 compressed IPv6).
    public var description: String {
        var bytes = self.bytes
        let family = isIPv4 ? AF_INET : AF_INET6
        var out = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
        let ok = bytes.withUnsafeMutableBytes { raw in
            inet_ntop(family, raw.baseAddress, &out, socklen_t(out.count)) != nil
        }
        precondition(ok, "inet_ntop failed on a well-formed address")
        return String(decoding: out.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    private static func parse(_ text: String, family: Int32) -> IPAddress? {
        // inet_pton rejects embedded NULs only if it sees them; refuse them first.
        guard !text.utf8.contains(0), !text.isEmpty else { return nil }
        var storage = [UInt8](repeating: 0, count: 16)
        let result = storage.withUnsafeMutableBytes { raw in inet_pton(family, text, raw.baseAddress) }
        guard result == 1 else { return nil }
        return try? IPAddress(bytes: storage.prefix(family == AF_INET ? 4 : 16))
    }
}

/// An IP address and a UDP or TCP port.
public struct IPEndpoint: Hashable, Sendable, CustomStringConvertible {
    public var address: IPAddress
    public var port: UInt16

    public init(address: IPAddress, port: UInt16) {
        self.address = address
        self.port = port
    }

    /// Parses `IP:PORT` for IPv4 and `[IP]:PORT` for IPv6.
    ///
    /// - Throws: ``WireError`` `.malformedValue`.
    public init(_ text: String) throws {
        let host: Substring
        let portText: Substring
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]"), text[text.index(after: close)...].hasPrefix(":") else {
                throw WireError(.malformedValue, "'\(text)' is not [IPv6]:PORT")
            }
            host = text[text.index(after: text.startIndex)..<close]
            portText = text[text.index(close, offsetBy: 2)...]
        } else {
            guard let colon = text.lastIndex(of: ":") else {
                throw WireError(.malformedValue, "'\(text)' is not IP:PORT")
            }
            host = text[..<colon]
            guard !host.contains(":") else {
                throw WireError(.malformedValue, "'\(text)' is ambiguous: write an IPv6 endpoint as [IP]:PORT")
            }
            portText = text[text.index(after: colon)...]
        }
        guard let port = UInt16(portText) else {
            throw WireError(.malformedValue, "'\(portText)' is not a port number (0-65535)")
        }
        self.init(address: try IPAddress(String(host)), port: port)
    }

    /// `IP:PORT`, or `[IP]:PORT` for IPv6.
    public var description: String {
        address.isIPv4 ? "\(address):\(port)" : "[\(address)]:\(port)"
    }
}

extension IPEndpoint {
    /// The NIO socket address for this endpoint.
    public func socketAddress() throws -> SocketAddress {
        try SocketAddress(ipAddress: address.description, port: Int(port))
    }

    /// The endpoint of an IPv4 or IPv6 NIO socket address, or `nil` for a Unix domain socket.
    public init?(_ socketAddress: SocketAddress) {
        guard let ip = socketAddress.ipAddress, let port = socketAddress.port,
            let address = try? IPAddress(ip), let port16 = UInt16(exactly: port)
        else { return nil }
        self.init(address: address, port: port16)
    }
}
