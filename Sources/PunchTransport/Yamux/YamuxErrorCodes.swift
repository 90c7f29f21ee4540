extension TransportError.Code {
    /// A yamux frame header carried a version other than 0 (yamux spec, "Version Field").
    ///
    /// The peer speaks a yamux version this implementation does not know; the session is closed
    /// with a Go Away (protocol error).
    public static let yamuxInvalidVersion = Self("yamux.invalidVersion")

    /// A yamux frame header carried a type other than Data, Window Update, Ping or Go Away.
    ///
    /// The session is closed with a Go Away (protocol error).
    public static let yamuxInvalidFrameType = Self("yamux.invalidFrameType")

    /// A yamux Data frame announced a payload larger than any receive window this side grants,
    /// so it could never be legal; the session is closed before the payload is buffered.
    public static let yamuxFrameTooLarge = Self("yamux.frameTooLarge")

    /// The peer used a stream id it may not use: 0 for a stream frame, a SYN with this side's
    /// parity, or a SYN reusing an id already seen. The session is closed with a Go Away
    /// (protocol error).
    public static let yamuxInvalidStreamID = Self("yamux.invalidStreamID")

    /// The peer sent a frame for a stream that was never opened. The session is closed with a
    /// Go Away (protocol error).
    public static let yamuxUnknownStream = Self("yamux.unknownStream")

    /// The peer sent more Data on a stream than the receive window this side advertised, or grew
    /// this side's send window past 2³²−1. The session is closed with a Go Away (protocol error).
    public static let yamuxWindowViolation = Self("yamux.windowViolation")

    /// The peer broke the stream protocol on one stream (Data after its FIN); that stream is reset,
    /// the session carries on.
    public static let yamuxStreamProtocolError = Self("yamux.streamProtocolError")

    /// The peer reset the stream (RST), or refused it. Data written and not yet acknowledged by the
    /// peer's application may be lost; retry on a new stream if the protocol allows it.
    public static let yamuxStreamReset = Self("yamux.streamReset")

    /// A new stream could not be opened because the session already holds
    /// ``YamuxConfiguration/maximumStreams`` streams. Close some streams first.
    public static let yamuxTooManyStreams = Self("yamux.tooManyStreams")

    /// A new stream could not be opened because
    /// ``YamuxConfiguration/maximumUnacknowledgedOutboundStreams`` streams are still waiting for
    /// the peer's ACK (libp2p yamux spec, "ACK backlog"). Retry once the peer has accepted some.
    public static let yamuxStreamBacklogFull = Self("yamux.streamBacklogFull")

    /// Every stream id of this side's parity has been used; open a new connection.
    public static let yamuxStreamIDsExhausted = Self("yamux.streamIDsExhausted")

    /// The peer sent Go Away: it accepts no new streams (code 0), or it ended the session because of
    /// an error (codes 1 and 2, or unknown codes). Open a new connection for new streams.
    public static let yamuxGoAwayReceived = Self("yamux.goAwayReceived")

    /// The yamux session or its connection is closed; the stream or request cannot proceed.
    public static let yamuxSessionClosed = Self("yamux.sessionClosed")

    /// A ping (keep-alive or ``YamuxMultiplexer/ping()``) went unanswered for
    /// ``YamuxConfiguration/pingTimeout``; the connection is presumed dead and is closed.
    public static let yamuxPingTimeout = Self("yamux.pingTimeout")

    /// A gracefully closing stream did not finish within ``YamuxConfiguration/streamCloseTimeout``
    /// (the peer neither read the remaining data nor sent its FIN), so it was reset.
    public static let yamuxStreamCloseTimeout = Self("yamux.streamCloseTimeout")
}
