import Foundation
#if canImport(FoundationXML)
import FoundationXML
#endif

/// What Punch needs from a UPnP device description (UPnP Device Architecture 1.1 §2.3): the
/// WAN connection services and their control URLs, read with Foundation's `XMLParser`.
struct UPnPDescription: Hashable, Sendable {
    struct Service: Hashable, Sendable {
        var serviceType: String
        var controlURL: String
    }

    /// The service types a port-mapping client can use, best first: IGDv2's WANIPConnection:2
    /// (AddAnyPortMapping), then WANIPConnection:1 and WANPPPConnection:1.
    static let preferredServiceTypes = [
        "urn:schemas-upnp-org:service:WANIPConnection:2",
        "urn:schemas-upnp-org:service:WANIPConnection:1",
        "urn:schemas-upnp-org:service:WANPPPConnection:1",
    ]

    var urlBase: String?
    var services: [Service]

    /// The best WAN connection service, if the device has one.
    var wanConnection: Service? {
        for type in Self.preferredServiceTypes {
            if let service = services.first(where: { $0.serviceType == type }) { return service }
        }
        return nil
    }

    /// Parses a device description.
    /// - Parameters:
    ///   - data: the XML.
    ///   - maximumElements: the most elements read; a larger document is refused.
    /// - Throws: ``PortMappingError`` `.malformedXML`, `.responseTooLarge`.
    static func parse(_ data: [UInt8], maximumElements: Int) throws -> UPnPDescription {
        let collector = XMLCollector(maximumElements: maximumElements, keep: ["URLBase", "serviceType", "controlURL"], groupBy: "service")
        try collector.parse(data)
        var services: [Service] = []
        for group in collector.groups {
            if let type = group["serviceType"], let control = group["controlURL"] {
                services.append(Service(serviceType: type, controlURL: control))
            }
        }
        return UPnPDescription(urlBase: collector.values["URLBase"], services: services)
    }
}

/// Collects the text of chosen leaf elements (by local name, prefixes ignored), optionally
/// grouped by an enclosing element. External entities are not resolved.
final class XMLCollector: NSObject, XMLParserDelegate {
    let maximumElements: Int
    let keep: Set<String>
    let groupBy: String?

    /// The last value of each kept element, document-wide.
    private(set) var values: [String: String] = [:]
    /// The kept elements inside each `groupBy` element, in order.
    private(set) var groups: [[String: String]] = []
    /// The most groups kept (a description lists a few services; a hostile one lists thousands).
    static let maximumGroups = 64
    /// The longest text kept for one element.
    static let maximumTextLength = 2048

    private var elementCount = 0
    private var depth = 0
    private var text = ""
    private var current: [String: String]?
    private var failure: PortMappingError?

    init(maximumElements: Int, keep: Set<String>, groupBy: String? = nil) {
        self.maximumElements = maximumElements
        self.keep = keep
        self.groupBy = groupBy
    }

    func parse(_ data: [UInt8]) throws {
        let parser = XMLParser(data: Data(data))
        parser.shouldResolveExternalEntities = false
        parser.shouldProcessNamespaces = false
        parser.delegate = self
        let ok = parser.parse()
        if let failure { throw failure }
        guard ok else {
            throw PortMappingError(.malformedXML, "the XML does not parse: \(parser.parserError.map { "\($0)" } ?? "unknown error")")
        }
        // swift-corelibs-foundation's parser accepts a document cut off inside an element;
        // count the nesting ourselves.
        guard elementCount > 0, depth == 0 else {
            throw PortMappingError(.malformedXML, "the XML document is incomplete (\(depth) elements left open)")
        }
    }

    private static func localName(_ name: String) -> String {
        name.split(separator: ":").last.map(String.init) ?? name
    }

    func parser(_ parser: XMLParser, didStartElement elementName: String, namespaceURI: String?, qualifiedName: String?, attributes: [String: String] = [:]) {
        elementCount += 1
        depth += 1
        if elementCount > maximumElements {
            failure = PortMappingError(.responseTooLarge, "the XML has more than \(maximumElements) elements")
            parser.abortParsing()
            return
        }
        if Self.localName(elementName) == groupBy {
            if groups.count >= Self.maximumGroups {
                failure = PortMappingError(.responseTooLarge, "the XML has more than \(Self.maximumGroups) <\(groupBy!)> elements")
                parser.abortParsing()
                return
            }
            current = [:]
        }
        text = ""
    }

    func parser(_ parser: XMLParser, foundCharacters string: String) {
        if text.count < Self.maximumTextLength { text += string.prefix(Self.maximumTextLength - text.count) }
    }

    func parser(_ parser: XMLParser, didEndElement elementName: String, namespaceURI: String?, qualifiedName: String?) {
        depth -= 1
        let name = Self.localName(elementName)
        if keep.contains(name) {
            let value = text.trimmingCharacters(in: .whitespacesAndNewlines)
            values[name] = value
            current?[name] = value
        }
        if name == groupBy, let current {
            groups.append(current)
            self.current = nil
        }
        text = ""
    }
}
