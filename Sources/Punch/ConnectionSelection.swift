import PunchCrypto
import PunchTransport

/// The rule that picks the one connection a node keeps to a peer, computed alike on both sides
/// so that both keep the same connection (issue 16, "One connection per peer"):
///
/// 1. direct before relayed;
/// 2. then the connection whose Noise initiator has the smaller PeerID (compared as bytes of the
///    multihash). Both ends agree on who the initiator of a connection was, even after a TCP
///    simultaneous open where each side thinks it dialed;
/// 3. two connections with the same initiator are told apart only by that initiator: it keeps
///    the older one and closes the other; the responder closes neither and waits.
///
/// The connection that is not kept closes once it has no open stream: an open stream is never cut.
public enum ConnectionSelection {
    /// What a connection looks like to the rule.
    public struct Candidate: Sendable, Hashable {
        /// Direct or relayed.
        public var path: ConnectionPath
        /// The PeerID of the side that ran Noise as initiator.
        public var initiator: PeerID
        /// Our order of registration (older is smaller); used only when we are the initiator.
        public var order: Int

        public init(path: ConnectionPath, initiator: PeerID, order: Int) {
            self.path = path
            self.initiator = initiator
            self.order = order
        }
    }

    /// Whether `a` is kept over `b` by rules 1 and 2 (and 3, by `order`).
    public static func prefers(_ a: Candidate, over b: Candidate) -> Bool {
        if a.path != b.path { return a.path == .direct }
        if a.initiator != b.initiator { return a.initiator.multihash.bytes.lexicographicallyPrecedes(b.initiator.multihash.bytes) }
        return a.order < b.order
    }

    /// The index of the candidate to keep, and the indices this side closes: every other one,
    /// except those with the same initiator as the kept one when we (`local`) are not it.
    public static func decide(_ candidates: [Candidate], local: PeerID) -> (keep: Int, close: [Int])? {
        guard let keep = candidates.indices.min(by: { prefers(candidates[$0], over: candidates[$1]) }) else { return nil }
        let kept = candidates[keep]
        let close = candidates.indices.filter { index in
            guard index != keep else { return false }
            let other = candidates[index]
            // Relayed connections beside a direct one are the host's to close
            // (HostConfiguration.relayedConnectionGrace), as it always has.
            if kept.path == .direct, other.path == .relayed { return false }
            if other.initiator == kept.initiator { return kept.initiator == local }
            return true
        }
        return (keep, close)
    }
}

extension Connection {
    /// The PeerID of the side that ran Noise as initiator on this connection.
    func initiator(local: PeerID) -> PeerID { isSecurityInitiator ? local : remotePeerID }
}
