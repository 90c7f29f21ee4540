import PunchWire

/// An error from PunchDiscovery: STUN transactions, the STUN server, NAT classification, AutoNAT v2.
///
/// Compare errors by ``code``; the ``message`` is for people. New codes may appear in any release,
/// so a `switch` over codes needs a `default` branch.
///
/// ```swift
/// do { _ = try await client.binding(to: server) }
/// catch let error as DiscoveryError where error.code == .stunTimeout { print("no answer from \(server)") }
/// ```
public struct DiscoveryError: PunchError {
    /// A stable identifier for the kind of failure.
    public struct Code: PunchErrorCode {
        /// The code's stable name, for logs and JSON.
        public let name: String
        /// Creates a code. Codes are defined as static members below.
        public init(_ name: String) { self.name = name }

        /// No response arrived before the RFC 8489 §6.2.1 retransmissions ran out.
        public static let stunTimeout = Code("stun.timeout")
        /// ``STUNClientConfiguration/maximumOutstandingTransactions`` transactions are already
        /// running; wait for one to finish.
        public static let stunTooManyTransactions = Code("stun.tooManyTransactions")
        /// The server answered with an error response (its ERROR-CODE is in the message).
        public static let stunErrorResponse = Code("stun.errorResponse")
        /// The response had comprehension-required attributes this client does not understand, so
        /// it is treated as failed (RFC 8489 §7.3.3, §7.3.4).
        public static let stunUnknownAttributes = Code("stun.unknownAttributes")
        /// A STUN server's host name did not resolve to an address of the socket's family.
        public static let stunResolutionFailed = Code("stun.resolutionFailed")
        /// The server address is not `HOST:PORT`, `[IPv6]:PORT` or `HOST`.
        public static let stunInvalidServerAddress = Code("stun.invalidServerAddress")
        /// The client's socket was closed while the transaction was running.
        public static let stunClientClosed = Code("stun.clientClosed")
        /// The destination's address family differs from the socket's (IPv4 socket, IPv6 server).
        public static let stunAddressFamilyMismatch = Code("stun.addressFamilyMismatch")
        /// The socket refused to send the request at once (no route to the server, for instance).
        public static let stunSendFailed = Code("stun.sendFailed")
        /// A STUN server socket could not be bound.
        public static let stunServerBindFailed = Code("stun.serverBindFailed")
        /// Over TCP: what came back is not a STUN response to our request, or nothing came
        /// before the connection closed.
        public static let stunMalformedResponse = Code("stun.malformedResponse")
        /// A configuration value is out of range.
        public static let invalidConfiguration = Code("discovery.invalidConfiguration")

        /// An AutoNAT v2 message is larger than the configured maximum, or a `DialDataResponse`
        /// carries more than 4096 bytes (libp2p/specs autonat/autonat-v2.md, "Amplification
        /// Attack Prevention").
        public static let autonatMessageTooLarge = Code("autonat.messageTooLarge")
        /// An AutoNAT v2 message does not decode, or a field is out of range (an address index
        /// past the list, a status the spec does not define).
        public static let autonatMalformedMessage = Code("autonat.malformedMessage")
        /// An AutoNAT v2 message arrived that the protocol does not allow at this point.
        public static let autonatUnexpectedMessage = Code("autonat.unexpectedMessage")
        /// The AutoNAT v2 stream ended before the exchange was complete.
        public static let autonatStreamClosed = Code("autonat.streamClosed")
        /// No AutoNAT v2 message arrived within the configured time.
        public static let autonatTimeout = Code("autonat.timeout")
        /// The server asked for more dial data than the client is willing to send; the request
        /// was aborted (see ``AutoNATClientConfiguration/maximumDialDataBytes``).
        public static let autonatDialDataRefused = Code("autonat.dialDataRefused")
        /// The server reported a successful dial-back, but no dial-back with our nonce arrived:
        /// the answer cannot be trusted (autonat-v2.md: the client MUST check the nonce).
        public static let autonatUnverified = Code("autonat.unverified")
        /// There was nothing to ask: no address, or more than the client sends in one request.
        public static let autonatNoAddresses = Code("autonat.noAddresses")
        /// ``AutoNATClientConfiguration/maximumPendingChecks`` checks are already running.
        public static let autonatTooManyChecks = Code("autonat.tooManyChecks")
    }

    /// What kind of failure this is; stable across releases.
    public let code: Code
    /// What happened and what to do about it.
    public let message: String

    /// Creates an error.
    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public static func == (lhs: DiscoveryError, rhs: DiscoveryError) -> Bool { lhs.code == rhs.code }
    public func hash(into hasher: inout Hasher) { hasher.combine(code) }
}
