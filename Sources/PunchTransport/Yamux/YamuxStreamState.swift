/// Where one yamux stream is in its life, as the session state machine sees it.
///
/// The open handshake and the two half-closes overlap (data may flow, and either side may send FIN,
/// before the ACK arrives), so the state reported is the most advanced one: reset, then closed,
/// then a half-close, then the handshake.
enum YamuxStreamState: Hashable, Sendable {
    /// Opened locally; the SYN is not sent yet (the stream's initializer is still running).
    case idle
    /// Opened locally; SYN sent, the peer's ACK not received yet.
    case synSent
    /// Opened by the peer; SYN received, this side's ACK not sent yet.
    case synReceived
    /// Acknowledged; both directions open.
    case established
    /// This side sent FIN; the peer may still send.
    case localClosed
    /// The peer sent FIN; this side may still send.
    case remoteClosed
    /// Both sides sent FIN.
    case closed
    /// Reset by either side.
    case reset
}
