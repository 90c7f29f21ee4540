import NIOCore

/// The yamux session as a value: streams, windows, ids, limits, Go Away and Ping.
///
/// No I/O happens here. Each input (a frame received, a stream opened, data to send, data consumed
/// by a reader, a close, a reset, a timer) is a `mutating` method that returns what to do: frames to
/// write and events for streams. ``YamuxMultiplexer`` performs them.
///
/// Flow control (yamux spec, "Flow Control"): every stream starts with a 256 KiB window in each
/// direction. Data is never sent past the peer's window: ``sendData(streamID:from:)`` takes only
/// what fits and leaves the rest in the caller's buffer. Data received past this side's window is
/// a protocol error. This side grants window back as its reader consumes data, once at least half
/// of the stream's window can be granted, so a stalled reader stops the peer. A stream's window
/// starts at ``YamuxConfiguration/streamReceiveWindow`` and grows while the window, not the reader,
/// limits the stream (``streamConsumed(streamID:count:now:)``).
struct YamuxSessionStateMachine {
    /// What happened to an existing or new stream because of one received frame, in wire order.
    struct StreamEvents: Hashable, Sendable {
        /// Payload for the reader (a slice of the received bytes).
        var data: ByteBuffer?
        /// The peer acknowledged a stream this side opened.
        var acknowledged = false
        /// The peer granted send window: queued data may go out.
        var windowIncreased = false
        /// The peer sent FIN: no more data will arrive.
        var remoteFinished = false
        /// The peer reset the stream.
        var reset = false
        /// Both sides have now sent FIN.
        var closed = false
    }

    /// What the multiplexer does after a frame was received.
    enum FrameAction: Hashable, Sendable {
        /// Nothing (for example a late frame for a stream that is already gone).
        case none
        /// The peer opened a stream; create its channel, then apply the events.
        case streamOpened(streamID: UInt32, StreamEvents)
        /// Events for an existing stream.
        case streamEvents(streamID: UInt32, StreamEvents)
        /// The peer broke the protocol on one stream: write the RST and fail the stream.
        case resetStream(streamID: UInt32, error: TransportError, rst: YamuxFrame)
        /// Write this frame (a Ping answer, or RST for a refused stream).
        case write(YamuxFrame)
        /// The outstanding Ping, sent at `sentAt`, was answered.
        case pingAnswered(sentAt: NIODeadline)
        /// The peer sent Go Away (normal): no new streams may be opened; existing ones carry on.
        case goAwayReceived(YamuxGoAwayCode)
        /// The session is over: write `goAway` if present, fail every stream and close.
        case closeSession(error: TransportError, goAway: YamuxFrame?)
    }

    /// The outcome of offering data to send.
    enum SendDataResult: Hashable, Sendable {
        /// Write this Data frame; its payload was sliced off the front of the caller's buffer.
        case frame(YamuxFrame)
        /// The peer's window is exhausted: keep the data and retry after a window update.
        case windowExhausted
        /// The stream can no longer send (FIN sent, reset, or gone).
        case streamClosed
    }

    /// One stream's protocol state.
    private struct Stream {
        enum Handshake {
            case idle, synSent, synReceived, established
        }

        var handshake: Handshake
        let isInbound: Bool
        var localFinished = false
        var remoteFinished = false
        var isReset = false
        /// Bytes this side may still send.
        var sendWindow: Int
        /// Bytes the peer may still send.
        var receiveCredit: Int
        /// Bytes received and not yet reported consumed by the reader.
        var unconsumed = 0
        /// This side's receive window: the configured one, grown by auto-tuning.
        var receiveWindow: Int
        /// When window was last granted back (the start of the auto-tuning epoch); `nil` before the
        /// first grant.
        var lastGrant: NIODeadline?
        /// Bytes auto-tuning added to ``receiveWindow``, returned to the session's budget on release.
        var grownBy = 0
        /// Whether the stream counts towards an ACK backlog.
        var inBacklog: Bool

        var state: YamuxStreamState {
            if self.isReset { return .reset }
            switch (self.localFinished, self.remoteFinished) {
            case (true, true): return .closed
            case (true, false): return .localClosed
            case (false, true): return .remoteClosed
            case (false, false):
                switch self.handshake {
                case .idle: return .idle
                case .synSent: return .synSent
                case .synReceived: return .synReceived
                case .established: return .established
                }
            }
        }
    }

    let role: YamuxRole
    let configuration: YamuxConfiguration
    private let receiveWindow: Int
    private var streams: [UInt32: Stream] = [:]
    private var nextOutboundID: UInt32
    /// The highest stream id the peer has opened (0: none). Every implementation allocates ids
    /// upwards, so a SYN at or below it reuses an id.
    private var highestInboundID: UInt32 = 0
    private var unacknowledgedInbound = 0
    private var unacknowledgedOutbound = 0
    private var localGoAwaySent = false
    private(set) var remoteGoAway: YamuxGoAwayCode?
    private(set) var isClosed = false
    private var outstandingPing: (opaque: UInt32, sentAt: NIODeadline)?
    private var nextPingOpaque: UInt32 = 0
    /// Whether any frame arrived since the keep-alive timer last fired.
    private(set) var receivedSinceKeepAlive = false
    /// The last round trip a Ping measured; auto-tuning compares grant intervals with it.
    private(set) var roundTripTime: TimeAmount?
    /// Bytes auto-tuning added to the windows of the streams held, together.
    private(set) var grownWindowBytes = 0

    /// Creates a session for one end of a connection.
    init(role: YamuxRole, configuration: YamuxConfiguration) {
        self.role = role
        self.configuration = configuration
        self.receiveWindow = configuration.effectiveReceiveWindow
        self.nextOutboundID = role == .client ? 1 : 2
    }

    // MARK: Queries

    /// The state of a stream, or `nil` if the session does not hold it.
    func state(ofStream streamID: UInt32) -> YamuxStreamState? {
        self.streams[streamID]?.state
    }

    /// How many bytes may be sent on the stream right now (the peer's window); 0 if it cannot send.
    func sendWindow(ofStream streamID: UInt32) -> Int {
        guard let stream = self.streams[streamID], !stream.isReset, !stream.localFinished else { return 0 }
        return stream.sendWindow
    }

    /// How many streams the session holds, closing ones included.
    var numberOfStreams: Int { self.streams.count }

    /// The largest Data payload accepted from the peer: the largest window a stream can reach.
    var maximumInboundDataLength: UInt32 { UInt32(self.configuration.effectiveMaximumReceiveWindow) }

    /// The current receive window of a stream (grown by auto-tuning), or `nil` if the session does
    /// not hold it.
    func receiveWindow(ofStream streamID: UInt32) -> Int? {
        self.streams[streamID]?.receiveWindow
    }

    /// Whether a Ping is waiting for its answer.
    var isPingOutstanding: Bool { self.outstandingPing != nil }

    // MARK: Received frames

    /// Processes one frame from the peer.
    mutating func receive(_ frame: YamuxFrame) -> FrameAction {
        guard !self.isClosed else { return .none }
        self.receivedSinceKeepAlive = true
        switch frame.type {
        case .data, .windowUpdate:
            return self.receiveStreamFrame(frame)
        case .ping:
            return self.receivePing(frame)
        case .goAway:
            return self.receiveGoAway(frame)
        }
    }

    private mutating func receiveStreamFrame(_ frame: YamuxFrame) -> FrameAction {
        let streamID = frame.streamID
        guard streamID != 0 else {
            return self.fail(
                .yamuxInvalidStreamID,
                "the peer sent a \(frame.type) frame on stream 0, which is reserved for the session"
            )
        }
        if frame.flags.contains(.syn) {
            return self.receiveSYN(frame)
        }
        guard var stream = self.streams[streamID], stream.handshake != .idle else {
            return self.receiveForMissingStream(frame)
        }
        let action = self.apply(frame, to: &stream, opened: false)
        self.streams[streamID] = stream
        return action
    }

    private mutating func receiveSYN(_ frame: YamuxFrame) -> FrameAction {
        let streamID = frame.streamID
        guard !self.isLocalID(streamID) else {
            return self.fail(
                .yamuxInvalidStreamID,
                "the peer opened stream \(streamID), whose parity belongs to this side (the client uses odd ids, the server even)"
            )
        }
        guard streamID > self.highestInboundID else {
            return self.fail(
                .yamuxInvalidStreamID,
                "the peer opened stream \(streamID) again; it already used ids up to \(self.highestInboundID)"
            )
        }
        self.highestInboundID = streamID
        if frame.flags.contains(.rst) {
            // Opened and reset in one frame: there is nothing to deliver or answer.
            return .none
        }
        let refuse =
            self.localGoAwaySent
            || self.streams.count >= self.configuration.maximumStreams
            || self.unacknowledgedInbound >= self.configuration.maximumUnacknowledgedInboundStreams
        if refuse {
            // libp2p yamux spec, "ACK backlog": excess streams are refused with RST; the session lives.
            return .write(.windowUpdate(streamID: streamID, flags: .rst))
        }
        var stream = Stream(
            handshake: .synReceived,
            isInbound: true,
            sendWindow: Int(YamuxConfiguration.initialStreamWindow),
            receiveCredit: Int(YamuxConfiguration.initialStreamWindow),
            receiveWindow: self.receiveWindow,
            inBacklog: true
        )
        self.unacknowledgedInbound += 1
        let action = self.apply(frame, to: &stream, opened: true)
        self.streams[streamID] = stream
        return action
    }

    /// Applies the window, data and flags of a frame to a known stream.
    private mutating func apply(_ frame: YamuxFrame, to stream: inout Stream, opened: Bool) -> FrameAction {
        let streamID = frame.streamID
        if stream.isReset {
            // This side reset it; frames the peer sent before seeing the RST are expected.
            return .none
        }
        var events = StreamEvents()
        if frame.flags.contains(.ack), stream.handshake == .synSent {
            stream.handshake = .established
            self.leaveBacklog(&stream)
            events.acknowledged = true
        }
        switch frame.type {
        case .windowUpdate where frame.length > 0:
            let window = stream.sendWindow + Int(frame.length)
            guard window <= Int(UInt32.max) else {
                return self.fail(
                    .yamuxWindowViolation,
                    "the peer grew the send window of stream \(streamID) to \(window) bytes, past 2^32-1"
                )
            }
            stream.sendWindow = window
            events.windowIncreased = true
        case .data where frame.payload.readableBytes > 0:
            let count = frame.payload.readableBytes
            if stream.remoteFinished {
                stream.isReset = true
                self.leaveBacklog(&stream)
                return .resetStream(
                    streamID: streamID,
                    error: TransportError(
                        .yamuxStreamProtocolError,
                        "the peer sent \(count) bytes on stream \(streamID) after its FIN; the stream was reset"
                    ),
                    rst: .windowUpdate(streamID: streamID, flags: .rst)
                )
            }
            guard count <= stream.receiveCredit else {
                return self.fail(
                    .yamuxWindowViolation,
                    "the peer sent \(count) bytes on stream \(streamID) with only \(stream.receiveCredit) bytes of window"
                )
            }
            stream.receiveCredit -= count
            stream.unconsumed += count
            events.data = frame.payload
        default:
            break
        }
        if frame.flags.contains(.rst) {
            stream.isReset = true
            self.leaveBacklog(&stream)
            events.reset = true
        } else if frame.flags.contains(.fin), !stream.remoteFinished {
            stream.remoteFinished = true
            events.remoteFinished = true
            events.closed = stream.localFinished
        }
        if opened {
            return .streamOpened(streamID: streamID, events)
        }
        return events == StreamEvents() ? .none : .streamEvents(streamID: streamID, events)
    }

    private mutating func receiveForMissingStream(_ frame: YamuxFrame) -> FrameAction {
        let streamID = frame.streamID
        let usedBefore = self.isLocalID(streamID) ? streamID < self.nextOutboundID && self.streams[streamID] == nil : streamID <= self.highestInboundID
        if usedBefore {
            // The stream is gone (closed, reset or refused); the peer may not know yet (go-yamux
            // and rust-yamux drop such frames too).
            return .none
        }
        return self.fail(
            .yamuxUnknownStream,
            "the peer sent a \(frame.type) frame on stream \(streamID), which was never opened"
        )
    }

    private mutating func receivePing(_ frame: YamuxFrame) -> FrameAction {
        if frame.flags.contains(.syn) {
            return .write(.ping(flags: .ack, opaque: frame.length))
        }
        if frame.flags.contains(.ack), let ping = self.outstandingPing, ping.opaque == frame.length {
            self.outstandingPing = nil
            return .pingAnswered(sentAt: ping.sentAt)
        }
        return .none
    }

    private mutating func receiveGoAway(_ frame: YamuxFrame) -> FrameAction {
        let code = YamuxGoAwayCode(rawValue: frame.length)
        guard self.remoteGoAway == nil else { return .none }
        self.remoteGoAway = code
        if code == .normal {
            return .goAwayReceived(code)
        }
        // An error code ends the session: the peer has stopped processing our frames.
        self.isClosed = true
        return .closeSession(
            error: TransportError(.yamuxGoAwayReceived, "the peer ended the yamux session with Go Away, \(code)"),
            goAway: nil
        )
    }

    private mutating func fail(_ code: TransportError.Code, _ message: String) -> FrameAction {
        self.isClosed = true
        return .closeSession(error: TransportError(code, message), goAway: .goAway(.protocolError))
    }

    /// Records that a frame could not be decoded; returns the Go Away to send.
    mutating func decodingFailed() -> YamuxFrame? {
        guard !self.isClosed else { return nil }
        self.isClosed = true
        return .goAway(.protocolError)
    }

    // MARK: Streams opened by this side

    /// Allocates an id for a new outbound stream (state idle). The SYN goes out with
    /// ``streamActivated(streamID:)``, once the stream's channel is ready for the peer's data.
    /// - Throws: ``TransportError``: `.yamuxSessionClosed`, `.yamuxGoAwayReceived`,
    ///   `.yamuxTooManyStreams`, `.yamuxStreamBacklogFull` or `.yamuxStreamIDsExhausted`.
    mutating func openStream() throws(TransportError) -> UInt32 {
        guard !self.isClosed, !self.localGoAwaySent else {
            throw TransportError(.yamuxSessionClosed, "the yamux session is closing; open a new connection")
        }
        if let code = self.remoteGoAway {
            throw TransportError(.yamuxGoAwayReceived, "the peer sent Go Away (\(code)) and accepts no new streams")
        }
        guard self.streams.count < self.configuration.maximumStreams else {
            throw TransportError(
                .yamuxTooManyStreams,
                "the session already holds \(self.streams.count) streams (maximumStreams); close some first"
            )
        }
        guard self.unacknowledgedOutbound < self.configuration.maximumUnacknowledgedOutboundStreams else {
            throw TransportError(
                .yamuxStreamBacklogFull,
                "\(self.unacknowledgedOutbound) streams still wait for the peer's ACK (maximumUnacknowledgedOutboundStreams); retry later"
            )
        }
        let streamID = self.nextOutboundID
        guard streamID < UInt32.max - 1 else {
            throw TransportError(.yamuxStreamIDsExhausted, "every stream id of this side was used; open a new connection")
        }
        self.nextOutboundID += 2
        self.streams[streamID] = Stream(
            handshake: .idle,
            isInbound: false,
            sendWindow: Int(YamuxConfiguration.initialStreamWindow),
            receiveCredit: self.receiveWindow,
            receiveWindow: self.receiveWindow,
            inBacklog: true
        )
        self.unacknowledgedOutbound += 1
        return streamID
    }

    /// Moves a locally opened stream from idle to SYN sent, returning the SYN.
    ///
    /// The SYN is a Window Update, as go-yamux and py-libp2p send it, carrying the window beyond
    /// the initial 256 KiB when ``YamuxConfiguration/streamReceiveWindow`` is larger (yamux spec,
    /// "Flow Control"). Returns `nil` for streams that are not idle.
    mutating func streamActivated(streamID: UInt32) -> YamuxFrame? {
        guard var stream = self.streams[streamID], stream.handshake == .idle, !stream.isReset else { return nil }
        stream.handshake = .synSent
        self.streams[streamID] = stream
        let extra = UInt32(self.receiveWindow) - YamuxConfiguration.initialStreamWindow
        return .windowUpdate(streamID: streamID, flags: .syn, delta: extra)
    }

    // MARK: Sending

    /// Slices as much of `buffer` as the peer's window and the frame size allow into a Data frame.
    ///
    /// What does not fit stays in `buffer`: a full window waits for a window update, nothing is
    /// dropped. The first frame sent on a stream the peer opened carries ACK (libp2p yamux spec:
    /// acknowledge with the first frame rather than implicitly).
    mutating func sendData(streamID: UInt32, from buffer: inout ByteBuffer) -> SendDataResult {
        guard var stream = self.streams[streamID], !self.isClosed, !stream.isReset, !stream.localFinished,
            stream.handshake != .idle
        else {
            return .streamClosed
        }
        guard stream.sendWindow > 0 else { return .windowExhausted }
        let count = min(buffer.readableBytes, stream.sendWindow, self.configuration.maximumDataPayload)
        let payload = buffer.readSlice(length: count)!
        stream.sendWindow -= count
        let flags = self.takeAcknowledgement(&stream)
        self.streams[streamID] = stream
        return .frame(.data(streamID: streamID, flags: flags, payload: payload))
    }

    /// What to write after the reader consumed data.
    struct ConsumedFrames: Equatable {
        /// The window granted back, once at least half the stream's window can be.
        var windowUpdate: YamuxFrame?
        /// A Ping to measure the round trip auto-tuning needs, when none was measured yet.
        var ping: YamuxFrame?
    }

    /// Records that the reader consumed `count` bytes at `now`; returns a window update once at
    /// least half the stream's receive window can be granted back.
    ///
    /// Auto-tuning (see ``YamuxConfiguration/maximumStreamReceiveWindow``): when this grant comes
    /// less than four round trips after the stream's previous one, the window doubles first (up
    /// to the maximum and within ``YamuxConfiguration/receiveWindowGrowthLimit``) and the grant
    /// includes the growth. As in go-yamux (its `sendWindowUpdate`): a reader that keeps up with a
    /// sender held back by the window grants about every half round trip; a slow reader grants
    /// rarely. With no round trip measured yet the grant is plain and a Ping is returned.
    mutating func streamConsumed(streamID: UInt32, count: Int, now: NIODeadline) -> ConsumedFrames {
        guard var stream = self.streams[streamID] else { return ConsumedFrames() }
        stream.unconsumed = max(stream.unconsumed - count, 0)
        defer { self.streams[streamID] = stream }
        guard !self.isClosed, !stream.isReset, !stream.remoteFinished, stream.handshake != .idle else { return ConsumedFrames() }
        guard stream.receiveWindow - stream.receiveCredit - stream.unconsumed >= stream.receiveWindow / 2 else {
            return ConsumedFrames()
        }
        var frames = ConsumedFrames()
        if let roundTripTime = self.roundTripTime {
            if let lastGrant = stream.lastGrant, now - lastGrant < roundTripTime * 4 {
                self.growWindow(of: &stream)
            }
        } else {
            frames.ping = self.sendPing(now: now)
        }
        stream.lastGrant = now
        let grant = stream.receiveWindow - stream.receiveCredit - stream.unconsumed
        stream.receiveCredit += grant
        let flags = self.takeAcknowledgement(&stream)
        frames.windowUpdate = .windowUpdate(streamID: streamID, flags: flags, delta: UInt32(grant))
        return frames
    }

    /// Doubles a stream's receive window, within the stream's maximum and the session's budget.
    private mutating func growWindow(of stream: inout Stream) {
        let target = min(stream.receiveWindow * 2, self.configuration.effectiveMaximumReceiveWindow)
        let growth = min(target - stream.receiveWindow, self.configuration.receiveWindowGrowthLimit - self.grownWindowBytes)
        guard growth > 0 else { return }
        stream.receiveWindow += growth
        stream.grownBy += growth
        self.grownWindowBytes += growth
    }

    /// A Ping measured `roundTripTime`: auto-tuning compares grant intervals with it from now on.
    mutating func roundTripMeasured(_ roundTripTime: TimeAmount) {
        self.roundTripTime = roundTripTime
    }

    /// Half-closes the stream: returns the frames to write (an ACK first if the stream was never
    /// acknowledged, then the FIN) and whether the stream is now closed both ways.
    ///
    /// The FIN travels on its own Window Update, never together with ACK: py-libp2p 0.8 handles a
    /// frame carrying ACK without looking at its FIN flag.
    mutating func closeOutput(streamID: UInt32) -> (frames: [YamuxFrame], closed: Bool) {
        guard var stream = self.streams[streamID], !self.isClosed, !stream.isReset, !stream.localFinished,
            stream.handshake != .idle
        else {
            return ([], false)
        }
        var frames: [YamuxFrame] = []
        let ack = self.takeAcknowledgement(&stream)
        if !ack.isEmpty {
            frames.append(.windowUpdate(streamID: streamID, flags: ack))
        }
        stream.localFinished = true
        frames.append(.windowUpdate(streamID: streamID, flags: .fin))
        self.streams[streamID] = stream
        return (frames, stream.remoteFinished)
    }

    /// Resets the stream; returns the RST to write, or `nil` if the peer need not be told (the SYN
    /// never went out, or the stream is already closed or reset).
    mutating func resetStream(streamID: UInt32) -> YamuxFrame? {
        guard var stream = self.streams[streamID], !stream.isReset else { return nil }
        let wasClosed = stream.localFinished && stream.remoteFinished
        stream.isReset = true
        self.leaveBacklog(&stream)
        self.streams[streamID] = stream
        guard !self.isClosed, stream.handshake != .idle, !wasClosed else { return nil }
        return .windowUpdate(streamID: streamID, flags: .rst)
    }

    /// Forgets a stream whose channel is gone. Late frames for it are then ignored.
    mutating func streamReleased(streamID: UInt32) {
        guard var stream = self.streams.removeValue(forKey: streamID) else { return }
        self.leaveBacklog(&stream)
        self.grownWindowBytes -= stream.grownBy
    }

    // MARK: Session

    /// Starts a graceful shutdown: returns the Go Away to send (once); no new inbound streams are
    /// accepted afterwards and no new outbound ones opened.
    mutating func goAway(_ code: YamuxGoAwayCode) -> YamuxFrame? {
        guard !self.localGoAwaySent, !self.isClosed else { return nil }
        self.localGoAwaySent = true
        return .goAway(code)
    }

    /// Records that the connection is gone.
    mutating func connectionClosed() {
        self.isClosed = true
        self.outstandingPing = nil
    }

    /// Sends a Ping unless one is outstanding (its answer serves every caller).
    mutating func sendPing(now: NIODeadline) -> YamuxFrame? {
        guard !self.isClosed, self.outstandingPing == nil else { return nil }
        let opaque = self.nextPingOpaque
        self.nextPingOpaque &+= 1
        self.outstandingPing = (opaque, now)
        return .ping(flags: .syn, opaque: opaque)
    }

    /// The keep-alive timer fired: returns a Ping if nothing was received since the last firing.
    ///
    /// Any received frame proves the peer alive, so a busy connection sends no pings (and its
    /// answers cannot queue behind bulk data), as in go-yamux.
    mutating func keepAliveTimerFired(now: NIODeadline) -> YamuxFrame? {
        defer { self.receivedSinceKeepAlive = false }
        guard !self.receivedSinceKeepAlive else { return nil }
        return self.sendPing(now: now)
    }

    /// The answer to the Ping sent with `opaque` is overdue: returns the error that ends the
    /// session, or `nil` if that Ping was answered meanwhile.
    mutating func pingTimedOut(opaque: UInt32) -> TransportError? {
        guard !self.isClosed, let ping = self.outstandingPing, ping.opaque == opaque else { return nil }
        self.isClosed = true
        self.outstandingPing = nil
        return TransportError(
            .yamuxPingTimeout,
            "the peer did not answer a yamux ping within \(self.configuration.pingTimeout); the connection is presumed dead"
        )
    }

    /// The opaque value of the outstanding Ping.
    var outstandingPingOpaque: UInt32? { self.outstandingPing?.opaque }

    // MARK: Helpers

    private func isLocalID(_ streamID: UInt32) -> Bool {
        (streamID % 2 == 1) == (self.role == .client)
    }

    private mutating func takeAcknowledgement(_ stream: inout Stream) -> YamuxFrame.Flags {
        guard stream.handshake == .synReceived else { return [] }
        stream.handshake = .established
        self.leaveBacklog(&stream)
        return .ack
    }

    private mutating func leaveBacklog(_ stream: inout Stream) {
        guard stream.inBacklog else { return }
        stream.inBacklog = false
        if stream.isInbound {
            self.unacknowledgedInbound -= 1
        } else {
            self.unacknowledgedOutbound -= 1
        }
    }
}
