import Foundation
import PunchWire

/// SSDP search (UPnP Device Architecture 1.1 §1.3): the M-SEARCH request and the parts of a
/// reply Punch reads. Pure text in, text out.
enum SSDP {
    /// The SSDP multicast group and port.
    static let multicastEndpoint = IPEndpoint(address: .v4(.init(239, 255, 255, 250)), port: 1900)
    /// The device types searched for: IGDv1 and IGDv2.
    static let searchTargets = [
        "urn:schemas-upnp-org:device:InternetGatewayDevice:1",
        "urn:schemas-upnp-org:device:InternetGatewayDevice:2",
    ]

    /// An M-SEARCH request. MX is the most seconds a device may wait before answering.
    static func search(target: String, mx: Int) -> [UInt8] {
        Array("""
            M-SEARCH * HTTP/1.1\r
            HOST: 239.255.255.250:1900\r
            MAN: "ssdp:discover"\r
            MX: \(mx)\r
            ST: \(target)\r
            \r

            """.utf8)
    }

    /// The LOCATION header of a positive search reply (`HTTP/1.1 200 OK`), or `nil`.
    static func location(inReply bytes: [UInt8]) -> String? {
        let text = String(decoding: bytes, as: UTF8.self)
        let lines = text.split(separator: "\r\n")
        guard let status = lines.first, status.hasPrefix("HTTP/1.1 200") || status.hasPrefix("HTTP/1.0 200") else { return nil }
        for line in lines.dropFirst() {
            guard let colon = line.firstIndex(of: ":") else { continue }
            if line[..<colon].trimmingWhitespace().lowercased() == "location" {
                return line[line.index(after: colon)...].trimmingWhitespace()
            }
        }
        return nil
    }
}

/// An `http://IP:PORT/path` URL, as UPnP devices give in LOCATION and controlURL.
struct DeviceURL: Hashable, Sendable, CustomStringConvertible {
    var host: IPEndpoint
    var path: String

    /// Parses an absolute URL, or a relative one against `base`.
    /// - Throws: ``PortMappingError`` `.malformedXML` unless it is http with an IPv4 or IPv6
    ///   literal host (a name would need DNS, and a device never needs one on its LAN).
    init(_ text: String, relativeTo base: DeviceURL? = nil) throws {
        let baseURL = base.flatMap { URL(string: $0.description) }
        guard let url = URL(string: text, relativeTo: baseURL)?.absoluteURL, url.scheme?.lowercased() == "http",
            let hostText = url.host, let address = try? IPAddress(hostText.trimmingCharacters(in: CharacterSet(charactersIn: "[]")))
        else {
            throw PortMappingError(.malformedXML, "'\(text.prefix(200))' is not an http URL with an IP address")
        }
        let port = url.port ?? 80
        guard let port16 = UInt16(exactly: port) else {
            throw PortMappingError(.malformedXML, "'\(text.prefix(200))' has a bad port")
        }
        host = IPEndpoint(address: address, port: port16)
        var path = url.path.isEmpty ? "/" : url.path
        if let query = url.query { path += "?" + query }
        self.path = path
    }

    var description: String { "http://\(host)\(path)" }
}
