import NIOCore

/// One yamux frame: the 12-byte header and, for Data frames, the payload.
///
/// Layout (yamux spec, "Framing"; every field big-endian):
///
/// ```
/// version u8 (always 0) | type u8 | flags u16 | stream id u32 | length u32 | payload (Data only)
/// ```
///
/// The meaning of ``length`` depends on ``type``: the payload size for Data, a window delta for
/// Window Update, an opaque value for Ping, an error code for Go Away. For Data frames the payload
/// is a slice of the received bytes (no copy) and ``length`` always equals its readable bytes.
public struct YamuxFrame: Hashable, Sendable {
    /// The yamux frame types (yamux spec, "Type Field").
    public enum FrameType: UInt8, Hashable, Sendable {
        /// Carries stream data; may be empty when it only carries flags.
        case data = 0
        /// Grows the receiver's send window by ``YamuxFrame/length``; also opens, accepts, closes
        /// and resets streams through its flags.
        case windowUpdate = 1
        /// Measures round-trip time and keeps the connection alive; always stream 0.
        case ping = 2
        /// Ends the session; ``YamuxFrame/length`` is a ``YamuxGoAwayCode``; always stream 0.
        case goAway = 3
    }

    /// The yamux header flags (yamux spec, "Flag Field").
    public struct Flags: OptionSet, Hashable, Sendable {
        /// The flag bits as they appear on the wire.
        public var rawValue: UInt16

        /// Creates flags from their wire bits; unknown bits are kept and ignored.
        public init(rawValue: UInt16) { self.rawValue = rawValue }

        /// Opens a new stream; on a Ping, marks a request.
        public static let syn = Flags(rawValue: 0x1)
        /// Accepts a new stream; on a Ping, marks the answer.
        public static let ack = Flags(rawValue: 0x2)
        /// Half-closes the stream: the sender sends no more data.
        public static let fin = Flags(rawValue: 0x4)
        /// Resets the stream at once.
        public static let rst = Flags(rawValue: 0x8)
    }

    /// The size of a yamux header in bytes.
    public static let headerLength = 12

    /// The only yamux version (yamux spec, "Version Field").
    public static let version: UInt8 = 0

    /// What kind of frame this is.
    public var type: FrameType
    /// The header flags.
    public var flags: Flags
    /// The stream this frame addresses; 0 for Ping and Go Away.
    public var streamID: UInt32
    /// The header's length field: payload size, window delta, ping opaque value or Go Away code.
    public var length: UInt32
    /// The payload of a Data frame; empty for every other type.
    public var payload: ByteBuffer

    /// Creates a frame from raw header fields.
    ///
    /// Prefer the static constructors (``data(streamID:flags:payload:)`` and friends), which keep
    /// ``length`` and ``payload`` consistent.
    /// - Parameters:
    ///   - type: the frame type.
    ///   - flags: the header flags.
    ///   - streamID: the stream id.
    ///   - length: the length field; for Data it must equal `payload.readableBytes`.
    ///   - payload: the Data payload; empty for other types.
    public init(type: FrameType, flags: Flags, streamID: UInt32, length: UInt32, payload: ByteBuffer = ByteBuffer()) {
        self.type = type
        self.flags = flags
        self.streamID = streamID
        self.length = length
        self.payload = payload
    }

    /// A Data frame carrying `payload` (which may be empty when the frame only carries flags).
    /// - Parameters:
    ///   - streamID: the stream.
    ///   - flags: SYN, ACK, FIN or RST as needed.
    ///   - payload: the bytes; at most 2³²−1 of them.
    /// - Returns: the frame.
    public static func data(streamID: UInt32, flags: Flags = [], payload: ByteBuffer) -> YamuxFrame {
        YamuxFrame(type: .data, flags: flags, streamID: streamID, length: UInt32(payload.readableBytes), payload: payload)
    }

    /// A Window Update frame granting `delta` more bytes of send window to the peer.
    /// - Parameters:
    ///   - streamID: the stream.
    ///   - flags: SYN, ACK, FIN or RST as needed.
    ///   - delta: the window increment; 0 when the frame only carries flags.
    /// - Returns: the frame.
    public static func windowUpdate(streamID: UInt32, flags: Flags = [], delta: UInt32 = 0) -> YamuxFrame {
        YamuxFrame(type: .windowUpdate, flags: flags, streamID: streamID, length: delta)
    }

    /// A Ping frame on stream 0: `.syn` for a request, `.ack` for the answer echoing `opaque`.
    /// - Parameters:
    ///   - flags: `.syn` or `.ack`.
    ///   - opaque: the value the answer echoes.
    /// - Returns: the frame.
    public static func ping(flags: Flags, opaque: UInt32) -> YamuxFrame {
        YamuxFrame(type: .ping, flags: flags, streamID: 0, length: opaque)
    }

    /// A Go Away frame on stream 0 carrying `code`.
    /// - Parameter code: why the session ends.
    /// - Returns: the frame.
    public static func goAway(_ code: YamuxGoAwayCode) -> YamuxFrame {
        YamuxFrame(type: .goAway, flags: [], streamID: 0, length: code.rawValue)
    }

    /// The number of bytes ``encode(into:)`` writes.
    public var encodedLength: Int {
        Self.headerLength + (self.type == .data ? self.payload.readableBytes : 0)
    }

    /// Appends the frame's wire bytes to `buffer`.
    ///
    /// For Data frames the length field is taken from the payload, so a frame cannot announce a
    /// different size from what it carries.
    /// - Parameter buffer: the buffer to append to.
    public func encode(into buffer: inout ByteBuffer) {
        self.encodeHeader(into: &buffer)
        if self.type == .data {
            buffer.writeImmutableBuffer(self.payload)
        }
    }

    /// Appends only the 12 header bytes, for a caller that sends the payload separately.
    func encodeHeader(into buffer: inout ByteBuffer) {
        let length = self.type == .data ? UInt32(self.payload.readableBytes) : self.length
        buffer.writeMultipleIntegers(Self.version, self.type.rawValue, self.flags.rawValue, self.streamID, length)
    }
}

/// The error code a Go Away frame carries (yamux spec, "Session termination").
///
/// Any 32-bit value may arrive; go-libp2p, for one, sends codes beyond the three the spec names.
public struct YamuxGoAwayCode: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    /// The code as it appears in the frame's length field.
    public var rawValue: UInt32

    /// Creates a code from its wire value.
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    /// Normal termination: the sender accepts no new streams.
    public static let normal = YamuxGoAwayCode(rawValue: 0)
    /// The sender saw a protocol error.
    public static let protocolError = YamuxGoAwayCode(rawValue: 1)
    /// The sender hit an internal error.
    public static let internalError = YamuxGoAwayCode(rawValue: 2)

    public var description: String {
        switch self {
        case .normal: "normal termination (0)"
        case .protocolError: "protocol error (1)"
        case .internalError: "internal error (2)"
        default: "code \(self.rawValue)"
        }
    }
}
