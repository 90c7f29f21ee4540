import PunchCrypto

/// The user inbound event ``NoiseHandler`` fires once the handshake has authenticated the remote
/// peer; from then on, reads and writes through the handler are encrypted.
///
/// ```swift
/// func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
///     if let done = event as? NoiseHandshakeCompleted { print("secured with", done.remotePeerID) }
///     context.fireUserInboundEventTriggered(event)
/// }
/// ```
public struct NoiseHandshakeCompleted: Hashable, Sendable {
    /// The remote peer's authenticated PeerID.
    public let remotePeerID: PeerID
    /// The remote peer's identity key.
    public let remotePublicKey: PublicKey
    /// The stream muxer agreed in the handshake (libp2p noise spec, `NoiseExtensions.stream_muxers`),
    /// or `nil` when either side offered none: then negotiate it with multistream-select.
    public let negotiatedMuxer: String?

    /// Creates the event.
    public init(remotePeerID: PeerID, remotePublicKey: PublicKey, negotiatedMuxer: String?) {
        self.remotePeerID = remotePeerID
        self.remotePublicKey = remotePublicKey
        self.negotiatedMuxer = negotiatedMuxer
    }
}
