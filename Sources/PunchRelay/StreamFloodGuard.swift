import NIOConcurrencyHelpers
import NIOCore
import PunchTransport
import PunchWire

/// Cuts off a peer that opens hop (at a relay) or stop (at a client) streams faster than any
/// honest peer does: each connection has a token bucket of ``RelayConfiguration/streamBurst``
/// streams refilled at ``RelayConfiguration/streamsPerSecond``; the stream that finds the bucket
/// empty is refused and the whole connection is closed. The table holds one bucket per
/// connection that opened such a stream and forgets it when the connection closes, so it is
/// bounded by the host's ``HostConfiguration/maximumConnections``.
final class StreamFloodGuard: Sendable {
    private let burst: Int
    private let perSecond: Int
    private let buckets = NIOLockedValueBox<[ObjectIdentifier: TokenBucket]>([:])

    init(burst: Int, perSecond: Int) {
        self.burst = burst
        self.perSecond = perSecond
    }

    /// Takes a token for a new stream on `connection`. `false`: the peer floods; cut it off.
    func admit(_ connection: Connection, now: NIODeadline = .now()) -> Bool {
        let key = ObjectIdentifier(connection)
        let (admitted, isNew) = buckets.withLockedValue { buckets -> (Bool, Bool) in
            let isNew = buckets[key] == nil
            var bucket = buckets[key] ?? TokenBucket(capacity: burst, ratePerSecond: perSecond, now: now)
            let admitted = bucket.take(now: now)
            buckets[key] = bucket
            return (admitted, isNew)
        }
        if isNew {
            connection.closeFuture.whenComplete { [buckets] _ in buckets.withLockedValue { $0[key] = nil } }
        }
        return admitted
    }

    /// Connections with a bucket now (for tests).
    var tracked: Int { buckets.withLockedValue { $0.count } }
}
