import PunchWire

/// An error of the relay protocol (Circuit Relay v2), with a stable code.
public struct RelayError: PunchError {
    /// A stable identifier of the kind of failure.
    public struct Code: PunchErrorCode {
        /// The code's stable name, for logs and JSON.
        public let name: String
        /// Creates a code. Codes are defined as static members below.
        public init(_ name: String) { self.name = name }

        /// The relay answered with a status other than OK (see ``RelayError/status``).
        public static let refused = Self("relay.refused")
        /// A relay message did not decode, was too large, or was not the one expected.
        public static let malformedMessage = Self("relay.malformedMessage")
        /// The relay stream closed before the exchange finished.
        public static let streamClosed = Self("relay.streamClosed")
        /// The exchange took longer than ``RelayConfiguration/exchangeTimeout``.
        public static let timeout = Self("relay.timeout")
        /// The address is not a usable circuit address (`…/p2p/RELAY/p2p-circuit/p2p/TARGET`).
        public static let badAddress = Self("relay.badAddress")
    }

    public let code: Code
    public let message: String
    /// The status the relay (or the target) answered, for ``Code/refused``.
    public let status: PBRelayStatus?

    public init(_ code: Code, _ message: String, status: PBRelayStatus? = nil) {
        self.code = code
        self.message = message
        self.status = status
    }

    /// Equal when the codes are equal: tests match errors by code.
    public static func == (lhs: Self, rhs: Self) -> Bool { lhs.code == rhs.code }
    public func hash(into hasher: inout Hasher) { hasher.combine(code) }
}

extension PBRelayStatus {
    /// The spec's name of the status (circuit-v2.md, "Protobuf").
    public var name: String {
        switch self {
        case .unused: "UNUSED"
        case .ok: "OK"
        case .reservationRefused: "RESERVATION_REFUSED"
        case .resourceLimitExceeded: "RESOURCE_LIMIT_EXCEEDED"
        case .permissionDenied: "PERMISSION_DENIED"
        case .connectionFailed: "CONNECTION_FAILED"
        case .noReservation: "NO_RESERVATION"
        case .malformedMessage: "MALFORMED_MESSAGE"
        case .unexpectedMessage: "UNEXPECTED_MESSAGE"
        }
    }
}
