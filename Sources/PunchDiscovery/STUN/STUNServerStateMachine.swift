import NIOCore
import PunchWire

/// What a STUN server answers to each datagram, as a value: request checks (RFC 8489 §6.3),
/// Binding responses, RFC 5780's CHANGE-REQUEST, OTHER-ADDRESS and RESPONSE-ORIGIN, and the
/// rate limits. No I/O: ``STUNServer`` feeds it datagrams and sends what it returns.
///
/// It only ever answers the request's source address: RESPONSE-PORT (RFC 5780 §7.5), which
/// would aim the answer elsewhere, is refused as an unknown attribute.
public struct STUNServerStateMachine: Sendable {
    /// One of the server's sockets: the primary one, or one on the alternate address and/or
    /// port (RFC 5780 mode has all four).
    public struct Socket: Hashable, Sendable, CustomStringConvertible {
        /// Whether the socket is on the alternate IP address.
        public var alternateAddress: Bool
        /// Whether the socket is on the alternate port (primary port + 1).
        public var alternatePort: Bool

        public init(alternateAddress: Bool, alternatePort: Bool) {
            self.alternateAddress = alternateAddress
            self.alternatePort = alternatePort
        }

        /// The primary address and port.
        public static let primary = Socket(alternateAddress: false, alternatePort: false)
        /// All four sockets of RFC 5780 mode.
        public static let all = [false, true].flatMap { address in [false, true].map { Socket(alternateAddress: address, alternatePort: $0) } }

        public var description: String {
            "\(alternateAddress ? "alternate" : "primary") address, \(alternatePort ? "alternate" : "primary") port"
        }
    }

    /// What to do with a datagram.
    public enum Action: Sendable, Hashable {
        /// Send `bytes` from `socket` to `destination` (always the request's source).
        case respond([UInt8], from: Socket, to: IPEndpoint)
        /// Send nothing; the counters say why.
        case drop
    }

    /// Counters of what the server did.
    public struct Statistics: Hashable, Sendable {
        /// Binding success responses sent.
        public var successResponses = 0
        /// Error responses sent (420 Unknown Attribute).
        public var errorResponses = 0
        /// Datagrams that are not a well-formed STUN message (including bad FINGERPRINTs).
        public var droppedMalformed = 0
        /// Well-formed messages that are not requests (indications, responses).
        public var droppedNotRequest = 0
        /// Requests of a method other than Binding (silently discarded, RFC 8489 §6.3).
        public var droppedUnsupportedMethod = 0
        /// Requests over the per-source limit.
        public var droppedSourceRateLimit = 0
        /// Requests over the total limit.
        public var droppedTotalRateLimit = 0
        /// Requests from a new source refused because the source table was full of active sources.
        public var droppedSourceTableFull = 0
        /// Datagrams from a source no answer can go to (port 0, unspecified, multicast or
        /// broadcast address): spoofed, since no real host sends from there.
        public var droppedBadSource = 0
        public init() {}
    }

    private let configuration: STUNServerConfiguration
    private let primary: IPEndpoint
    private let alternate: IPAddress?
    private var total: TokenBucket
    private var sources: [IPAddress: TokenBucket] = [:]
    /// What has happened so far.
    public private(set) var statistics = Statistics()

    /// Creates the state of a server whose primary socket is bound to `primary` (the port
    /// actually bound, when the configuration asked for port 0).
    public init(configuration: STUNServerConfiguration, primary: IPEndpoint, now: NIODeadline) {
        self.configuration = configuration
        self.primary = primary
        self.alternate = configuration.alternateAddress
        self.total = TokenBucket(capacity: configuration.totalBurst, ratePerSecond: configuration.totalRate, now: now)
    }

    /// How many source IPs have a rate-limit bucket (at most ``STUNServerConfiguration/maximumTrackedSources``).
    public var trackedSourceCount: Int { sources.count }

    /// The address a socket is bound to.
    public func endpoint(of socket: Socket) -> IPEndpoint {
        IPEndpoint(
            address: socket.alternateAddress ? (alternate ?? primary.address) : primary.address,
            port: socket.alternatePort ? primary.port &+ 1 : primary.port)
    }

    /// Decides the answer to one datagram.
    /// - Parameters:
    ///   - datagram: the bytes received.
    ///   - source: where they came from.
    ///   - socket: which of the server's sockets received them.
    ///   - now: the current time, for the rate limits.
    /// Counts bytes on a TCP connection that are not STUN (or too long) as malformed.
    mutating func countMalformedTCP() { statistics.droppedMalformed += 1 }

    public mutating func receive(_ datagram: [UInt8], from source: IPEndpoint, on socket: Socket, now: NIODeadline) -> Action {
        guard Self.isAnswerable(source) else {
            statistics.droppedBadSource += 1
            return .drop
        }
        let request: STUNMessage
        do {
            request = try STUNMessage.decode(datagram: datagram, maximumLength: configuration.maximumMessageLength)
        } catch {
            statistics.droppedMalformed += 1
            return .drop
        }
        guard request.type.messageClass == .request else {
            statistics.droppedNotRequest += 1
            return .drop
        }
        guard request.type.method == .binding else {
            statistics.droppedUnsupportedMethod += 1
            return .drop
        }
        guard admit(source.address, now: now) else { return .drop }

        var unknown = request.unknownComprehensionRequiredAttributes
        // CHANGE-REQUEST without an alternate address, and RESPONSE-PORT always, are attributes
        // this server does not honour; both are comprehension-required, so RFC 8489 §6.3.1
        // makes them a 420 (RFC 5780 §6.1 for CHANGE-REQUEST).
        if alternate == nil, request.changeRequest != nil { unknown.append(STUNAttributeType.changeRequest) }
        if request.responsePort != nil { unknown.append(STUNAttributeType.responsePort) }

        var attributes: [STUNAttribute]
        var from = socket
        let type: STUNMessageType
        if !unknown.isEmpty {
            type = .bindingErrorResponse
            attributes = [.errorCode(.unknownAttribute), .unknownAttributes(unknown)]
            statistics.errorResponses += 1
        } else {
            type = .bindingSuccessResponse
            if alternate != nil, let change = request.changeRequest {
                // RFC 5780 §6.1: answer from the other IP and/or port, relative to the socket
                // the request arrived on.
                from = Socket(
                    alternateAddress: socket.alternateAddress != change.changeIP,
                    alternatePort: socket.alternatePort != change.changePort)
            }
            attributes = [.xorMappedAddress(source)]
            if configuration.includeMappedAddress { attributes.append(.mappedAddress(source)) }
            if alternate != nil {
                // RFC 5780 §6.1: OTHER-ADDRESS differs in both address and port from the socket
                // the request arrived on; RESPONSE-ORIGIN is the socket the answer leaves from.
                attributes.append(.otherAddress(endpoint(of: Socket(alternateAddress: !socket.alternateAddress, alternatePort: !socket.alternatePort))))
                attributes.append(.responseOrigin(endpoint(of: from)))
            }
            statistics.successResponses += 1
        }
        if let software = configuration.software { attributes.append(.software(software)) }
        let response = STUNMessage(type: type, transactionID: request.transactionID, attributes: attributes)
        // RFC 8489 §7.3: FINGERPRINT in the response when the request had one. The attributes
        // above are all valid, so encoding cannot fail; should it, nothing is sent.
        guard let bytes = try? response.encoded(fingerprint: request.hasFingerprint) else {
            statistics.droppedMalformed += 1
            return .drop
        }
        return .respond(bytes, from: from, to: source)
    }

    /// Whether a unicast answer can go to `source`. Besides being pointless, sending to a
    /// broadcast address fails with an error after which NIO closes the socket.
    static func isAnswerable(_ source: IPEndpoint) -> Bool {
        guard source.port != 0, !STUNServerConfiguration.isUnspecified(source.address) else { return false }
        let bytes = source.address.bytes
        if source.address.isIPv4 {
            return bytes[0] & 0xF0 != 0xE0 && bytes != [255, 255, 255, 255]  // 224.0.0.0/4 multicast, limited broadcast
        }
        return bytes[0] != 0xFF  // ff00::/8 multicast
    }

    /// Takes a token from the source's bucket and from the total one.
    private mutating func admit(_ address: IPAddress, now: NIODeadline) -> Bool {
        var bucket: TokenBucket
        if let existing = sources[address] {
            bucket = existing
        } else {
            if sources.count >= configuration.maximumTrackedSources {
                // Forget sources whose bucket refilled: a fresh bucket would be the same.
                sources = sources.filter { _, bucket in
                    var bucket = bucket
                    return !bucket.isFull(now: now)
                }
            }
            guard sources.count < configuration.maximumTrackedSources else {
                statistics.droppedSourceTableFull += 1
                return false
            }
            bucket = TokenBucket(capacity: configuration.perSourceBurst, ratePerSecond: configuration.perSourceRate, now: now)
        }
        let admitted = bucket.take(now: now)
        sources[address] = bucket
        guard admitted else {
            statistics.droppedSourceRateLimit += 1
            return false
        }
        guard total.take(now: now) else {
            statistics.droppedTotalRateLimit += 1
            return false
        }
        return true
    }
}
