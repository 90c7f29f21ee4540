#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import NIOPosix
import PunchWire

/// Where a STUN server is: a host name or IP literal and a port, as a person writes it.
///
/// ```swift
/// let server = try STUNServerAddress("stun.example.net:3478")
/// let other = try STUNServerAddress("[2001:db8::1]")   // port 3478
/// ```
public struct STUNServerAddress: Hashable, Sendable, CustomStringConvertible {
    /// The default STUN port over UDP and TCP (RFC 8489 §18.6).
    public static let defaultPort: UInt16 = 3478

    /// A host name, or an IPv4 or IPv6 literal (without brackets).
    public var host: String
    /// The UDP port.
    public var port: UInt16

    /// Creates an address from its parts.
    public init(host: String, port: UInt16 = Self.defaultPort) {
        self.host = host
        self.port = port
    }

    /// Creates an address for an endpoint.
    public init(_ endpoint: IPEndpoint) {
        self.init(host: endpoint.address.description, port: endpoint.port)
    }

    /// Parses `HOST:PORT`, `HOST`, `[IPv6]:PORT`, `[IPv6]` or a bare IPv6 literal; a missing port
    /// is ``defaultPort``.
    /// - Throws: ``DiscoveryError/Code/stunInvalidServerAddress``.
    public init(_ text: String) throws {
        func port(_ text: Substring) throws -> UInt16 {
            guard let port = UInt16(text), port != 0 else {
                throw DiscoveryError(.stunInvalidServerAddress, "'\(text)' is not a port number (1-65535)")
            }
            return port
        }
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]") else {
                throw DiscoveryError(.stunInvalidServerAddress, "'\(text)' is not [IPv6]:PORT")
            }
            let host = String(text[text.index(after: text.startIndex)..<close])
            let rest = text[text.index(after: close)...]
            guard (try? IPAddress(host))?.isIPv4 == false else {
                throw DiscoveryError(.stunInvalidServerAddress, "'\(host)' in brackets is not an IPv6 address")
            }
            if rest.isEmpty {
                self.init(host: host)
            } else {
                guard rest.hasPrefix(":") else {
                    throw DiscoveryError(.stunInvalidServerAddress, "'\(text)' is not [IPv6]:PORT")
                }
                self.init(host: host, port: try port(rest.dropFirst()))
            }
            return
        }
        if text.filter({ $0 == ":" }).count > 1 {
            // A bare IPv6 literal: its colons are not a port separator.
            guard (try? IPAddress(text)) != nil else {
                throw DiscoveryError(.stunInvalidServerAddress, "'\(text)' is not HOST:PORT; write an IPv6 server as [IPv6]:PORT")
            }
            self.init(host: text)
            return
        }
        let parts = text.split(separator: ":", omittingEmptySubsequences: false)
        let host = String(parts[0])
        guard !host.isEmpty, host.utf8.count <= 253, !host.contains(where: { $0.isWhitespace || $0 == "/" }) else {
            throw DiscoveryError(.stunInvalidServerAddress, "'\(text)' is not HOST:PORT")
        }
        self.init(host: host, port: parts.count == 2 ? try port(parts[1]) : Self.defaultPort)
    }

    /// `HOST:PORT`, or `[IPv6]:PORT`.
    public var description: String {
        host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
    }

    /// The endpoint of this address in `family` (IPv4 or IPv6): the literal itself, or the first
    /// address the system resolver returns for the name. Resolution runs on NIO's thread pool.
    /// - Parameter ipv4: `true` for an IPv4 address, `false` for IPv6.
    /// - Throws: ``DiscoveryError/Code/stunResolutionFailed``, or
    ///   ``DiscoveryError/Code/stunAddressFamilyMismatch`` for a literal of the other family.
    public func resolve(ipv4: Bool) async throws -> IPEndpoint {
        if let literal = try? IPAddress(host) {
            guard literal.isIPv4 == ipv4 else {
                throw DiscoveryError(
                    .stunAddressFamilyMismatch,
                    "\(self) is an IPv\(literal.isIPv4 ? 4 : 6) address but the socket is IPv\(ipv4 ? 4 : 6); use a socket of that family")
            }
            return IPEndpoint(address: literal, port: port)
        }
        let host = self.host
        let address = try await NIOThreadPool.singleton.runIfActive { () throws -> IPAddress in
            try Self.lookUp(host, ipv4: ipv4)
        }
        return IPEndpoint(address: address, port: port)
    }

    /// getaddrinfo for one family; blocking.
    private static func lookUp(_ host: String, ipv4: Bool) throws -> IPAddress {
        var hints = addrinfo()
        hints.ai_family = ipv4 ? AF_INET : AF_INET6
        #if canImport(Darwin)
        hints.ai_socktype = SOCK_DGRAM
        #else
        hints.ai_socktype = Int32(SOCK_DGRAM.rawValue)
        #endif
        var result: UnsafeMutablePointer<addrinfo>?
        let status = getaddrinfo(host, nil, &hints, &result)
        guard status == 0, let first = result else {
            let reason = status == 0 ? "no address" : String(cString: gai_strerror(status))
            throw DiscoveryError(.stunResolutionFailed, "cannot resolve \(host) to an IPv\(ipv4 ? 4 : 6) address: \(reason)")
        }
        defer { freeaddrinfo(result) }
        guard let socketAddress = first.pointee.ai_addr else {
            throw DiscoveryError(.stunResolutionFailed, "\(host) resolved to an empty address")
        }
        let bytes: [UInt8]
        if ipv4 {
            bytes = socketAddress.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { pointer in
                withUnsafeBytes(of: pointer.pointee.sin_addr) { Array($0) }
            }
        } else {
            bytes = socketAddress.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { pointer in
                withUnsafeBytes(of: pointer.pointee.sin6_addr) { Array($0) }
            }
        }
        return try IPAddress(bytes: bytes)
    }
}
