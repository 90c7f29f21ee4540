import PunchWire

/// An error of a direct connection upgrade (DCUtR), with a stable code.
public struct HolePunchError: PunchError {
    public struct Code: PunchErrorCode {
        /// The code's stable name, for logs and JSON.
        public let name: String
        /// Creates a code. Codes are defined as static members below.
        public init(_ name: String) { self.name = name }

        /// Every attempt's dials failed: the NATs did not let the punch through.
        public static let failed = Self("dcutr.failed")
        /// One side has no usable public address to offer or dial.
        public static let noAddresses = Self("dcutr.noAddresses")
        /// A message did not decode, was too large, or was not the one expected.
        public static let malformedMessage = Self("dcutr.malformedMessage")
        /// A message did not arrive within ``HolePunchConfiguration/exchangeTimeout``.
        public static let timeout = Self("dcutr.timeout")
        /// The DCUtR stream ended early.
        public static let streamClosed = Self("dcutr.streamClosed")
        /// DCUtR runs only over a relayed connection.
        public static let notRelayed = Self("dcutr.notRelayed")
        /// Too many exchanges at once (``HolePunchConfiguration/maximumConcurrentExchanges``).
        public static let busy = Self("dcutr.busy")
    }

    public let code: Code
    public let message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public static func == (lhs: Self, rhs: Self) -> Bool { lhs.code == rhs.code }
    public func hash(into hasher: inout Hasher) { hasher.combine(code) }
}
