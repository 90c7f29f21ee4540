import NIOCore

/// Which end of the connection a yamux session is (yamux spec, "StreamID Field").
///
/// The client opens streams with odd ids, the server with even ids. In libp2p the side that
/// initiated the security handshake (the dialer, or the DCUtR/simultaneous-open initiator) is the
/// client.
public enum YamuxRole: Hashable, Sendable {
    /// The initiator: odd stream ids.
    case client
    /// The responder: even stream ids.
    case server
}

/// The limits and timers of a yamux session. Every field has a documented default.
///
/// ```swift
/// var configuration = YamuxConfiguration()
/// configuration.maximumStreams = 128
/// ```
public struct YamuxConfiguration: Hashable, Sendable {
    /// The window every stream starts with in each direction: 256 KiB (yamux spec, "Flow Control").
    public static let initialStreamWindow: UInt32 = 256 * 1024

    /// How many bytes the peer may send on a stream before this side has read them.
    ///
    /// Default 256 KiB, the spec's initial window. A larger value is advertised in the SYN or ACK
    /// window update, as the spec allows, and raises throughput on links with a high
    /// bandwidth-delay product at the cost of memory: a stream whose reader stalls buffers up to
    /// this many bytes. Values below 256 KiB are raised to it, because the peer may always send the
    /// initial window. This is where each stream starts: auto-tuning grows the window of a busy
    /// stream up to ``maximumStreamReceiveWindow``, the largest Data frame accepted (no legal frame
    /// can be bigger than a whole window).
    public var streamReceiveWindow: UInt32 = initialStreamWindow

    /// The largest a stream's receive window grows to by auto-tuning. Default 16 MiB, go-yamux's
    /// `MaxStreamWindowSize`.
    ///
    /// A window of 256 KiB caps a stream at 256 KiB per round trip (5 MiB/s across 50 ms), however
    /// fast the link. So, as go-yamux and QUIC implementations do, a stream whose reader keeps up
    /// doubles its window whenever it grants window back less than four round trips after its
    /// previous grant (the window, not the reader, is then what holds the sender back). The round
    /// trip is the last yamux Ping's; when none was measured yet the first grant sends a Ping.
    /// A stream whose reader is slow grants rarely and never grows. The window never shrinks
    /// while the stream lives. Set it to ``streamReceiveWindow`` (or below) to turn growth off.
    public var maximumStreamReceiveWindow: UInt32 = 16 * 1024 * 1024

    /// How many bytes all streams of one session may add to their windows by auto-tuning, together.
    /// Default 32 MiB.
    ///
    /// This bounds the memory growth can cost: unread data buffered for one connection stays below
    /// ``maximumStreams`` × ``streamReceiveWindow`` + this limit. A stream's growth returns to the
    /// budget when the stream is released. 0 turns growth off.
    public var receiveWindowGrowthLimit: Int = 32 * 1024 * 1024

    /// The largest payload of a Data frame this side sends. Default 64 KiB.
    ///
    /// Larger writes are split into several frames, so one busy stream cannot hold the connection
    /// for long; a write larger than the peer's window waits for window updates and is never
    /// dropped. 64 KiB keeps frames as large as go-yamux's and lets a 64 KiB write (the usual chunk
    /// size) travel as one frame.
    public var maximumDataFramePayload: Int = 64 * 1024

    /// The most streams the session holds at once, both directions and streams still closing
    /// included. Default 512.
    ///
    /// With the default window that bounds the data buffered for slow readers to 128 MiB per
    /// connection. A SYN beyond the limit is answered with RST; ``YamuxMultiplexer/createStream(initializer:)``
    /// fails with `.yamuxTooManyStreams`.
    public var maximumStreams: Int = 512

    /// The most streams the peer may have opened that this side has not yet acknowledged.
    /// Default 256.
    ///
    /// The libp2p yamux spec ("ACK backlog") says implementations SHOULD buffer at least 256
    /// unacknowledged inbound streams; a SYN beyond the limit is answered with RST. A stream is
    /// acknowledged with the first frame this side sends on it, as the spec recommends (it does not
    /// acknowledge implicitly).
    public var maximumUnacknowledgedInboundStreams: Int = 256

    /// The most streams this side opens before the peer acknowledges them. Default 256.
    ///
    /// The libp2p yamux spec says implementations SHOULD allow at most an ACK backlog of 256;
    /// ``YamuxMultiplexer/createStream(initializer:)`` fails with `.yamuxStreamBacklogFull` beyond it.
    public var maximumUnacknowledgedOutboundStreams: Int = 256

    /// The most unsent bytes a stream holds before it turns unwritable, even when the peer's window
    /// is larger. Default 4 MiB.
    ///
    /// A stream is writable while it queues no more than this and no more than the peer's window
    /// allows. Writes beyond it are never refused or reset (that would lose a correct writer's
    /// bytes): a writer that honours `isWritable` stays near it, and `NIOAsyncChannel`'s writer,
    /// which can run ahead of the event loop, is kept near it by
    /// ``HostStream/waitForWriterToCatchUp()``.
    public var streamWriteBufferLimit: Int = 4 * 1024 * 1024

    /// Send a Ping when nothing has been received for this long; `nil` turns keep-alive off.
    /// Default 30 seconds, as go-yamux.
    public var keepAliveInterval: TimeAmount? = .seconds(30)

    /// How long a Ping may go unanswered before the connection is closed as dead. Default 10
    /// seconds, go-yamux's write timeout for the same purpose.
    public var pingTimeout: TimeAmount = .seconds(10)

    /// How long a stream closed with `close()` may wait for the peer's FIN (and for window to
    /// send data still queued) before it is reset. Default 5 minutes, as go-yamux.
    public var streamCloseTimeout: TimeAmount = .minutes(5)

    /// Creates the default configuration.
    public init() {}

    /// The receive window actually used: ``streamReceiveWindow`` raised to the spec's initial
    /// window.
    var effectiveReceiveWindow: Int {
        Int(max(self.streamReceiveWindow, Self.initialStreamWindow))
    }

    /// The largest receive window a stream may reach: ``maximumStreamReceiveWindow``, at least the
    /// ``effectiveReceiveWindow``.
    var effectiveMaximumReceiveWindow: Int {
        max(Int(self.maximumStreamReceiveWindow), self.effectiveReceiveWindow)
    }

    /// The largest payload of a Data frame this side sends (at least one byte).
    var maximumDataPayload: Int {
        max(self.maximumDataFramePayload, 1)
    }
}
