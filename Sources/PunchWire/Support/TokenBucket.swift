import NIOCore

/// A token bucket: up to ``capacity`` tokens, refilled at ``ratePerSecond``; each admitted
/// event takes one. Time comes from the caller, so it is tested without clocks.
public struct TokenBucket: Sendable, Hashable {
    /// The most tokens the bucket holds: the largest burst admitted at once.
    public let capacity: Double
    /// Tokens added per second.
    public let ratePerSecond: Double
    private var tokens: Double
    private var updated: NIODeadline

    /// A full bucket.
    public init(capacity: Int, ratePerSecond: Int, now: NIODeadline) {
        self.capacity = Double(capacity)
        self.ratePerSecond = Double(ratePerSecond)
        self.tokens = Double(capacity)
        self.updated = now
    }

    /// Takes a token if there is one.
    /// - Returns: whether the event is admitted.
    public mutating func take(now: NIODeadline) -> Bool {
        refill(now: now)
        guard tokens >= 1 else { return false }
        tokens -= 1
        return true
    }

    /// Whether the bucket has refilled completely (so forgetting it changes nothing).
    public mutating func isFull(now: NIODeadline) -> Bool {
        refill(now: now)
        return tokens >= capacity
    }

    private mutating func refill(now: NIODeadline) {
        guard now > updated else { return }
        let elapsed = Double((now - updated).nanoseconds) / 1e9
        tokens = min(capacity, tokens + elapsed * ratePerSecond)
        updated = now
    }
}
