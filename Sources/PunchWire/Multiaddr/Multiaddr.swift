import NIOCore

/// A multiaddr: a self-describing network address as a path of protocols, such as
/// `/ip4/203.0.113.10/udp/4001/quic-v1/p2p/12D3KooW...`.
///
/// Punch knows the protocols in ``MultiaddrProtocol``; addresses with any other protocol are
/// refused with ``WireError/Code/unknownProtocol`` rather than carried opaquely, since Punch could
/// not dial them anyway.
///
/// Every value has a text form (``description``) and a binary form (``bytes``) that parse back to
/// an equal value, except the empty multiaddr (no components), which only arises from
/// ``decapsulate(_:)`` and friends: like go-multiaddr, both parsers refuse empty input.
///
/// ```swift
/// let address = try Multiaddr("/ip4/127.0.0.1/udp/1234")
/// address.bytes                 // [0x04, 127, 0, 0, 1, 0x91, 0x02, 0x04, 0xD2]
/// address.transportEndpoint     // 127.0.0.1:1234
/// ```
public struct Multiaddr: Hashable, Sendable, CustomStringConvertible {
    /// The components in order, outermost (network) first.
    public let components: [MultiaddrComponent]

    /// The longest binary form the decoders accept, in bytes.
    ///
    /// Real addresses are well under 200 bytes (a circuit address with two PeerIDs is about 100);
    /// the bound keeps hostile input from costing more than a small, fixed amount of work.
    public static let maximumBinaryLength = 1024

    /// The most components the decoders accept.
    ///
    /// A relayed QUIC address with both PeerIDs has 7; 32 leaves room for future nesting.
    public static let maximumComponentCount = 32

    /// The longest text form ``init(_:)`` accepts, in UTF-8 bytes.
    ///
    /// Comfortably above the text of any multiaddr within ``maximumBinaryLength``, and checked
    /// before the text is split so that a huge string costs nothing.
    public static let maximumTextLength = 4096

    /// Creates a multiaddr from components built in code.
    ///
    /// The decoding limits (``maximumBinaryLength``, ``maximumComponentCount``) are not applied:
    /// they protect against hostile input, not against the program's own values.
    /// - Throws: ``WireError`` `.malformedValue` for a value that does not fit its protocol: an
    ///   IPv6 address in ``MultiaddrComponent/ip4(_:)`` or the reverse, or a DNS name that is
    ///   empty or contains `/` or NUL.
    public init(components: [MultiaddrComponent]) throws {
        for component in components { try component.validate() }
        self.components = components
    }

    /// Creates a multiaddr from components already known to be valid.
    init(validated components: some Sequence<MultiaddrComponent>) {
        self.components = Array(components)
    }

    /// The canonical text form: `/name/value` for each component, PeerIDs in base58btc (even if
    /// the input used a CID), IPv6 compressed per RFC 5952. Empty for the empty multiaddr.
    public var description: String {
        components.map(\.description).joined()
    }

    /// The binary form: for each component, its code varint, a length varint for variable-length
    /// values, and its value.
    public var bytes: [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(components.reduce(0) { $0 + $1.encodedLength })
        for component in components { component.encode(into: &out) }
        return out
    }
}

// MARK: - Text form

extension Multiaddr {
    /// Parses the text form, e.g. `/ip4/127.0.0.1/tcp/4001/p2p/12D3KooW...`.
    ///
    /// One trailing `/` is allowed. A `/p2p/` value may be base58btc (`Qm...`, `12D3KooW...`) or a
    /// CIDv1 `libp2p-key` in base32 (`bafz...`); `/ipfs/` is read as `/p2p/`.
    /// - Throws: ``WireError``
    ///   - `.malformedText` if the text does not start with `/`, is empty, has an empty protocol
    ///     name (`//`), or ends where a value is needed;
    ///   - `.unknownProtocol` for a name not in ``MultiaddrProtocol``;
    ///   - `.malformedValue` for a bad value: an IP address of the wrong family or that does not
    ///     parse, a port outside 0...65535, a bad PeerID, an empty DNS name;
    ///   - `.tooLarge` beyond ``maximumTextLength``, ``maximumBinaryLength`` or
    ///     ``maximumComponentCount``.
    public init(_ text: String) throws {
        guard text.utf8.count <= Self.maximumTextLength else {
            throw WireError(.tooLarge, "multiaddr text longer than \(Self.maximumTextLength) bytes")
        }
        // Split on Unicode scalars, not Characters: a `/` followed by a combining mark is one
        // Character, so a DNS name that starts with one would otherwise swallow its separator.
        let scalars = text.unicodeScalars
        guard scalars.first == "/" else {
            throw WireError(.malformedText, "multiaddr text '\(text)' does not start with '/'")
        }
        var body = scalars.dropFirst()
        if body.last == "/" { body = body.dropLast() }
        guard !body.isEmpty else { throw WireError(.malformedText, "empty multiaddr") }

        var parts = body.split(separator: "/", omittingEmptySubsequences: false).map(Substring.init)[...]
        var components: [MultiaddrComponent] = []
        var length = 0
        while let name = parts.popFirst() {
            guard !name.isEmpty else {
                throw WireError(.malformedText, "multiaddr '\(text)' has an empty protocol name")
            }
            guard let proto = MultiaddrProtocol(name: name) else {
                throw WireError(.unknownProtocol, "unknown multiaddr protocol '\(name)'")
            }
            let component: MultiaddrComponent
            if case .none = proto.valueSize {
                component = Self.valuelessComponent(proto)
            } else {
                guard let value = parts.popFirst() else {
                    throw WireError(.malformedText, "multiaddr '\(text)' ends before the value of /\(name)")
                }
                component = try Self.component(proto, text: value)
            }
            components.append(component)
            length += component.encodedLength
            try Self.checkLimits(count: components.count, length: length)
        }
        self.init(validated: components)
    }

    private static func valuelessComponent(_ proto: MultiaddrProtocol) -> MultiaddrComponent {
        switch proto {
        case .p2pCircuit: .p2pCircuit
        case .quicV1: .quicV1
        default: preconditionFailure("\(proto) has a value")
        }
    }

    private static func component(_ proto: MultiaddrProtocol, text value: Substring) throws -> MultiaddrComponent {
        switch proto {
        case .ip4, .ip6:
            let address = try IPAddress(String(value))
            let component: MultiaddrComponent = proto == .ip4 ? .ip4(address) : .ip6(address)
            try component.validate()
            return component
        case .tcp:
            return .tcp(try parsePort(value, protocol: proto))
        case .udp:
            return .udp(try parsePort(value, protocol: proto))
        case .dns, .dns4, .dns6, .dnsaddr:
            let name = String(value)
            try MultiaddrComponent.validateDNSName(name, protocol: proto)
            return switch proto {
            case .dns: .dns(name)
            case .dns4: .dns4(name)
            case .dns6: .dns6(name)
            default: .dnsaddr(name)
            }
        case .p2p:
            return .p2p(try parsePeerID(value))
        case .p2pCircuit, .quicV1:
            preconditionFailure("\(proto) has no value")
        }
    }

    /// Decimal digits only (no sign, no spaces), at most five of them, at most 65535.
    private static func parsePort(_ text: Substring, protocol proto: MultiaddrProtocol) throws -> UInt16 {
        guard !text.isEmpty, text.utf8.count <= 5, text.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }),
            let port = UInt16(text)
        else {
            throw WireError(.malformedValue, "\(proto.name) port '\(text)' is not a number in 0...65535")
        }
        return port
    }

    /// A base58btc multihash, or a CIDv1 `libp2p-key` in base32 when the text starts with `b`.
    ///
    /// The `b` rule follows the libp2p peer-ids spec: base58btc PeerIDs in use start with `Qm`
    /// (sha2-256) or `1` (identity), so a leading `b` means a multibase base32 CID.
    private static func parsePeerID(_ text: Substring) throws -> Multihash {
        // The longest multihash (about 140 bytes) is under 200 characters in base58 or base32;
        // refusing longer text first skips base58's quadratic decoding of junk.
        guard text.utf8.count <= 256 else {
            throw WireError(.malformedValue, "p2p value of \(text.utf8.count) characters is too long for a PeerID")
        }
        do {
            let bytes = text.hasPrefix("b") ? try CIDv1.decodeLibp2pKey(String(text)) : try Base58.decode(String(text))
            return try Multihash(bytes: bytes)
        } catch let error as WireError {
            throw WireError(.malformedValue, "p2p value '\(text.prefix(100))' is not a PeerID: \(error.message)")
        }
    }

    private static func checkLimits(count: Int, length: Int) throws {
        guard count <= maximumComponentCount else {
            throw WireError(.tooLarge, "multiaddr has more than \(maximumComponentCount) components")
        }
        guard length <= maximumBinaryLength else {
            throw WireError(.tooLarge, "multiaddr is longer than \(maximumBinaryLength) bytes")
        }
    }
}

// MARK: - Binary form

extension Multiaddr {
    /// Decodes the binary form; `bytes` must hold exactly one multiaddr.
    ///
    /// - Throws: ``WireError``
    ///   - `.tooLarge` for more than ``maximumBinaryLength`` bytes (checked before copying) or
    ///     more than ``maximumComponentCount`` components;
    ///   - `.truncated` for empty input or a code, length or value that runs past the end;
    ///   - `.unknownProtocol` for a code not in ``MultiaddrProtocol``;
    ///   - `.malformedValue` for bad value bytes: a `/p2p/` value that is not one whole multihash,
    ///     a DNS name that is empty, not UTF-8, or contains `/` or NUL;
    ///   - a ``Varint`` error for a bad code or length varint.
    public init(bytes: some Collection<UInt8>) throws {
        let count = bytes.count
        guard count <= Self.maximumBinaryLength else {
            throw WireError(.tooLarge, "multiaddr of \(count) bytes exceeds the maximum of \(Self.maximumBinaryLength)")
        }
        guard count > 0 else { throw WireError(.truncated, "empty multiaddr") }
        let input = Array(bytes)
        var offset = 0
        var components: [MultiaddrComponent] = []
        while offset < input.count {
            guard let (code, codeLength) = try Varint.decode(prefixOf: input[offset...]) else {
                throw WireError(.truncated, "multiaddr ends inside a protocol code")
            }
            guard let proto = MultiaddrProtocol(code: code) else {
                throw WireError(.unknownProtocol, "unknown multiaddr protocol code 0x\(String(code, radix: 16))")
            }
            offset += codeLength
            let valueLength: Int
            switch proto.valueSize {
            case .none:
                valueLength = 0
            case .fixed(let size):
                valueLength = size
            case .lengthPrefixed:
                guard let (declared, lengthLength) = try Varint.decode(prefixOf: input[offset...]) else {
                    throw WireError(.truncated, "multiaddr ends inside the length of a \(proto.name) value")
                }
                offset += lengthLength
                // Compare as UInt64 so a huge declared length cannot overflow Int.
                guard declared <= UInt64(input.count - offset) else {
                    throw WireError(
                        .truncated, "\(proto.name) value declares \(declared) bytes but \(input.count - offset) remain")
                }
                valueLength = Int(declared)
            }
            guard valueLength <= input.count - offset else {
                throw WireError(.truncated, "\(proto.name) value needs \(valueLength) bytes but \(input.count - offset) remain")
            }
            components.append(try Self.component(proto, bytes: input[offset..<(offset + valueLength)]))
            offset += valueLength
            try Self.checkLimits(count: components.count, length: offset)
        }
        self.init(validated: components)
    }

    private static func component(_ proto: MultiaddrProtocol, bytes value: ArraySlice<UInt8>) throws -> MultiaddrComponent {
        switch proto {
        case .ip4:
            return .ip4(try IPAddress(bytes: value))
        case .ip6:
            return .ip6(try IPAddress(bytes: value))
        case .tcp:
            return .tcp(UInt16(value[value.startIndex]) << 8 | UInt16(value[value.startIndex + 1]))
        case .udp:
            return .udp(UInt16(value[value.startIndex]) << 8 | UInt16(value[value.startIndex + 1]))
        case .dns, .dns4, .dns6, .dnsaddr:
            let name = String(decoding: value, as: UTF8.self)
            // Decoding replaces invalid UTF-8 with U+FFFD, which changes the bytes.
            guard name.utf8.elementsEqual(value) else {
                throw WireError(.malformedValue, "\(proto.name) name is not valid UTF-8")
            }
            try MultiaddrComponent.validateDNSName(name, protocol: proto)
            return switch proto {
            case .dns: .dns(name)
            case .dns4: .dns4(name)
            case .dns6: .dns6(name)
            default: .dnsaddr(name)
            }
        case .p2p:
            do {
                return .p2p(try Multihash(bytes: value))
            } catch let error as WireError {
                throw WireError(.malformedValue, "p2p value is not a multihash: \(error.message)")
            }
        case .p2pCircuit:
            return .p2pCircuit
        case .quicV1:
            return .quicV1
        }
    }
}

extension ByteBuffer {
    /// Writes the binary form of `multiaddr` (no length prefix).
    ///
    /// - Returns: the number of bytes written.
    @discardableResult
    public mutating func writeMultiaddr(_ multiaddr: Multiaddr) -> Int {
        writeBytes(multiaddr.bytes)
    }
}
