import Foundation
import PunchWire

/// Finds the default gateway in Linux's routing table (`/proc/net/route` for IPv4,
/// `/proc/net/ipv6_route` for IPv6). The parsers are pure functions of the files' text so they
/// can be tested with fixed input.
///
/// ```swift
/// let gateway = try DefaultGateway.ipv4()   // 10.0.1.1 behind a home router
/// ```
public enum DefaultGateway {
    /// The largest routing-table file read; a table longer than this is cut here (routers with
    /// full BGP tables are not where a port-mapping client runs).
    public static let maximumRouteFileBytes = 1 << 20

    /// The IPv4 default gateway with the lowest metric.
    /// - Parameter routeFile: the file to read; `/proc/net/route` by default.
    /// - Throws: ``PortMappingError`` `.noGateway` if the file is unreadable or has no default route.
    public static func ipv4(routeFile: String = "/proc/net/route") throws -> IPAddress {
        guard let address = parseIPv4(try read(routeFile)) else {
            throw PortMappingError(.noGateway, "\(routeFile) has no IPv4 default route via a gateway; pass the gateway's address explicitly")
        }
        return address
    }

    /// The IPv6 default gateway with the lowest metric.
    /// - Parameter routeFile: the file to read; `/proc/net/ipv6_route` by default.
    /// - Throws: ``PortMappingError`` `.noGateway` if the file is unreadable or has no default route.
    public static func ipv6(routeFile: String = "/proc/net/ipv6_route") throws -> IPAddress {
        guard let address = parseIPv6(try read(routeFile)) else {
            throw PortMappingError(.noGateway, "\(routeFile) has no IPv6 default route via a gateway; pass the gateway's address explicitly")
        }
        return address
    }

    /// Parses `/proc/net/route`: columns Iface, Destination, Gateway, Flags, RefCnt, Use, Metric,
    /// Mask, ...; addresses are the kernel's 32-bit value in hex, in host (little-endian) order.
    /// Returns the gateway of the up default route (destination and mask 0, RTF_UP|RTF_GATEWAY)
    /// with the lowest metric.
    public static func parseIPv4(_ text: String) -> IPAddress? {
        var best: (metric: UInt32, address: IPAddress)?
        for line in text.split(separator: "\n").dropFirst() {
            let fields = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
            guard fields.count >= 8, let destination = UInt32(fields[1], radix: 16), let gateway = UInt32(fields[2], radix: 16),
                let flags = UInt32(fields[3], radix: 16), let metric = UInt32(fields[6]), let mask = UInt32(fields[7], radix: 16)
            else { continue }
            guard destination == 0, mask == 0, gateway != 0, flags & 0x3 == 0x3 else { continue }
            // The kernel prints the in-memory (network-order) word as a host-order integer.
            let bytes = (0..<4).map { UInt8(truncatingIfNeeded: gateway.littleEndian >> (8 * UInt32($0))) }
            let address = IPAddress.v4(.init(bytes[0], bytes[1], bytes[2], bytes[3]))
            if best == nil || metric < best!.metric { best = (metric, address) }
        }
        return best?.address
    }

    /// Parses `/proc/net/ipv6_route`: destination (32 hex), prefix length, source, source prefix
    /// length, next hop (32 hex), metric, refcount, use, flags, interface. Returns the next hop
    /// of the up default route (::/0 with RTF_UP|RTF_GATEWAY) with the lowest metric.
    public static func parseIPv6(_ text: String) -> IPAddress? {
        var best: (metric: UInt32, address: IPAddress)?
        for line in text.split(separator: "\n") {
            let fields = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
            guard fields.count >= 10, fields[0].count == 32, fields[4].count == 32,
                let prefixLength = UInt8(fields[1], radix: 16), let metric = UInt32(fields[5], radix: 16),
                let flags = UInt32(fields[8], radix: 16)
            else { continue }
            guard prefixLength == 0, fields[0].allSatisfy({ $0 == "0" }), flags & 0x3 == 0x3,
                let nextHop = hexBytes(fields[4]), nextHop.contains(where: { $0 != 0 }),
                let address = try? IPAddress(bytes: nextHop)
            else { continue }
            if best == nil || metric < best!.metric { best = (metric, address) }
        }
        return best?.address
    }

    private static func hexBytes(_ text: Substring) -> [UInt8]? {
        var bytes: [UInt8] = []
        var index = text.startIndex
        while index < text.endIndex {
            let next = text.index(index, offsetBy: 2)
            guard let byte = UInt8(text[index..<next], radix: 16) else { return nil }
            bytes.append(byte)
            index = next
        }
        return bytes
    }

    private static func read(_ path: String) throws -> String {
        guard let handle = FileHandle(forReadingAtPath: path) else {
            throw PortMappingError(.noGateway, "cannot read \(path); pass the gateway's address explicitly")
        }
        defer { try? handle.close() }
        let data = (try? handle.read(upToCount: maximumRouteFileBytes)) ?? nil
        return String(decoding: data ?? Data(), as: UTF8.self)
    }
}
