/// Which side of a Noise handshake this party plays.
///
/// In libp2p the dialer is the initiator and the listener the responder (libp2p noise spec,
/// "Overview"); in a simultaneous open the roles come from the negotiation above Noise.
public enum NoiseRole: Hashable, Sendable {
    /// Sends the first handshake message (`-> e`).
    case initiator
    /// Answers the first message (`<- e, ee, s, es`).
    case responder
}
