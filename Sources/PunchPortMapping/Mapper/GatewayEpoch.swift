/// Tracks a NAT-PMP or PCP gateway's epoch (seconds since its mapping state began) to tell
/// when it restarted and lost every mapping. A pure value: feed it each reply's epoch with the
/// local time the reply arrived.
///
/// ```swift
/// var epoch = GatewayEpoch(rule: .natpmp)
/// epoch.observe(serverEpoch: 100, at: .seconds(0))    // false: first sample
/// epoch.observe(serverEpoch: 5, at: .seconds(60))     // true: it went backwards
/// ```
public struct GatewayEpoch: Hashable, Sendable {
    /// Which RFC's check to apply.
    public enum Rule: Hashable, Sendable {
        /// RFC 6886 §3.6: restart if the epoch is more than 2 s below the previous one plus
        /// 7/8 of the local time elapsed.
        case natpmp
        /// RFC 6887 §8.5: restart if the epoch went backwards by more than 1 s, or if local and
        /// server clocks disagree by more than 2 s plus 1/16 of the elapsed time.
        case pcp
    }

    public let rule: Rule
    private var previous: (server: UInt32, local: Duration)?

    public init(rule: Rule) { self.rule = rule }

    /// Records a reply's epoch.
    /// - Parameters:
    ///   - serverEpoch: the epoch the gateway sent.
    ///   - local: the local monotonic time the reply arrived (any fixed origin).
    /// - Returns: whether the gateway lost its state since the previous reply. After a
    ///   restart the new epoch becomes the reference.
    public mutating func observe(serverEpoch: UInt32, at local: Duration) -> Bool {
        defer { previous = (serverEpoch, local) }
        guard let previous else { return false }
        let clientDelta = max(0, (local - previous.local).secondsDouble)
        let server = Double(serverEpoch)
        let previousServer = Double(previous.server)
        switch rule {
        case .natpmp:
            return server < previousServer + clientDelta * 7 / 8 - 2
        case .pcp:
            if server + 1 < previousServer { return true }
            let serverDelta = server - previousServer
            return serverDelta + 2 < clientDelta - clientDelta / 16 || clientDelta + 2 < serverDelta - serverDelta / 16
        }
    }

    /// Forgets the reference (a new gateway, or a re-mapping after loss).
    public mutating func reset() { previous = nil }

    public static func == (lhs: GatewayEpoch, rhs: GatewayEpoch) -> Bool {
        lhs.rule == rhs.rule && lhs.previous?.server == rhs.previous?.server && lhs.previous?.local == rhs.previous?.local
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(rule)
        hasher.combine(previous?.server)
    }
}

extension Duration {
    var secondsDouble: Double {
        let (seconds, attoseconds) = components
        return Double(seconds) + Double(attoseconds) / 1e18
    }
}
