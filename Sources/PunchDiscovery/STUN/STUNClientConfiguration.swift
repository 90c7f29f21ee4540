import NIOCore
import PunchWire

/// How a ``STUNClient`` retransmits and what it bounds. Every limit has a documented default.
///
/// The retransmission defaults are RFC 8489 §6.2.1's: with RTO 500 ms, Rc 7 and Rm 16 requests
/// go out at 0, 0.5, 1.5, 3.5, 7.5, 15.5 and 31.5 s and the transaction fails at 39.5 s.
/// Shorter values suit a NAT behaviour check whose failing probes are expected
/// (``NATClassifierConfiguration``).
public struct STUNClientConfiguration: Sendable, Hashable {
    /// The default ``retransmissionTimeout``: 500 ms (RFC 8489 §6.2.1's recommended initial RTO).
    public static let defaultRetransmissionTimeout = TimeAmount.milliseconds(500)
    /// The default ``maximumRequests`` (Rc): 7 (RFC 8489 §6.2.1).
    public static let defaultMaximumRequests = 7
    /// The default ``finalWaitMultiplier`` (Rm): 16 (RFC 8489 §6.2.1).
    public static let defaultFinalWaitMultiplier = 16
    /// The default ``maximumOutstandingTransactions``: 64 transactions at once per client.
    public static let defaultMaximumOutstandingTransactions = 64

    /// RTO: the wait before the first retransmission; it doubles after each one.
    public var retransmissionTimeout: TimeAmount = Self.defaultRetransmissionTimeout
    /// Rc: how many requests are sent in all, the first one included.
    public var maximumRequests: Int = Self.defaultMaximumRequests
    /// Rm: after the last request the client waits Rm times the (initial) RTO before giving up.
    public var finalWaitMultiplier: Int = Self.defaultFinalWaitMultiplier
    /// The most transactions running at once; one more fails with
    /// ``DiscoveryError/Code/stunTooManyTransactions``. Bounds the transaction table.
    public var maximumOutstandingTransactions: Int = Self.defaultMaximumOutstandingTransactions
    /// Whether requests carry FINGERPRINT (RFC 8489 §7.1: lets the server tell STUN from other
    /// protocols on a shared port). On by default.
    public var fingerprint: Bool = true
    /// SOFTWARE sent with every request, or `nil` for none (the default).
    public var software: String? = nil
    /// The largest STUN message accepted (see ``STUNMessage/defaultMaximumLength``).
    public var maximumMessageLength: Int = STUNMessage.defaultMaximumLength

    /// A configuration with the defaults above.
    public init() {}

    /// A configuration with these retransmission values and the other defaults.
    public init(retransmissionTimeout: TimeAmount, maximumRequests: Int, finalWaitMultiplier: Int) {
        self.retransmissionTimeout = retransmissionTimeout
        self.maximumRequests = maximumRequests
        self.finalWaitMultiplier = finalWaitMultiplier
    }

    /// How long a transaction without any response lasts: the sum of the doubling intervals
    /// plus Rm times RTO.
    public var transactionTimeout: TimeAmount {
        var total = TimeAmount.zero
        var interval = retransmissionTimeout
        for _ in 1..<max(1, maximumRequests) {
            total = total + interval
            interval = interval * 2
        }
        return total + retransmissionTimeout * Int64(finalWaitMultiplier)
    }

    /// Throws unless every value is usable.
    func validate() throws {
        guard retransmissionTimeout > .zero else {
            throw DiscoveryError(.invalidConfiguration, "the STUN retransmission timeout must be positive, not \(retransmissionTimeout)")
        }
        guard (1...20).contains(maximumRequests) else {
            throw DiscoveryError(.invalidConfiguration, "Rc (maximumRequests) must be 1-20, not \(maximumRequests)")
        }
        guard (1...64).contains(finalWaitMultiplier) else {
            throw DiscoveryError(.invalidConfiguration, "Rm (finalWaitMultiplier) must be 1-64, not \(finalWaitMultiplier)")
        }
        guard maximumOutstandingTransactions >= 1 else {
            throw DiscoveryError(.invalidConfiguration, "maximumOutstandingTransactions must be at least 1")
        }
    }
}
