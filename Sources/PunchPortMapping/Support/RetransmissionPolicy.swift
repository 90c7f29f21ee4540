/// How a UDP request is retried: the first wait, doubled after each unanswered try, for a
/// bounded number of tries.
///
/// The default is RFC 6886 §3.1's: 250 ms, doubling, 9 tries (about 128 s in all). Tests and
/// the mapper's protocol probing use fewer tries.
public struct RetransmissionPolicy: Hashable, Sendable {
    /// How long to wait for an answer to the first try.
    public var initialTimeout: Duration
    /// How many times the request is sent (at least 1).
    public var maximumAttempts: Int
    /// The longest single wait, however many doublings came before it.
    public var maximumTimeout: Duration

    public init(initialTimeout: Duration = .milliseconds(250), maximumAttempts: Int = 9, maximumTimeout: Duration = .seconds(64)) {
        self.initialTimeout = initialTimeout
        self.maximumAttempts = max(1, maximumAttempts)
        self.maximumTimeout = maximumTimeout
    }

    /// RFC 6886 §3.1: 250 ms, doubling, 9 tries.
    public static let rfc6886 = RetransmissionPolicy()

    /// The wait after try `attempt` (0-based).
    public func timeout(attempt: Int) -> Duration {
        var timeout = initialTimeout
        for _ in 0..<min(attempt, 30) {
            timeout = timeout * 2
            if timeout >= maximumTimeout { return maximumTimeout }
        }
        return min(timeout, maximumTimeout)
    }
}
