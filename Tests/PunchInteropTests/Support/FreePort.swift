import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// Ports for servers the interop tests start (coturn, `punch relay --stun-port`), which bind UDP
/// *and* TCP on them.
///
/// A port taken by binding port 0 comes from the kernel's ephemeral range, where any concurrently
/// running test's outgoing TCP connection may take it before the server binds: coturn then kept
/// failing with "Address already in use" on its TCP listener and never answered (CI, session 6).
/// So the port is chosen below the ephemeral range (Linux's default and this machine's
/// `net.ipv4.ip_local_port_range` start at 32768), where only explicit binds land, and checked free
/// for both protocols.
enum FreePort {
    /// The range ports are drawn from: below the ephemeral range.
    static let range: ClosedRange<UInt16> = 20_000...32_000

    /// A port free for UDP and TCP on every address, with the `count - 1` ports after it free too.
    static func find(on addresses: [String] = ["127.0.0.1"], count: Int = 1) throws -> UInt16 {
        for _ in 0..<200 {
            let port = UInt16.random(in: range.lowerBound...(range.upperBound - UInt16(count)))
            let free = addresses.allSatisfy { address in
                (0..<count).allSatisfy { offset in
                    canBind(address, port + UInt16(offset), udp: true) && canBind(address, port + UInt16(offset), udp: false)
                }
            }
            if free { return port }
        }
        throw ToolMissing("no port in \(range) free for UDP and TCP on \(addresses) (\(count) in a row)")
    }

    /// Whether an IPv4 socket of the kind binds to address:port now (and releases it at once).
    private static func canBind(_ address: String, _ port: UInt16, udp: Bool) -> Bool {
        let descriptor = socket(AF_INET, Int32(udp ? SOCK_DGRAM.rawValue : SOCK_STREAM.rawValue), 0)
        guard descriptor >= 0 else { return false }
        defer { close(descriptor) }
        var socketAddress = sockaddr_in()
        socketAddress.sin_family = sa_family_t(AF_INET)
        socketAddress.sin_port = port.bigEndian
        guard inet_pton(AF_INET, address, &socketAddress.sin_addr) == 1 else { return false }
        return withUnsafePointer(to: &socketAddress) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
        }
    }
}
