import PunchWire

/// An error from PunchPortMapping: gateway discovery, NAT-PMP, PCP, UPnP-IGD, the mapper.
///
/// Compare errors by ``code``; the ``message`` is for people. New codes may appear in any release.
///
/// ```swift
/// do { _ = try await client.map(.udp, internalPort: 4001, lifetime: 7200) }
/// catch let error as PortMappingError where error.code == .timedOut { /* no NAT-PMP gateway */ }
/// ```
public struct PortMappingError: PunchError {
    /// A stable identifier for the kind of failure.
    public struct Code: PunchErrorCode {
        /// The code's stable name, for logs and JSON.
        public let name: String
        /// Creates a code. Codes are defined as static members below.
        public init(_ name: String) { self.name = name }

        /// No default gateway in the routing table, and none was given.
        public static let noGateway = Code("portMapping.noGateway")
        /// The gateway did not answer (after every retransmission).
        public static let timedOut = Code("portMapping.timedOut")
        /// A reply came from an address or port other than the gateway's; it was ignored.
        public static let unexpectedSource = Code("portMapping.unexpectedSource")
        /// A reply did not decode (truncated, oversized, wrong version, bad field).
        public static let malformedResponse = Code("portMapping.malformedResponse")
        /// A PCP reply did not echo the request's mapping nonce (RFC 6887 §11.4).
        public static let nonceMismatch = Code("portMapping.nonceMismatch")
        /// A reply answered a different request (other opcode, transport or internal port).
        public static let mismatchedResponse = Code("portMapping.mismatchedResponse")
        /// The gateway does not speak this protocol version (PCP to a NAT-PMP-only gateway).
        public static let unsupportedVersion = Code("portMapping.unsupportedVersion")
        /// The gateway answered with a NAT-PMP or PCP result code other than success.
        public static let gatewayRefused = Code("portMapping.gatewayRefused")
        /// No UPnP Internet Gateway Device answered the SSDP search.
        public static let noUPnPDevice = Code("portMapping.noUPnPDevice")
        /// The device description has no WANIPConnection or WANPPPConnection service.
        public static let noWANConnectionService = Code("portMapping.noWANConnectionService")
        /// An HTTP exchange with the UPnP device failed (connection, status, framing).
        public static let httpFailure = Code("portMapping.httpFailure")
        /// A response was larger than the configured limit; it was not read further.
        public static let responseTooLarge = Code("portMapping.responseTooLarge")
        /// A device description or SOAP response is not the XML expected.
        public static let malformedXML = Code("portMapping.malformedXML")
        /// The UPnP device answered with a SOAP fault; ``PortMappingError/upnpErrorCode`` has its code.
        public static let soapFault = Code("portMapping.soapFault")
        /// Every external port tried was taken (UPnP error 718, ConflictInMappingEntry).
        public static let conflict = Code("portMapping.conflict")
        /// A socket could not be opened, bound or used.
        public static let socketFailure = Code("portMapping.socketFailure")
        /// No protocol could create the mapping; the message lists why each one failed.
        public static let noProtocolAvailable = Code("portMapping.noProtocolAvailable")
        /// An argument or configuration value is out of range.
        public static let invalidArgument = Code("portMapping.invalidArgument")
        /// The mapper was shut down.
        public static let shutDown = Code("portMapping.shutDown")
        /// The gateway lost the mapping (it restarted, or renewal failed past the lifetime).
        public static let mappingLost = Code("portMapping.mappingLost")
    }

    /// What kind of failure this is; stable across releases.
    public let code: Code
    /// What happened and what to do about it.
    public let message: String
    /// The UPnP error code of a SOAP fault (718 conflict, 714 no such entry, ...), if any.
    public let upnpErrorCode: Int?

    /// Creates an error.
    public init(_ code: Code, _ message: String, upnpErrorCode: Int? = nil) {
        self.code = code
        self.message = message
        self.upnpErrorCode = upnpErrorCode
    }

    public static func == (lhs: PortMappingError, rhs: PortMappingError) -> Bool { lhs.code == rhs.code }
    public func hash(into hasher: inout Hasher) { hasher.combine(code) }
}
