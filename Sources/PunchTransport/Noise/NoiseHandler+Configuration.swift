import NIOCore

extension NoiseHandler {
    /// A receive allocator for channels that carry Noise: reads grow up to 1 MiB under load.
    ///
    /// A full transport frame is 65537 bytes on the wire, just over SwiftNIO's default largest
    /// read of 64 KiB, so with the default every bulk frame arrives in two reads and must be
    /// reassembled. Set it before the channel reads, for example with
    /// `.childChannelOption(.recvAllocator, value: NoiseHandler.recommendedReceiveAllocator)`.
    public static let recommendedReceiveAllocator = AdaptiveRecvByteBufferAllocator(
        minimum: 64, initial: 2048, maximum: 1 << 20)

    /// Limits and options of a ``NoiseHandler``.
    public struct Configuration: Sendable {
        /// The default ``handshakeTimeout``: ten seconds, ample for three messages over a relay.
        public static let defaultHandshakeTimeout = TimeAmount.seconds(10)
        /// The default ``maximumBufferedPlaintextBeforeHandshake``: 256 KiB.
        public static let defaultMaximumBufferedPlaintextBeforeHandshake = 256 * 1024
        /// The default ``maximumHandshakeMessageLength``: 16 KiB. A handshake message is 96 bytes
        /// plus a payload of an identity key, a signature and a few muxer names, a few hundred
        /// bytes even with an RSA-4096 identity, so anything larger is not a Noise peer.
        public static let defaultMaximumHandshakeMessageLength = 16 * 1024

        /// How long the handshake may take from its start; then the channel is closed with
        /// ``TransportError/Code/noiseHandshakeTimeout``.
        public var handshakeTimeout: TimeAmount
        /// How many plaintext bytes written before the handshake completes are held back (and sent
        /// once it completes); writing more fails with
        /// ``TransportError/Code/noiseBufferLimitExceeded`` and closes the channel.
        public var maximumBufferedPlaintextBeforeHandshake: Int
        /// The largest handshake message accepted, checked from its length prefix; at most 65535.
        public var maximumHandshakeMessageLength: Int
        /// Stream muxers to offer in the handshake, most preferred first; empty (the default) sends
        /// no Noise extensions. See ``NoiseHandshakeCompleted/negotiatedMuxer``.
        public var muxers: [String]

        /// Creates a configuration; every parameter has a documented default.
        public init(
            handshakeTimeout: TimeAmount = Self.defaultHandshakeTimeout,
            maximumBufferedPlaintextBeforeHandshake: Int = Self.defaultMaximumBufferedPlaintextBeforeHandshake,
            maximumHandshakeMessageLength: Int = Self.defaultMaximumHandshakeMessageLength,
            muxers: [String] = []
        ) {
            self.handshakeTimeout = handshakeTimeout
            self.maximumBufferedPlaintextBeforeHandshake = maximumBufferedPlaintextBeforeHandshake
            self.maximumHandshakeMessageLength = maximumHandshakeMessageLength
            self.muxers = muxers
        }
    }
}
