import Foundation
import Logging
import NIOCore
import NIOPosix
import PunchWire

/// A UPnP Internet Gateway Device client: finds the device by SSDP, reads its description, and
/// maps ports through its WANIPConnection (v1 or v2) or WANPPPConnection service with SOAP.
///
/// ```swift
/// let client = try await UPnPClient.discover()
/// let mapping = try await client.map(.tcp, internalPort: 4001, suggestedExternalPort: 4001, lifetime: 3600)
/// try await client.unmap(.tcp, externalPort: mapping.external.port)
/// ```
public struct UPnPClient: Sendable {
    public struct Configuration: Sendable {
        /// Accept SSDP replies only from this address (the gateway), when set.
        public var gateway: IPAddress?
        /// The device description's URL: skips SSDP when set.
        public var descriptionURL: String?
        /// Where M-SEARCH goes: the SSDP multicast group by default.
        public var searchEndpoint = SSDP.multicastEndpoint
        /// How long each search waits for replies; also its MX (rounded up to whole seconds).
        public var searchTimeout: Duration = .seconds(2)
        /// How many times the search is sent.
        public var searchAttempts = 2
        /// The time limit of each HTTP exchange (description fetch, each SOAP call).
        public var httpTimeout: Duration = .seconds(5)
        /// The largest device description read.
        public var maximumDescriptionBytes = 64 * 1024
        /// The largest SOAP response read.
        public var maximumSOAPResponseBytes = 16 * 1024
        /// The most XML elements parsed in one document.
        public var maximumXMLElements = 2048
        /// The most external ports tried when the device reports a conflict (error 718).
        public var maximumPortAttempts = 8
        /// The mapping's description, as routers list it.
        public var mappingDescription = "punch"

        public init() {}
    }

    public let configuration: Configuration
    /// The chosen WAN connection service type.
    public let serviceType: String
    /// Its control URL.
    let controlURL: DeviceURL
    /// This host's address toward the device: the mapping's internal client.
    public let internalClient: IPAddress
    private let group: any EventLoopGroup

    init(configuration: Configuration, serviceType: String, controlURL: DeviceURL, internalClient: IPAddress, group: any EventLoopGroup) {
        self.configuration = configuration
        self.serviceType = serviceType
        self.controlURL = controlURL
        self.internalClient = internalClient
        self.group = group
    }

    /// Finds an IGD and its WAN connection service.
    /// - Throws: ``PortMappingError``: `.noUPnPDevice`, `.noWANConnectionService`, `.httpFailure`,
    ///   `.timedOut`, `.responseTooLarge`, `.malformedXML`.
    public static func discover(configuration: Configuration = Configuration(), group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
                                logger: Logger = Logger(label: "punch.upnp")) async throws -> UPnPClient {
        let location: DeviceURL
        if let given = configuration.descriptionURL {
            location = try DeviceURL(given)
        } else {
            location = try await search(configuration, group: group)
        }
        logger.debug("upnp: device description at \(location)")
        let response = try await HTTPClient.send(
            .init(method: "GET", host: location.host, path: location.path), maximumBytes: configuration.maximumDescriptionBytes,
            timeout: configuration.httpTimeout, group: group)
        guard response.status == 200 else {
            throw PortMappingError(.httpFailure, "GET \(location) answered \(response.status)")
        }
        let description = try UPnPDescription.parse(response.body, maximumElements: configuration.maximumXMLElements)
        guard let service = description.wanConnection else {
            throw PortMappingError(.noWANConnectionService, "the device at \(location) has no WANIPConnection or WANPPPConnection service")
        }
        let base = try description.urlBase.flatMap { $0.isEmpty ? nil : try DeviceURL($0) } ?? location
        let control = try DeviceURL(service.controlURL, relativeTo: base)
        // The control URL must stay on the device that answered: a description must not send
        // SOAP requests to another host.
        guard control.host.address == location.host.address else {
            throw PortMappingError(.malformedXML, "the control URL \(control) is not on the device \(location.host.address)")
        }
        let internalClient = try await localAddress(toward: try control.host.socketAddress(), group: group)
        return UPnPClient(configuration: configuration, serviceType: service.serviceType, controlURL: control, internalClient: internalClient, group: group)
    }

    /// Sends M-SEARCH and returns the first usable LOCATION.
    static func search(_ configuration: Configuration, group: any EventLoopGroup) async throws -> DeviceURL {
        let socket = try await DatagramSocket.bind(group: group)
        defer { Task { await socket.close() } }
        let target = try configuration.searchEndpoint.socketAddress()
        let mx = max(1, Int((configuration.searchTimeout.secondsDouble).rounded(.up)))
        var rejected: PortMappingError?
        for _ in 0..<max(1, configuration.searchAttempts) {
            for searchTarget in SSDP.searchTargets {
                try await socket.send(SSDP.search(target: searchTarget, mx: mx), to: target)
            }
            let deadline = NIODeadline.now() + TimeAmount(configuration.searchTimeout)
            while let datagram = await socket.receive(until: deadline) {
                guard let sourceText = datagram.source.ipAddress, let source = try? IPAddress(sourceText) else { continue }
                if let gateway = configuration.gateway, source != gateway {
                    rejected = PortMappingError(.unexpectedSource, "an SSDP reply came from \(source), not the gateway \(gateway)")
                    continue
                }
                guard let text = SSDP.location(inReply: datagram.bytes) else { continue }
                guard let url = try? DeviceURL(text), url.host.address == source else {
                    rejected = PortMappingError(.unexpectedSource, "an SSDP reply from \(source) points to '\(text.prefix(100))', another host")
                    continue
                }
                return url
            }
        }
        throw rejected ?? PortMappingError(.noUPnPDevice, "no UPnP Internet Gateway Device answered the SSDP search at \(configuration.searchEndpoint)")
    }

    // MARK: - Actions

    /// GetExternalIPAddress.
    /// - Throws: ``PortMappingError`` `.soapFault` and HTTP errors; `.malformedXML` without an address.
    public func externalAddress() async throws -> IPAddress {
        let out = try await call("GetExternalIPAddress", [], keep: ["NewExternalIPAddress"])
        guard let text = out["NewExternalIPAddress"], let address = try? IPAddress(text) else {
            throw PortMappingError(.malformedXML, "GetExternalIPAddress returned no address ('\(out["NewExternalIPAddress"] ?? "")')")
        }
        return address
    }

    /// Creates or renews a mapping. IGDv2 uses AddAnyPortMapping (the device picks a free port);
    /// otherwise AddPortMapping, moving to another external port on conflict (718) and to a
    /// permanent lease where the device only supports those (725, IGDv1 §2.4.16).
    /// - Returns: the mapping, lifetime 0 for a permanent lease.
    /// - Throws: ``PortMappingError``: `.conflict` when every port tried was taken,
    ///   `.soapFault` for other faults, HTTP errors.
    public func map(_ transport: PortMappingTransport, internalPort: UInt16, suggestedExternalPort: UInt16, lifetime: UInt32) async throws -> GatewayMapping {
        var lease = lifetime
        var externalPort = suggestedExternalPort == 0 ? internalPort : suggestedExternalPort
        if serviceType.hasSuffix("WANIPConnection:2") {
            do {
                let out = try await call("AddAnyPortMapping", arguments(transport, externalPort, internalPort, lease), keep: ["NewReservedPort"])
                if let reserved = out["NewReservedPort"].flatMap({ UInt16($0) }) {
                    return try await finish(transport, internalPort: internalPort, externalPort: reserved, lease: lease)
                }
            } catch let error as PortMappingError where error.upnpErrorCode == 401 || error.upnpErrorCode == 602 {
                // Not implemented after all: fall through to AddPortMapping.
            }
        }
        var attempts = 0
        while true {
            attempts += 1
            do {
                _ = try await call("AddPortMapping", arguments(transport, externalPort, internalPort, lease), keep: [])
                return try await finish(transport, internalPort: internalPort, externalPort: externalPort, lease: lease)
            } catch let error as PortMappingError {
                switch error.upnpErrorCode {
                case 725 where lease != 0:
                    lease = 0
                case 724 where externalPort != internalPort:
                    externalPort = internalPort
                case 718, 729:
                    guard attempts < configuration.maximumPortAttempts else {
                        throw PortMappingError(.conflict, "external \(transport) ports taken: tried \(attempts), last \(externalPort)", upnpErrorCode: error.upnpErrorCode)
                    }
                    externalPort = externalPort < 65535 ? externalPort + 1 : 1024
                default:
                    throw error
                }
                if attempts > configuration.maximumPortAttempts + 2 { throw error }
            }
        }
    }

    private func finish(_ transport: PortMappingTransport, internalPort: UInt16, externalPort: UInt16, lease: UInt32) async throws -> GatewayMapping {
        let address = try await externalAddress()
        return GatewayMapping(
            mappingProtocol: .upnp, transport: transport, internalPort: internalPort,
            external: IPEndpoint(address: address, port: externalPort), lifetime: lease)
    }

    /// Whether the device maps `externalPort` to this host's `internalPort`
    /// (GetSpecificPortMappingEntry; fault 714 means no).
    public func mappingExists(_ transport: PortMappingTransport, externalPort: UInt16, internalPort: UInt16) async throws -> Bool {
        do {
            let out = try await call(
                "GetSpecificPortMappingEntry",
                [("NewRemoteHost", ""), ("NewExternalPort", "\(externalPort)"), ("NewProtocol", transport.upnpName)],
                keep: ["NewInternalPort", "NewInternalClient"])
            return out["NewInternalPort"] == "\(internalPort)" && out["NewInternalClient"].flatMap({ try? IPAddress($0) }) == internalClient
        } catch let error as PortMappingError where error.upnpErrorCode == 714 {
            return false
        }
    }

    /// DeletePortMapping.
    public func unmap(_ transport: PortMappingTransport, externalPort: UInt16) async throws {
        _ = try await call("DeletePortMapping", [("NewRemoteHost", ""), ("NewExternalPort", "\(externalPort)"), ("NewProtocol", transport.upnpName)], keep: [])
    }

    private func arguments(_ transport: PortMappingTransport, _ externalPort: UInt16, _ internalPort: UInt16, _ lease: UInt32) -> [(String, String)] {
        [
            ("NewRemoteHost", ""), ("NewExternalPort", "\(externalPort)"), ("NewProtocol", transport.upnpName),
            ("NewInternalPort", "\(internalPort)"), ("NewInternalClient", "\(internalClient)"), ("NewEnabled", "1"),
            ("NewPortMappingDescription", configuration.mappingDescription), ("NewLeaseDuration", "\(lease)"),
        ]
    }

    /// One SOAP call; returns the kept out-arguments.
    func call(_ action: String, _ arguments: [(String, String)], keep: Set<String>) async throws -> [String: String] {
        let body = SOAP.envelope(action: action, serviceType: serviceType, arguments: arguments)
        let response = try await HTTPClient.send(
            .init(
                method: "POST", host: controlURL.host, path: controlURL.path,
                headers: [("Content-Type", "text/xml; charset=\"utf-8\""), ("SOAPAction", "\"\(serviceType)#\(action)\"")], body: body),
            maximumBytes: configuration.maximumSOAPResponseBytes, timeout: configuration.httpTimeout, group: group)
        return try SOAP.interpret(response, action: action, keep: keep, maximumElements: configuration.maximumXMLElements)
    }
}

/// SOAP 1.1 as UPnP uses it (UPnP Device Architecture 1.1 §3.2).
enum SOAP {
    static func envelope(action: String, serviceType: String, arguments: [(String, String)]) -> [UInt8] {
        var text = #"<?xml version="1.0"?>"# + "\r\n"
        text += #"<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" s:encodingStyle="http://schemas.xmlsoap.org/soap/encoding/">"#
        text += "<s:Body><u:\(action) xmlns:u=\"\(escape(serviceType))\">"
        for (name, value) in arguments { text += "<\(name)>\(escape(value))</\(name)>" }
        text += "</u:\(action)></s:Body></s:Envelope>\r\n"
        return Array(text.utf8)
    }

    static func escape(_ text: String) -> String {
        var out = ""
        for character in text {
            switch character {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            case "'": out += "&apos;"
            default: out.append(character)
            }
        }
        return out
    }

    /// Reads a SOAP response: out-arguments on 200, a typed error for a fault.
    static func interpret(_ response: HTTPResponseParser.Response, action: String, keep: Set<String>, maximumElements: Int) throws -> [String: String] {
        if response.status == 200 {
            let collector = XMLCollector(maximumElements: maximumElements, keep: keep)
            try collector.parse(response.body)
            return collector.values
        }
        // UDA 1.1 §3.2.2: a fault is HTTP 500 with <UPnPError><errorCode> in the detail.
        if response.status == 500 {
            let collector = XMLCollector(maximumElements: maximumElements, keep: ["errorCode", "errorDescription", "faultstring"])
            if (try? collector.parse(response.body)) != nil, let code = collector.values["errorCode"].flatMap({ Int($0) }) {
                let text = collector.values["errorDescription"] ?? collector.values["faultstring"] ?? ""
                let kind: PortMappingError.Code = code == 718 ? .conflict : .soapFault
                return try { throw PortMappingError(kind, "\(action) failed with UPnP error \(code) \(text)", upnpErrorCode: code) }()
            }
        }
        throw PortMappingError(.httpFailure, "\(action) answered HTTP \(response.status)")
    }
}
