import PunchWire
import PunchTransport

/// An error of ``PunchNode``, with a stable code (`node.…`) and a message that says what
/// happened and what to do. Compare errors by ``code``.
public struct NodeError: PunchError {
    /// A stable identifier for the kind of failure.
    public struct Code: PunchErrorCode {
        /// The code's stable name, for logs and JSON.
        public let name: String
        /// Creates a code.
        public init(_ name: String) { self.name = name }

        /// Neither an address nor a relay is known for the peer.
        public static let noAddresses = Self("node.noAddresses")
        /// Every address and relay of the peer failed.
        public static let unreachable = Self("node.unreachable")
        /// ``NodeConfiguration/Limits/maximumPendingDials`` peers are being dialed already.
        public static let dialLimit = Self("node.dialLimit")
        /// The node is not running (``PunchNode/run()`` has not started, or it shut down).
        public static let notRunning = Self("node.notRunning")
        /// A configuration value is out of range.
        public static let invalidConfiguration = Self("node.invalidConfiguration")
        /// The peer is our own PeerID.
        public static let selfDial = Self("node.selfDial")
        /// No direct connection came within the time asked for.
        public static let upgradeTimeout = Self("node.upgradeTimeout")
    }

    /// What kind of failure this is; stable across releases.
    public let code: Code
    /// What happened and what to do about it.
    public let message: String
    /// The error underneath, when another module's error caused this one.
    public let underlying: (any Error & Sendable)?

    /// Creates an error.
    public init(_ code: Code, _ message: String, underlying: (any Error & Sendable)? = nil) {
        self.code = code
        self.message = message
        self.underlying = underlying
    }

    public static func == (lhs: NodeError, rhs: NodeError) -> Bool { lhs.code == rhs.code }
    public func hash(into hasher: inout Hasher) { hasher.combine(code) }
}
