/// PCP (RFC 6887) messages: the common request and response headers, the MAP and ANNOUNCE
/// opcodes, options, and result codes. Pure values; ``PCPRequest/encoded`` and
/// ``PCPResponse/decode(_:)`` are the whole wire format.
///
/// ```swift
/// let nonce = PCPNonce.random()
/// let request = PCPRequest.map(clientAddress: myAddress, lifetime: 7200,
///                              PCPMapData(nonce: nonce, transport: .udp, internalPort: 4001))
/// send(request.encoded)
/// let response = try PCPResponse.decode(datagram)
/// ```
public enum PCP {
    /// The PCP version (RFC 6887 §7). NAT-PMP is version 0 on the same port.
    public static let version: UInt8 = 2
    /// The server's UDP port (RFC 6887 §19.1), shared with NAT-PMP.
    public static let serverPort: UInt16 = 5351
    /// The port clients listen on for unsolicited ANNOUNCE responses (RFC 6887 §14.1.1).
    public static let clientPort: UInt16 = 5350
    /// The largest PCP message (RFC 6887 §7): longer datagrams are refused.
    public static let maximumMessageLength = 1100
    /// The common header of requests and responses (RFC 6887 §7.1, §7.2).
    public static let headerLength = 24
    /// The MAP opcode's data (RFC 6887 §11.1).
    public static let mapDataLength = 36
    /// The most options a decoder keeps from one message; 1100 bytes hold at most 275 empty
    /// options, and no real server sends more than a handful.
    public static let maximumOptionCount = 16
}

/// A PCP opcode (RFC 6887 §19.2).
public struct PCPOpcode: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public let rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }

    public static let announce = Self(rawValue: 0)
    public static let map = Self(rawValue: 1)
    public static let peer = Self(rawValue: 2)

    public var description: String {
        switch self {
        case .announce: "ANNOUNCE"
        case .map: "MAP"
        case .peer: "PEER"
        default: "OPCODE_\(rawValue)"
        }
    }
}

/// A PCP result code (RFC 6887 §7.4).
public struct PCPResultCode: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public let rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }

    public static let success = Self(rawValue: 0)
    public static let unsupportedVersion = Self(rawValue: 1)
    public static let notAuthorized = Self(rawValue: 2)
    public static let malformedRequest = Self(rawValue: 3)
    public static let unsupportedOpcode = Self(rawValue: 4)
    public static let unsupportedOption = Self(rawValue: 5)
    public static let malformedOption = Self(rawValue: 6)
    public static let networkFailure = Self(rawValue: 7)
    public static let noResources = Self(rawValue: 8)
    public static let unsupportedProtocol = Self(rawValue: 9)
    public static let userExceededQuota = Self(rawValue: 10)
    public static let cannotProvideExternal = Self(rawValue: 11)
    public static let addressMismatch = Self(rawValue: 12)
    public static let excessiveRemotePeers = Self(rawValue: 13)

    /// Whether RFC 6887 §7.4 calls the failure short-lifetime (retry soon: the lifetime field
    /// says when) rather than long-lifetime (the same request will keep failing).
    public var isShortLifetimeError: Bool {
        [Self.networkFailure, .noResources, .userExceededQuota].contains(self)
    }

    public var description: String {
        let names = [
            "SUCCESS", "UNSUPP_VERSION", "NOT_AUTHORIZED", "MALFORMED_REQUEST", "UNSUPP_OPCODE", "UNSUPP_OPTION",
            "MALFORMED_OPTION", "NETWORK_FAILURE", "NO_RESOURCES", "UNSUPP_PROTOCOL", "USER_EX_QUOTA",
            "CANNOT_PROVIDE_EXTERNAL", "ADDRESS_MISMATCH", "EXCESSIVE_REMOTE_PEERS",
        ]
        return Int(rawValue) < names.count ? names[Int(rawValue)] : "RESULT_\(rawValue)"
    }
}

/// The 96-bit mapping nonce of MAP and PEER (RFC 6887 §11.1): a response that does not echo
/// it is not for this client.
public struct PCPNonce: Hashable, Sendable, CustomStringConvertible {
    /// The 12 bytes.
    public let bytes: [UInt8]

    /// Wraps 12 bytes.
    /// - Throws: ``WireError`` `.malformedValue` for any other length.
    public init(bytes: [UInt8]) throws {
        guard bytes.count == 12 else {
            throw WireError(.malformedValue, "a PCP mapping nonce has 12 bytes, not \(bytes.count)")
        }
        self.bytes = bytes
    }

    /// A nonce from the system's random number generator (RFC 6887 §11.1 asks for one that
    /// off-path attackers cannot guess).
    public static func random() -> PCPNonce {
        var generator = SystemRandomNumberGenerator()
        return try! PCPNonce(bytes: (0..<12).map { _ in UInt8.random(in: .min ... .max, using: &generator) })
    }

    public var description: String { bytes.map { String($0, radix: 16).count == 1 ? "0" + String($0, radix: 16) : String($0, radix: 16) }.joined() }
}

/// The MAP opcode's data (RFC 6887 §11.1): the same layout in requests (suggested external
/// port and address) and responses (assigned ones).
public struct PCPMapData: Hashable, Sendable {
    public var nonce: PCPNonce
    public var transport: PortMappingTransport
    public var internalPort: UInt16
    /// Suggested (request) or assigned (response) external port; 0 in a request lets the server choose.
    public var externalPort: UInt16
    /// Suggested (request) or assigned (response) external address; in a request, the
    /// unspecified IPv4 address (`::ffff:0.0.0.0`) lets the server choose (RFC 6887 §11.1).
    public var externalAddress: IPAddress

    public init(
        nonce: PCPNonce, transport: PortMappingTransport, internalPort: UInt16, externalPort: UInt16 = 0,
        externalAddress: IPAddress = .v4(.init(0, 0, 0, 0))
    ) {
        self.nonce = nonce
        self.transport = transport
        self.internalPort = internalPort
        self.externalPort = externalPort
        self.externalAddress = externalAddress
    }

    var encoded: [UInt8] {
        var bytes = nonce.bytes
        bytes.reserveCapacity(PCP.mapDataLength)
        bytes += [transport.ianaProtocolNumber, 0, 0, 0]
        BigEndianBytes.append(internalPort, to: &bytes)
        BigEndianBytes.append(externalPort, to: &bytes)
        bytes += externalAddress.pcpEncoded
        return bytes
    }

    static func decode(_ bytes: ArraySlice<UInt8>) throws -> PCPMapData {
        let base = bytes.startIndex
        let nonce = try PCPNonce(bytes: Array(bytes[base..<(base + 12)]))
        let number = bytes[base + 12]
        guard let transport = PortMappingTransport(ianaProtocolNumber: number) else {
            throw WireError(.malformedValue, "PCP MAP protocol \(number) is neither UDP (17) nor TCP (6)")
        }
        return PCPMapData(
            nonce: nonce, transport: transport,
            internalPort: BigEndianBytes.uint16(bytes, at: 16), externalPort: BigEndianBytes.uint16(bytes, at: 18),
            externalAddress: try IPAddress(pcpEncoded: bytes[(base + 20)..<(base + 36)]))
    }
}

/// A PCP option (RFC 6887 §7.3): code, length and data; the data is padded to 4 bytes on the wire.
public struct PCPOption: Hashable, Sendable {
    /// THIRD_PARTY (RFC 6887 §13.1).
    public static let thirdParty: UInt8 = 1
    /// PREFER_FAILURE (RFC 6887 §13.2).
    public static let preferFailure: UInt8 = 2
    /// FILTER (RFC 6887 §13.3).
    public static let filter: UInt8 = 3

    public var code: UInt8
    public var data: [UInt8]

    public init(code: UInt8, data: [UInt8]) {
        self.code = code
        self.data = data
    }

    /// Whether a server that does not know the option must refuse the request (codes 0-127,
    /// RFC 6887 §7.3) instead of ignoring it.
    public var isMandatory: Bool { code < 128 }

    var encoded: [UInt8] {
        var bytes: [UInt8] = [code, 0]
        BigEndianBytes.append(UInt16(data.count), to: &bytes)
        bytes += data
        bytes += [UInt8](repeating: 0, count: (4 - data.count % 4) % 4)
        return bytes
    }

    static func decodeAll(_ bytes: ArraySlice<UInt8>) throws -> [PCPOption] {
        var options: [PCPOption] = []
        var index = bytes.startIndex
        while index < bytes.endIndex {
            guard bytes.endIndex - index >= 4 else {
                throw WireError(.truncated, "a PCP option header has 4 bytes; \(bytes.endIndex - index) remain")
            }
            let length = Int(BigEndianBytes.uint16(bytes, at: index - bytes.startIndex + 2))
            let padded = (length + 3) / 4 * 4
            guard bytes.endIndex - index - 4 >= padded else {
                throw WireError(.truncated, "a PCP option announces \(length) bytes; \(bytes.endIndex - index - 4) remain")
            }
            guard options.count < PCP.maximumOptionCount else {
                throw WireError(.tooLarge, "a PCP message with more than \(PCP.maximumOptionCount) options")
            }
            options.append(PCPOption(code: bytes[index], data: Array(bytes[(index + 4)..<(index + 4 + length)])))
            index += 4 + padded
        }
        return options
    }
}

/// A PCP request.
public struct PCPRequest: Hashable, Sendable {
    public var opcode: PCPOpcode
    /// Requested lifetime in seconds; 0 deletes a mapping (RFC 6887 §15).
    public var lifetime: UInt32
    /// The client's own address as it sends the request: the server refuses a request whose
    /// source differs (ADDRESS_MISMATCH, RFC 6887 §8.1) — this is how PCP detects a NAT between
    /// client and server.
    public var clientAddress: IPAddress
    /// MAP opcode data; `nil` for ANNOUNCE.
    public var map: PCPMapData?
    public var options: [PCPOption]

    public init(opcode: PCPOpcode, lifetime: UInt32, clientAddress: IPAddress, map: PCPMapData? = nil, options: [PCPOption] = []) {
        self.opcode = opcode
        self.lifetime = lifetime
        self.clientAddress = clientAddress
        self.map = map
        self.options = options
    }

    /// A MAP request: creates, renews or (lifetime 0) deletes a mapping (RFC 6887 §11).
    public static func map(clientAddress: IPAddress, lifetime: UInt32, _ data: PCPMapData) -> PCPRequest {
        PCPRequest(opcode: .map, lifetime: lifetime, clientAddress: clientAddress, map: data)
    }

    /// An ANNOUNCE request (RFC 6887 §14.1): asks the server for its epoch, with no side effect.
    public static func announce(clientAddress: IPAddress) -> PCPRequest {
        PCPRequest(opcode: .announce, lifetime: 0, clientAddress: clientAddress)
    }

    /// The request on the wire.
    public var encoded: [UInt8] {
        var bytes: [UInt8] = [PCP.version, opcode.rawValue & 0x7F, 0, 0]
        BigEndianBytes.append(lifetime, to: &bytes)
        bytes += clientAddress.pcpEncoded
        if let map { bytes += map.encoded }
        for option in options { bytes += option.encoded }
        return bytes
    }

    /// Decodes a request (what a PCP server, or a fake one in a test, receives).
    /// - Throws: ``WireError`` as ``PCPResponse/decode(_:)``; `.unexpectedOpcode` for a response.
    public static func decode<Bytes: RandomAccessCollection>(_ datagram: Bytes) throws -> PCPRequest
    where Bytes.Element == UInt8, Bytes.Index == Int {
        let bytes = try PCP.checkFraming(ArraySlice(datagram))
        let base = bytes.startIndex
        guard bytes[base + 1] & 0x80 == 0 else {
            throw WireError(.unexpectedOpcode, "the R bit is set: this is a PCP response, not a request")
        }
        let opcode = PCPOpcode(rawValue: bytes[base + 1] & 0x7F)
        let clientAddress = try IPAddress(pcpEncoded: bytes[(base + 8)..<(base + 24)])
        let (map, options) = try PCP.decodeBody(opcode, bytes[(base + PCP.headerLength)...], requireMapData: true)
        return PCPRequest(opcode: opcode, lifetime: BigEndianBytes.uint32(bytes, at: 4), clientAddress: clientAddress, map: map, options: options)
    }
}

/// A PCP response.
public struct PCPResponse: Hashable, Sendable {
    public var opcode: PCPOpcode
    public var resultCode: PCPResultCode
    /// On success, the granted lifetime; on a short-lifetime error, how long the error is
    /// expected to last (RFC 6887 §7.2, §15).
    public var lifetime: UInt32
    /// The server's epoch time (RFC 6887 §8.5): seconds since its mapping state began.
    public var epoch: UInt32
    /// MAP opcode data; `nil` for ANNOUNCE, and possibly for an error response.
    public var map: PCPMapData?
    public var options: [PCPOption]

    public init(opcode: PCPOpcode, resultCode: PCPResultCode, lifetime: UInt32, epoch: UInt32, map: PCPMapData? = nil, options: [PCPOption] = []) {
        self.opcode = opcode
        self.resultCode = resultCode
        self.lifetime = lifetime
        self.epoch = epoch
        self.map = map
        self.options = options
    }

    /// The response on the wire (what a server sends; used by tests and fake gateways).
    public var encoded: [UInt8] {
        var bytes: [UInt8] = [PCP.version, 0x80 | opcode.rawValue, 0, resultCode.rawValue]
        BigEndianBytes.append(lifetime, to: &bytes)
        BigEndianBytes.append(epoch, to: &bytes)
        bytes += [UInt8](repeating: 0, count: 12)
        if let map { bytes += map.encoded }
        for option in options { bytes += option.encoded }
        return bytes
    }

    /// Decodes one datagram from a PCP server.
    ///
    /// RFC 6887 §8.3: a response shorter than 24 bytes, longer than 1100, or not a multiple of
    /// 4 is invalid; so is one without the R bit.
    /// - Parameter datagram: the whole UDP payload.
    /// - Returns: the response.
    /// - Throws: ``WireError``: `.truncated` below 24 bytes or when the opcode data or an option
    ///   runs past the end; `.tooLarge` above ``PCP/maximumMessageLength`` or with more than
    ///   ``PCP/maximumOptionCount`` options; `.malformedValue` if the length is not a multiple of
    ///   4 or a field does not parse; `.wrongVersion` if the version is not 2 (version 0 is a
    ///   NAT-PMP gateway: read byte 0 to tell); `.unexpectedOpcode` without the R bit.
    public static func decode<Bytes: RandomAccessCollection>(_ datagram: Bytes) throws -> PCPResponse
    where Bytes.Element == UInt8, Bytes.Index == Int {
        let bytes = try PCP.checkFraming(ArraySlice(datagram))
        let base = bytes.startIndex
        guard bytes[base + 1] & 0x80 != 0 else {
            throw WireError(.unexpectedOpcode, "the R bit is clear: this is a PCP request, not a response")
        }
        let opcode = PCPOpcode(rawValue: bytes[base + 1] & 0x7F)
        let resultCode = PCPResultCode(rawValue: bytes[base + 3])
        // RFC 6887 §7.2: an error response may come from a server that could not parse the
        // request, so its opcode data is optional there.
        let (map, options) = try PCP.decodeBody(opcode, bytes[(base + PCP.headerLength)...], requireMapData: resultCode == .success)
        return PCPResponse(
            opcode: opcode, resultCode: resultCode, lifetime: BigEndianBytes.uint32(bytes, at: 4),
            epoch: BigEndianBytes.uint32(bytes, at: 8), map: map, options: options)
    }
}

extension PCP {
    /// The checks every PCP message passes before its fields are read; returns the bytes.
    static func checkFraming(_ bytes: ArraySlice<UInt8>) throws -> ArraySlice<UInt8> {
        guard bytes.count <= maximumMessageLength else {
            throw WireError(.tooLarge, "a PCP message has at most \(maximumMessageLength) bytes; this one has \(bytes.count)")
        }
        if let first = bytes.first, first != version {
            throw WireError(.wrongVersion, "PCP version is 2; the message says \(first)\(first == 0 ? " (a NAT-PMP gateway)" : "")")
        }
        guard bytes.count >= headerLength else {
            throw WireError(.truncated, "a PCP message has at least \(headerLength) bytes; this one has \(bytes.count)")
        }
        guard bytes.count % 4 == 0 else {
            throw WireError(.malformedValue, "a PCP message is a multiple of 4 bytes; this one has \(bytes.count)")
        }
        return bytes
    }

    static func decodeBody(_ opcode: PCPOpcode, _ body: ArraySlice<UInt8>, requireMapData: Bool) throws -> (PCPMapData?, [PCPOption]) {
        switch opcode {
        case .map:
            if body.count < mapDataLength {
                if requireMapData || !body.isEmpty {
                    throw WireError(.truncated, "PCP MAP data has \(mapDataLength) bytes; \(body.count) follow the header")
                }
                return (nil, [])
            }
            let map = try PCPMapData.decode(body.prefix(mapDataLength))
            return (map, try PCPOption.decodeAll(body.dropFirst(mapDataLength)))
        case .announce:
            return (nil, try PCPOption.decodeAll(body))
        default:
            throw WireError(.unexpectedOpcode, "PCP opcode \(opcode) is not supported (MAP and ANNOUNCE are)")
        }
    }
}

extension IPAddress {
    /// The 16-byte form PCP uses for every address (RFC 6887 §5): IPv6 as is, IPv4 as an
    /// IPv4-mapped IPv6 address `::ffff:a.b.c.d` (RFC 4291 §2.5.5.2).
    public var pcpEncoded: [UInt8] {
        switch self {
        case .v4(let v4): [UInt8](repeating: 0, count: 10) + [0xFF, 0xFF] + v4.array
        case .v6(let v6): v6.array
        }
    }

    /// Reads PCP's 16-byte form: an IPv4-mapped address becomes ``IPAddress/v4(_:)``.
    /// - Throws: ``WireError`` `.malformedValue` unless there are exactly 16 bytes.
    public init<Bytes: Collection>(pcpEncoded bytes: Bytes) throws where Bytes.Element == UInt8 {
        let array = Array(bytes)
        guard array.count == 16 else {
            throw WireError(.malformedValue, "a PCP address has 16 bytes, not \(array.count)")
        }
        if array.prefix(10).allSatisfy({ $0 == 0 }), array[10] == 0xFF, array[11] == 0xFF {
            self = .v4(.init(array[12], array[13], array[14], array[15]))
        } else {
            self = try IPAddress(bytes: array)
        }
    }
}
