import PunchTransport

/// The one rule for what follows a failed DCUtR exchange, for both roles: the initiator's retry
/// schedule (``HolePuncher/keepUpgrading(_:host:localAddresses:configuration:onRound:)``,
/// PunchNode's connect policy) and the serving side's wait for the peer's next round.
///
/// Before, this rule lived in two places that disagreed (the library retried after
/// `noAddresses`, `punch dial` stopped waiting on it).
public enum HolePunchRetry {
    /// What a failed exchange means for the next one.
    public enum Verdict: Sendable, Hashable {
        /// The punch itself failed (dials, a slow message, a busy peer): another round later
        /// may work, with the same addresses.
        case retry
        /// One side had no usable public address, or the exchange ended before any CONNECT
        /// (which is how a peer without addresses stops). Only a change of our public addresses
        /// can make a next round work; the serving side cannot know when, so it stops waiting.
        case waitForNewAddresses
        /// No round can ever work: the peer does not speak DCUtR, speaks it wrongly, or it ran
        /// where it cannot run.
        case stop
    }

    /// The verdict for `error`, a round's failure.
    public static func verdict(after error: any Error) -> Verdict {
        if let error = error as? HolePunchError {
            switch error.code {
            case .malformedMessage, .notRelayed: return .stop
            case .noAddresses, .streamClosed: return .waitForNewAddresses
            default: return .retry
            }
        }
        if let error = error as? TransportError, error.code == .multistreamNoProtocol { return .stop }
        return .retry
    }
}
