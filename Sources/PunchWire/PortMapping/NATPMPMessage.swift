/// NAT-PMP (RFC 6886) messages: requests a client sends to its gateway's UDP port 5351 and the
/// gateway's responses. Pure values; ``NATPMPRequest/encoded`` and ``NATPMPResponse/decode(_:)``
/// are the whole wire format.
///
/// ```swift
/// let request = NATPMPRequest.map(.udp, internalPort: 4001, suggestedExternalPort: 4001, lifetime: 7200)
/// send(request.encoded)
/// let response = try NATPMPResponse.decode(datagram)
/// ```
public enum NATPMP {
    /// The only NAT-PMP version (RFC 6886 §3).
    public static let version: UInt8 = 0
    /// The gateway's UDP port for requests (RFC 6886 §3.1).
    public static let serverPort: UInt16 = 5351
    /// The port clients listen on for the gateway's multicast announcements (RFC 6886 §3.2.1).
    public static let announcePort: UInt16 = 5350
    /// The largest NAT-PMP message: a mapping response, 16 bytes (RFC 6886 §3.3). Longer
    /// datagrams are refused as `.tooLarge` rather than silently truncated.
    public static let maximumMessageLength = 16
    /// The lifetime RFC 6886 §3.3 recommends asking for: two hours.
    public static let recommendedLifetime: UInt32 = 7200
}

/// A NAT-PMP result code (RFC 6886 §3.5).
public struct NATPMPResultCode: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public let rawValue: UInt16
    public init(rawValue: UInt16) { self.rawValue = rawValue }

    public static let success = Self(rawValue: 0)
    public static let unsupportedVersion = Self(rawValue: 1)
    /// Not authorized or refused: the gateway supports mapping but it is turned off.
    public static let notAuthorized = Self(rawValue: 2)
    /// The gateway has no external address yet (no DHCP lease, for example).
    public static let networkFailure = Self(rawValue: 3)
    /// The gateway cannot create more mappings now.
    public static let outOfResources = Self(rawValue: 4)
    public static let unsupportedOpcode = Self(rawValue: 5)

    public var description: String {
        switch self {
        case .success: "SUCCESS"
        case .unsupportedVersion: "UNSUPPORTED_VERSION"
        case .notAuthorized: "NOT_AUTHORIZED"
        case .networkFailure: "NETWORK_FAILURE"
        case .outOfResources: "OUT_OF_RESOURCES"
        case .unsupportedOpcode: "UNSUPPORTED_OPCODE"
        default: "RESULT_\(rawValue)"
        }
    }
}

/// A request from a NAT-PMP client.
public enum NATPMPRequest: Hashable, Sendable {
    /// Asks for the gateway's external IPv4 address (opcode 0, RFC 6886 §3.2).
    case externalAddress
    /// Creates, renews or (with lifetime 0) deletes a mapping (opcodes 1 and 2, RFC 6886 §3.3,
    /// §3.4). A suggested external port of 0 lets the gateway choose.
    case map(PortMappingTransport, internalPort: UInt16, suggestedExternalPort: UInt16, lifetime: UInt32)

    /// The request's opcode: 0, 1 (UDP) or 2 (TCP).
    public var opcode: UInt8 {
        switch self {
        case .externalAddress: 0
        case .map(let transport, _, _, _): NATPMPRequest.opcode(for: transport)
        }
    }

    static func opcode(for transport: PortMappingTransport) -> UInt8 {
        transport == .udp ? 1 : 2
    }

    /// The request on the wire: 2 bytes for the address request, 12 for a mapping request.
    public var encoded: [UInt8] {
        switch self {
        case .externalAddress:
            return [NATPMP.version, 0]
        case .map(_, let internalPort, let suggestedExternalPort, let lifetime):
            // RFC 6886 §3.3: version, opcode, 16 reserved bits (zero), internal port,
            // suggested external port, requested lifetime in seconds.
            var bytes: [UInt8] = [NATPMP.version, opcode, 0, 0]
            bytes.reserveCapacity(12)
            BigEndianBytes.append(internalPort, to: &bytes)
            BigEndianBytes.append(suggestedExternalPort, to: &bytes)
            BigEndianBytes.append(lifetime, to: &bytes)
            return bytes
        }
    }
}

/// A response from a NAT-PMP gateway.
public struct NATPMPResponse: Hashable, Sendable {
    /// What the response answers, with the fields that only a successful response carries.
    public enum Body: Hashable, Sendable {
        /// The answer to an external-address request.
        case externalAddress(IPAddress.IPv4Bytes)
        /// The answer to a mapping request: the mapped external port and the granted lifetime.
        case mapping(PortMappingTransport, internalPort: UInt16, externalPort: UInt16, lifetime: UInt32)
        /// An error response; RFC 6886 §3.5 leaves the fields after the epoch undefined, and
        /// some gateways send only the 8-byte header.
        case failure(requestOpcode: UInt8)
    }

    /// The result code; anything but ``NATPMPResultCode/success`` comes with a ``Body/failure(requestOpcode:)`` body.
    public var resultCode: NATPMPResultCode
    /// Seconds since the gateway's port-mapping state began (RFC 6886 §3.6); going backwards
    /// means the gateway rebooted and lost its mappings.
    public var epoch: UInt32
    public var body: Body

    public init(resultCode: NATPMPResultCode, epoch: UInt32, body: Body) {
        self.resultCode = resultCode
        self.epoch = epoch
        self.body = body
    }

    /// The opcode of the request this answers (the response carries 128 + this).
    public var requestOpcode: UInt8 {
        switch body {
        case .externalAddress: 0
        case .mapping(let transport, _, _, _): NATPMPRequest.opcode(for: transport)
        case .failure(let opcode): opcode
        }
    }

    /// The response on the wire (what a gateway sends; used by tests and fake gateways).
    public var encoded: [UInt8] {
        var bytes: [UInt8] = [NATPMP.version, 128 + requestOpcode]
        BigEndianBytes.append(resultCode.rawValue, to: &bytes)
        BigEndianBytes.append(epoch, to: &bytes)
        switch body {
        case .externalAddress(let address):
            bytes += address.array
        case .mapping(_, let internalPort, let externalPort, let lifetime):
            BigEndianBytes.append(internalPort, to: &bytes)
            BigEndianBytes.append(externalPort, to: &bytes)
            BigEndianBytes.append(lifetime, to: &bytes)
        case .failure:
            break
        }
        return bytes
    }

    /// Decodes one datagram from a NAT-PMP gateway.
    ///
    /// - Parameter datagram: the whole UDP payload.
    /// - Returns: the response.
    /// - Throws: ``WireError``: `.truncated` if shorter than its opcode requires (8 bytes for an
    ///   error response, 12 for the address, 16 for a mapping); `.tooLarge` above
    ///   ``NATPMP/maximumMessageLength``; `.trailingBytes` if a successful response is longer than
    ///   its layout; `.wrongVersion` if the version is not 0; `.unexpectedOpcode` for a request
    ///   (opcode below 128) or an opcode NAT-PMP does not define.
    public static func decode<Bytes: RandomAccessCollection>(_ datagram: Bytes) throws -> NATPMPResponse
    where Bytes.Element == UInt8, Bytes.Index == Int {
        guard datagram.count <= NATPMP.maximumMessageLength else {
            throw WireError(.tooLarge, "a NAT-PMP response has at most \(NATPMP.maximumMessageLength) bytes; this one has \(datagram.count)")
        }
        guard datagram.count >= 4 else {
            throw WireError(.truncated, "a NAT-PMP response has at least 8 bytes; this one has \(datagram.count)")
        }
        let base = datagram.startIndex
        let version = datagram[base]
        guard version == NATPMP.version else {
            throw WireError(.wrongVersion, "NAT-PMP version is 0; the response says \(version)")
        }
        let opcode = datagram[base + 1]
        guard opcode >= 128, opcode - 128 <= 2 else {
            throw WireError(.unexpectedOpcode, "opcode \(opcode) is not a NAT-PMP response (128, 129 or 130)")
        }
        let requestOpcode = opcode - 128
        guard datagram.count >= 8 else {
            throw WireError(.truncated, "a NAT-PMP response has at least 8 bytes; this one has \(datagram.count)")
        }
        let resultCode = NATPMPResultCode(rawValue: BigEndianBytes.uint16(datagram, at: 2))
        let epoch = BigEndianBytes.uint32(datagram, at: 4)
        guard resultCode == .success else {
            return NATPMPResponse(resultCode: resultCode, epoch: epoch, body: .failure(requestOpcode: requestOpcode))
        }
        let expected = requestOpcode == 0 ? 12 : 16
        guard datagram.count >= expected else {
            throw WireError(.truncated, "a successful NAT-PMP response to opcode \(requestOpcode) has \(expected) bytes; this one has \(datagram.count)")
        }
        guard datagram.count == expected else {
            throw WireError(.trailingBytes, "\(datagram.count - expected) bytes follow the \(expected)-byte NAT-PMP response")
        }
        if requestOpcode == 0 {
            let a = datagram[base + 8], b = datagram[base + 9], c = datagram[base + 10], d = datagram[base + 11]
            return NATPMPResponse(resultCode: resultCode, epoch: epoch, body: .externalAddress(.init(a, b, c, d)))
        }
        let transport: PortMappingTransport = requestOpcode == 1 ? .udp : .tcp
        return NATPMPResponse(
            resultCode: resultCode, epoch: epoch,
            body: .mapping(
                transport, internalPort: BigEndianBytes.uint16(datagram, at: 8), externalPort: BigEndianBytes.uint16(datagram, at: 10),
                lifetime: BigEndianBytes.uint32(datagram, at: 12)))
    }
}
