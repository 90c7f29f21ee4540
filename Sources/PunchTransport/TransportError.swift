import PunchWire

/// An error from PunchTransport: connections, negotiation, Noise, yamux, the Host.
///
/// Compare errors by ``code``; the ``message`` is for people. New codes may appear in any release.
public struct TransportError: PunchError {
    /// A stable identifier for the kind of failure.
    public struct Code: PunchErrorCode {
        /// The code's stable name, for logs and JSON.
        public let name: String
        /// Creates a code. Codes are defined as static members next to the code that throws them.
        public init(_ name: String) { self.name = name }
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

    public static func == (lhs: TransportError, rhs: TransportError) -> Bool { lhs.code == rhs.code }
    public func hash(into hasher: inout Hasher) { hasher.combine(code) }
}
