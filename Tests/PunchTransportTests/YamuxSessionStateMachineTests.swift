import NIOCore
import Testing

@testable import PunchTransport

@Suite struct YamuxSessionStateMachineTests {
    typealias Machine = YamuxSessionStateMachine
    let window = Int(YamuxConfiguration.initialStreamWindow)

    private func machine(_ role: YamuxRole = .client, configure: (inout YamuxConfiguration) -> Void = { _ in }) -> Machine {
        var configuration = YamuxConfiguration()
        configure(&configuration)
        return Machine(role: role, configuration: configuration)
    }

    private func bytes(_ count: Int) -> ByteBuffer {
        ByteBuffer(repeating: 0xAB, count: count)
    }

    /// Opens an outbound stream and sends its SYN.
    private func openAndActivate(_ machine: inout Machine) throws -> UInt32 {
        let id = try machine.openStream()
        _ = machine.streamActivated(streamID: id)
        return id
    }

    private func closeError(_ action: Machine.FrameAction) -> (TransportError, YamuxFrame?)? {
        if case .closeSession(let error, let goAway) = action { return (error, goAway) }
        return nil
    }

    // MARK: Opening

    @Test func clientOpensOddIdsAndServerEvenIds() throws {
        var client = self.machine(.client)
        var server = self.machine(.server)
        #expect(try client.openStream() == 1)
        #expect(try client.openStream() == 3)
        #expect(try server.openStream() == 2)
        #expect(try server.openStream() == 4)
    }

    @Test func openSendsWindowUpdateSYNOnceActivatedAndEstablishesOnACK() throws {
        var machine = self.machine()
        let id = try machine.openStream()
        #expect(machine.state(ofStream: id) == .idle)
        #expect(machine.streamActivated(streamID: id) == .windowUpdate(streamID: 1, flags: .syn, delta: 0))
        #expect(machine.state(ofStream: id) == .synSent)
        #expect(machine.streamActivated(streamID: id) == nil)

        let action = machine.receive(.windowUpdate(streamID: id, flags: .ack))
        var expected = Machine.StreamEvents()
        expected.acknowledged = true
        #expect(action == .streamEvents(streamID: id, expected))
        #expect(machine.state(ofStream: id) == .established)
    }

    @Test func largerReceiveWindowIsAdvertisedWithTheSYN() throws {
        var machine = self.machine { $0.streamReceiveWindow = 1024 * 1024 }
        let id = try machine.openStream()
        #expect(machine.streamActivated(streamID: id) == .windowUpdate(streamID: id, flags: .syn, delta: 768 * 1024))
        // The peer may now send the whole MiB.
        let action = machine.receive(.data(streamID: id, payload: self.bytes(1024 * 1024)))
        guard case .streamEvents(_, let events) = action else {
            Issue.record("expected stream events, got \(action)")
            return
        }
        #expect(events.data?.readableBytes == 1024 * 1024)
    }

    @Test func acceptedStreamIsAcknowledgedByTheFirstFrameSent() throws {
        var machine = self.machine(.server)
        #expect(machine.receive(.windowUpdate(streamID: 1, flags: .syn)) == .streamOpened(streamID: 1, .init()))
        #expect(machine.state(ofStream: 1) == .synReceived)

        var payload = ByteBuffer(string: "hello")
        #expect(machine.sendData(streamID: 1, from: &payload) == .frame(.data(streamID: 1, flags: .ack, payload: ByteBuffer(string: "hello"))))
        #expect(machine.state(ofStream: 1) == .established)
        var more = ByteBuffer(string: "again")
        #expect(machine.sendData(streamID: 1, from: &more) == .frame(.data(streamID: 1, payload: ByteBuffer(string: "again"))))
    }

    @Test func dataSYNDeliversItsPayloadAndFIN() {
        var machine = self.machine(.server)
        let action = machine.receive(.data(streamID: 7, flags: [.syn, .fin], payload: ByteBuffer(string: "request")))
        var expected = Machine.StreamEvents()
        expected.data = ByteBuffer(string: "request")
        expected.remoteFinished = true
        #expect(action == .streamOpened(streamID: 7, expected))
        #expect(machine.state(ofStream: 7) == .remoteClosed)
    }

    @Test func synWithRSTOpensNothing() {
        var machine = self.machine(.server)
        #expect(machine.receive(.windowUpdate(streamID: 1, flags: [.syn, .rst])) == .none)
        #expect(machine.numberOfStreams == 0)
        // The id counts as used.
        #expect(machine.receive(.data(streamID: 1, payload: self.bytes(3))) == .none)
    }

    // MARK: Receive window

    @Test func dataWithinTheWindowIsDelivered() throws {
        var machine = self.machine()
        let id = try self.openAndActivate(&machine)
        let action = machine.receive(.data(streamID: id, payload: self.bytes(self.window)))
        guard case .streamEvents(id, let events) = action else {
            Issue.record("expected stream events, got \(action)")
            return
        }
        #expect(events.data?.readableBytes == self.window)
    }

    @Test func dataBeyondTheWindowIsAProtocolError() throws {
        var machine = self.machine()
        let id = try self.openAndActivate(&machine)
        _ = machine.receive(.data(streamID: id, payload: self.bytes(self.window - 10)))
        let action = machine.receive(.data(streamID: id, payload: self.bytes(11)))
        let (error, goAway) = try #require(self.closeError(action))
        #expect(error.code == .yamuxWindowViolation)
        #expect(goAway == .goAway(.protocolError))
        #expect(machine.isClosed)
        #expect(machine.receive(.data(streamID: id, payload: self.bytes(1))) == .none)
    }

    @Test func windowUpdateIsSentOnceHalfTheWindowIsConsumed() throws {
        var machine = self.machine()
        let id = try self.openAndActivate(&machine)
        _ = machine.receive(.data(streamID: id, payload: self.bytes(200_000)))
        #expect(machine.streamConsumed(streamID: id, count: 100_000) == nil)
        #expect(machine.streamConsumed(streamID: id, count: 31_072) == .windowUpdate(streamID: id, delta: 131_072))
        // Less than half a window to grant: wait.
        #expect(machine.streamConsumed(streamID: id, count: 68_928) == nil)
        // The peer now has 62_144 + 131_072 bytes of window; it uses all of it.
        let action = machine.receive(.data(streamID: id, payload: self.bytes(193_216)))
        #expect(self.closeError(action) == nil)
        #expect(machine.streamConsumed(streamID: id, count: 193_216) == .windowUpdate(streamID: id, delta: 262_144))
    }

    @Test func unconsumedDataHoldsBackWindowUpdates() throws {
        var machine = self.machine()
        let id = try self.openAndActivate(&machine)
        _ = machine.receive(.data(streamID: id, payload: self.bytes(self.window)))
        // A reader that does not consume grants nothing: the peer must wait.
        #expect(machine.streamConsumed(streamID: id, count: 0) == nil)
        let action = machine.receive(.data(streamID: id, payload: self.bytes(1)))
        #expect(self.closeError(action)?.0.code == .yamuxWindowViolation)
    }

    @Test func noWindowUpdatesAfterThePeersFIN() throws {
        var machine = self.machine()
        let id = try self.openAndActivate(&machine)
        _ = machine.receive(.data(streamID: id, flags: .fin, payload: self.bytes(self.window)))
        #expect(machine.streamConsumed(streamID: id, count: self.window) == nil)
    }

    // MARK: Send window

    @Test func aFullSendWindowWaitsAndKeepsTheData() throws {
        var machine = self.machine()
        let id = try self.openAndActivate(&machine)
        var buffer = self.bytes(300_000)
        var sent = 0
        var frames = 0
        while case .frame(let frame) = machine.sendData(streamID: id, from: &buffer) {
            #expect(frame.payload.readableBytes <= 64 * 1024)
            sent += frame.payload.readableBytes
            frames += 1
        }
        #expect(sent == self.window)
        #expect(frames == 4)
        #expect(buffer.readableBytes == 300_000 - self.window)
        #expect(machine.sendData(streamID: id, from: &buffer) == .windowExhausted)
        #expect(machine.sendWindow(ofStream: id) == 0)

        var expected = Machine.StreamEvents()
        expected.windowIncreased = true
        #expect(machine.receive(.windowUpdate(streamID: id, delta: 10_000)) == .streamEvents(streamID: id, expected))
        guard case .frame(let frame) = machine.sendData(streamID: id, from: &buffer) else {
            Issue.record("expected a frame after the window update")
            return
        }
        #expect(frame.payload.readableBytes == 10_000)
        #expect(buffer.readableBytes == 300_000 - self.window - 10_000)
    }

    @Test func sendWindowCannotGrowPastTwoToTheThirtyTwo() throws {
        var machine = self.machine()
        let id = try self.openAndActivate(&machine)
        let action = machine.receive(.windowUpdate(streamID: id, delta: UInt32.max))
        #expect(self.closeError(action)?.0.code == .yamuxWindowViolation)
    }

    @Test func idleStreamCannotSendBeforeItsSYN() throws {
        var machine = self.machine()
        let id = try machine.openStream()
        var buffer = self.bytes(10)
        #expect(machine.sendData(streamID: id, from: &buffer) == .streamClosed)
        #expect(buffer.readableBytes == 10)
    }

    // MARK: Closing

    @Test func finBothWaysClosesTheStream() throws {
        var machine = self.machine()
        let id = try self.openAndActivate(&machine)
        _ = machine.receive(.windowUpdate(streamID: id, flags: .ack))
        let (frames, closed) = machine.closeOutput(streamID: id)
        #expect(frames == [.windowUpdate(streamID: id, flags: .fin)])
        #expect(!closed)
        #expect(machine.state(ofStream: id) == .localClosed)
        var buffer = self.bytes(1)
        #expect(machine.sendData(streamID: id, from: &buffer) == .streamClosed)
        #expect(machine.closeOutput(streamID: id).frames.isEmpty)

        // The peer can still send until its own FIN, and its window updates still count.
        var expected = Machine.StreamEvents()
        expected.data = ByteBuffer(string: "last")
        expected.remoteFinished = true
        expected.closed = true
        #expect(machine.receive(.data(streamID: id, flags: .fin, payload: ByteBuffer(string: "last"))) == .streamEvents(streamID: id, expected))
        #expect(machine.state(ofStream: id) == .closed)
        machine.streamReleased(streamID: id)
        #expect(machine.state(ofStream: id) == nil)
        // Late frames for the released stream are ignored.
        #expect(machine.receive(.windowUpdate(streamID: id, delta: 5)) == .none)
    }

    @Test func remoteFINThenLocalFINCloses() {
        var machine = self.machine(.server)
        _ = machine.receive(.windowUpdate(streamID: 1, flags: [.syn, .fin]))
        #expect(machine.state(ofStream: 1) == .remoteClosed)
        let (frames, closed) = machine.closeOutput(streamID: 1)
        // Never acknowledged: the ACK goes first, on its own frame, then the FIN.
        #expect(frames == [.windowUpdate(streamID: 1, flags: .ack), .windowUpdate(streamID: 1, flags: .fin)])
        #expect(closed)
        #expect(machine.state(ofStream: 1) == .closed)
    }

    @Test func dataAfterTheRemoteFINResetsOnlyThatStream() throws {
        var machine = self.machine()
        let id = try self.openAndActivate(&machine)
        let other = try self.openAndActivate(&machine)
        _ = machine.receive(.windowUpdate(streamID: id, flags: .fin))
        let action = machine.receive(.data(streamID: id, payload: self.bytes(4)))
        guard case .resetStream(id, let error, let rst) = action else {
            Issue.record("expected a stream reset, got \(action)")
            return
        }
        #expect(error.code == .yamuxStreamProtocolError)
        #expect(rst == .windowUpdate(streamID: id, flags: .rst))
        #expect(machine.state(ofStream: id) == .reset)
        #expect(!machine.isClosed)
        var buffer = self.bytes(3)
        guard case .frame = machine.sendData(streamID: other, from: &buffer) else {
            Issue.record("the other stream must carry on")
            return
        }
    }

    @Test func rstFromThePeerResetsTheStream() throws {
        var machine = self.machine()
        let id = try self.openAndActivate(&machine)
        var expected = Machine.StreamEvents()
        expected.reset = true
        #expect(machine.receive(.windowUpdate(streamID: id, flags: .rst)) == .streamEvents(streamID: id, expected))
        #expect(machine.state(ofStream: id) == .reset)
        var buffer = self.bytes(1)
        #expect(machine.sendData(streamID: id, from: &buffer) == .streamClosed)
        #expect(machine.resetStream(streamID: id) == nil)
    }

    @Test func localResetSendsRSTAndIgnoresLateFrames() throws {
        var machine = self.machine()
        let id = try self.openAndActivate(&machine)
        #expect(machine.resetStream(streamID: id) == .windowUpdate(streamID: id, flags: .rst))
        #expect(machine.resetStream(streamID: id) == nil)
        #expect(machine.receive(.data(streamID: id, payload: self.bytes(self.window))) == .none)
        #expect(machine.receive(.data(streamID: id, payload: self.bytes(self.window))) == .none)
    }

    @Test func resettingAnIdleStreamSendsNothing() throws {
        var machine = self.machine()
        let id = try machine.openStream()
        #expect(machine.resetStream(streamID: id) == nil)
        #expect(machine.streamActivated(streamID: id) == nil)
    }

    // MARK: Ping and Go Away

    @Test func pingRequestIsAnsweredWithTheSameOpaqueValue() {
        var machine = self.machine()
        #expect(machine.receive(.ping(flags: .syn, opaque: 0x1234_5678)) == .write(.ping(flags: .ack, opaque: 0x1234_5678)))
    }

    @Test func pingAnswerReportsWhenItWasSent() {
        var machine = self.machine()
        let sentAt = NIODeadline.uptimeNanoseconds(1_000)
        let ping = machine.sendPing(now: sentAt)
        #expect(ping == .ping(flags: .syn, opaque: 0))
        #expect(machine.sendPing(now: sentAt) == nil)
        #expect(machine.receive(.ping(flags: .ack, opaque: 99)) == .none)
        #expect(machine.receive(.ping(flags: .ack, opaque: 0)) == .pingAnswered(sentAt: sentAt))
        #expect(machine.pingTimedOut(opaque: 0) == nil)
        #expect(machine.sendPing(now: sentAt) == .ping(flags: .syn, opaque: 1))
    }

    @Test func keepAlivePingsOnlyWhenIdleAndTimesOut() {
        var machine = self.machine()
        let now = NIODeadline.uptimeNanoseconds(0)
        _ = machine.receive(.ping(flags: .syn, opaque: 1))
        #expect(machine.keepAliveTimerFired(now: now) == nil)
        let ping = machine.keepAliveTimerFired(now: now)
        #expect(ping == .ping(flags: .syn, opaque: 0))
        #expect(machine.pingTimedOut(opaque: 0)?.code == .yamuxPingTimeout)
        #expect(machine.isClosed)
    }

    @Test func normalGoAwayStopsNewStreamsButNotExistingOnes() throws {
        var machine = self.machine()
        let id = try self.openAndActivate(&machine)
        #expect(machine.receive(.goAway(.normal)) == .goAwayReceived(.normal))
        #expect(throws: TransportError(.yamuxGoAwayReceived, "")) { try machine.openStream() }
        var buffer = self.bytes(5)
        guard case .frame = machine.sendData(streamID: id, from: &buffer) else {
            Issue.record("existing streams carry on after Go Away (normal)")
            return
        }
    }

    @Test func errorGoAwayEndsTheSessionWithoutAnswering() throws {
        var machine = self.machine()
        let action = machine.receive(.goAway(.protocolError))
        let (error, goAway) = try #require(self.closeError(action))
        #expect(error.code == .yamuxGoAwayReceived)
        #expect(goAway == nil)
        #expect(throws: TransportError(.yamuxSessionClosed, "")) { try machine.openStream() }
    }

    @Test func localGoAwayRefusesNewInboundStreams() {
        var machine = self.machine(.server)
        #expect(machine.goAway(.normal) == .goAway(.normal))
        #expect(machine.goAway(.normal) == nil)
        #expect(machine.receive(.windowUpdate(streamID: 1, flags: .syn)) == .write(.windowUpdate(streamID: 1, flags: .rst)))
        #expect(throws: TransportError(.yamuxSessionClosed, "")) { try machine.openStream() }
    }

    // MARK: Limits

    @Test func streamsBeyondTheMaximumAreRefusedWithRST() throws {
        var machine = self.machine(.server) { $0.maximumStreams = 2 }
        _ = machine.receive(.windowUpdate(streamID: 1, flags: .syn))
        _ = try machine.openStream()
        #expect(machine.receive(.windowUpdate(streamID: 3, flags: .syn)) == .write(.windowUpdate(streamID: 3, flags: .rst)))
        #expect(throws: TransportError(.yamuxTooManyStreams, "")) { try machine.openStream() }
        // A frame for the refused stream is a late frame, not an error.
        #expect(machine.receive(.data(streamID: 3, payload: self.bytes(10))) == .none)
        machine.streamReleased(streamID: 1)
        #expect(machine.receive(.windowUpdate(streamID: 5, flags: .syn)) == .streamOpened(streamID: 5, .init()))
    }

    @Test func inboundACKBacklogIsLimited() {
        var machine = self.machine(.server) { $0.maximumUnacknowledgedInboundStreams = 2 }
        #expect(machine.receive(.windowUpdate(streamID: 1, flags: .syn)) == .streamOpened(streamID: 1, .init()))
        #expect(machine.receive(.windowUpdate(streamID: 3, flags: .syn)) == .streamOpened(streamID: 3, .init()))
        #expect(machine.receive(.windowUpdate(streamID: 5, flags: .syn)) == .write(.windowUpdate(streamID: 5, flags: .rst)))
        // Acknowledging a stream frees a backlog slot.
        var buffer = self.bytes(1)
        _ = machine.sendData(streamID: 1, from: &buffer)
        #expect(machine.receive(.windowUpdate(streamID: 7, flags: .syn)) == .streamOpened(streamID: 7, .init()))
        // So does resetting one.
        _ = machine.resetStream(streamID: 3)
        #expect(machine.receive(.windowUpdate(streamID: 9, flags: .syn)) == .streamOpened(streamID: 9, .init()))
    }

    @Test func outboundACKBacklogIsLimited() throws {
        var machine = self.machine { $0.maximumUnacknowledgedOutboundStreams = 2 }
        let first = try self.openAndActivate(&machine)
        _ = try self.openAndActivate(&machine)
        #expect(throws: TransportError(.yamuxStreamBacklogFull, "")) { try machine.openStream() }
        _ = machine.receive(.windowUpdate(streamID: first, flags: .ack))
        #expect(try machine.openStream() == 5)
    }

    // MARK: Stream ids

    @Test func synWithThisSidesParityIsAProtocolError() throws {
        var machine = self.machine(.client)
        let action = machine.receive(.windowUpdate(streamID: 3, flags: .syn))
        let (error, goAway) = try #require(self.closeError(action))
        #expect(error.code == .yamuxInvalidStreamID)
        #expect(goAway == .goAway(.protocolError))
    }

    @Test func synReusingAnIdIsAProtocolError() {
        var machine = self.machine(.server)
        _ = machine.receive(.windowUpdate(streamID: 5, flags: .syn))
        #expect(self.closeError(machine.receive(.windowUpdate(streamID: 5, flags: .syn)))?.0.code == .yamuxInvalidStreamID)

        var other = self.machine(.server)
        _ = other.receive(.windowUpdate(streamID: 5, flags: .syn))
        #expect(self.closeError(other.receive(.windowUpdate(streamID: 3, flags: .syn)))?.0.code == .yamuxInvalidStreamID)
    }

    @Test func streamFramesOnStreamZeroAreAProtocolError() {
        var machine = self.machine()
        #expect(self.closeError(machine.receive(.data(streamID: 0, payload: self.bytes(1))))?.0.code == .yamuxInvalidStreamID)
    }

    @Test func dataOnAStreamNeverOpenedIsAProtocolError() throws {
        var server = self.machine(.server)
        #expect(self.closeError(server.receive(.data(streamID: 9, payload: self.bytes(1))))?.0.code == .yamuxUnknownStream)

        // An id of this side's parity that was never allocated, or allocated but not yet announced.
        var client = self.machine(.client)
        let idle = try client.openStream()
        #expect(self.closeError(client.receive(.windowUpdate(streamID: idle, flags: .ack)))?.0.code == .yamuxUnknownStream)
        var other = self.machine(.client)
        #expect(self.closeError(other.receive(.windowUpdate(streamID: 11, delta: 1)))?.0.code == .yamuxUnknownStream)
    }
}

extension YamuxSessionStateMachine {
    /// The window update of a consumption at the current time; the tests of plain flow control
    /// do not measure a round trip, so the window never grows there.
    fileprivate mutating func streamConsumed(streamID: UInt32, count: Int) -> YamuxFrame? {
        self.streamConsumed(streamID: streamID, count: count, now: .now()).windowUpdate
    }
}

/// Receive window auto-tuning (YamuxConfiguration.maximumStreamReceiveWindow).
@Suite struct YamuxWindowAutoTuningTests {
    typealias Machine = YamuxSessionStateMachine
    let window = Int(YamuxConfiguration.initialStreamWindow)
    let start = NIODeadline.uptimeNanoseconds(1_000_000_000)

    private func machine(configure: (inout YamuxConfiguration) -> Void = { _ in }) -> Machine {
        var configuration = YamuxConfiguration()
        configure(&configuration)
        return Machine(role: .client, configuration: configuration)
    }

    private func openAndActivate(_ machine: inout Machine) throws -> UInt32 {
        let id = try machine.openStream()
        _ = machine.streamActivated(streamID: id)
        return id
    }

    @Test func theFirstGrantWithoutARoundTripSendsOnePing() throws {
        var machine = self.machine()
        let id = try self.openAndActivate(&machine)
        _ = machine.receive(.data(streamID: id, payload: ByteBuffer(repeating: 1, count: self.window)))
        let first = machine.streamConsumed(streamID: id, count: self.window, now: self.start)
        #expect(first.windowUpdate == .windowUpdate(streamID: id, delta: UInt32(self.window)))
        #expect(first.ping == .ping(flags: .syn, opaque: 0))
        // The Ping is outstanding: no second one, and no growth without a round trip.
        _ = machine.receive(.data(streamID: id, payload: ByteBuffer(repeating: 1, count: self.window)))
        let second = machine.streamConsumed(streamID: id, count: self.window, now: self.start + .microseconds(10))
        #expect(second.ping == nil)
        #expect(second.windowUpdate == .windowUpdate(streamID: id, delta: UInt32(self.window)))
        #expect(machine.receiveWindow(ofStream: id) == self.window)
    }

    @Test func grantsWithinFourRoundTripsDoubleTheWindowUpToTheMaximum() throws {
        var machine = self.machine { $0.maximumStreamReceiveWindow = 1024 * 1024 }
        let id = try self.openAndActivate(&machine)
        machine.roundTripMeasured(.milliseconds(10))
        var now = self.start
        var expectedWindow = self.window
        var deltas: [UInt32] = []
        for round in 0..<5 {
            // The peer sends all the credit it has; the reader takes it at once.
            _ = machine.receive(.data(streamID: id, payload: ByteBuffer(repeating: 1, count: round == 0 ? self.window : expectedWindow)))
            let frames = machine.streamConsumed(streamID: id, count: Int.max / 2, now: now)
            if round > 0 { expectedWindow = min(expectedWindow * 2, 1024 * 1024) }
            #expect(frames.ping == nil)
            #expect(machine.receiveWindow(ofStream: id) == expectedWindow)
            deltas.append(frames.windowUpdate?.length ?? 0)
            now = now + .milliseconds(20)  // two round trips later
        }
        // The first grant starts the epoch; then 512 KiB, 1 MiB, and the maximum holds.
        #expect(deltas == [262_144, 524_288, 1_048_576, 1_048_576, 1_048_576])
        #expect(machine.grownWindowBytes == 1024 * 1024 - self.window)
        // The peer may now send a whole grown window in one frame.
        let action = machine.receive(.data(streamID: id, payload: ByteBuffer(repeating: 1, count: 1024 * 1024)))
        if case .closeSession(let error, _) = action { Issue.record("a frame within the grown window was refused: \(error)") }
        #expect(machine.maximumInboundDataLength == 1024 * 1024)
    }

    @Test func aReaderThatGrantsSlowerThanFourRoundTripsKeepsItsWindow() throws {
        var machine = self.machine()
        let id = try self.openAndActivate(&machine)
        machine.roundTripMeasured(.milliseconds(10))
        var now = self.start
        for _ in 0..<4 {
            _ = machine.receive(.data(streamID: id, payload: ByteBuffer(repeating: 1, count: self.window)))
            let frames = machine.streamConsumed(streamID: id, count: self.window, now: now)
            #expect(frames.windowUpdate == .windowUpdate(streamID: id, delta: UInt32(self.window)))
            now = now + .milliseconds(41)
        }
        #expect(machine.receiveWindow(ofStream: id) == self.window)
        #expect(machine.grownWindowBytes == 0)
    }

    @Test func growthStaysWithinTheSessionBudgetAndReturnsOnRelease() throws {
        var machine = self.machine {
            $0.maximumStreamReceiveWindow = 1024 * 1024
            $0.receiveWindowGrowthLimit = 1024 * 1024
        }
        machine.roundTripMeasured(.milliseconds(10))
        let a = try self.openAndActivate(&machine)
        let b = try self.openAndActivate(&machine)
        var now = self.start
        /// The peer fills the stream's window; the reader takes it all within one round trip.
        func burst(_ id: UInt32) {
            _ = machine.receive(.data(streamID: id, payload: ByteBuffer(repeating: 1, count: machine.receiveWindow(ofStream: id)!)))
            _ = machine.streamConsumed(streamID: id, count: Int.max / 2, now: now)
            now = now + .milliseconds(1)
        }
        for _ in 0..<3 { burst(a) }  // 256 KiB -> 512 KiB -> 1 MiB: 768 KiB of the budget
        #expect(machine.receiveWindow(ofStream: a) == 1024 * 1024)
        for _ in 0..<3 { burst(b) }  // 256 KiB -> 512 KiB; the budget is spent
        #expect(machine.receiveWindow(ofStream: b) == 512 * 1024)
        #expect(machine.grownWindowBytes == 1024 * 1024)

        _ = machine.resetStream(streamID: a)
        machine.streamReleased(streamID: a)
        #expect(machine.grownWindowBytes == 256 * 1024)
        burst(b)
        #expect(machine.receiveWindow(ofStream: b) == 1024 * 1024)
        #expect(machine.grownWindowBytes == 768 * 1024)
    }

    @Test func growthIsOffWhenTheMaximumIsTheStartingWindow() throws {
        var machine = self.machine { $0.maximumStreamReceiveWindow = YamuxConfiguration.initialStreamWindow }
        let id = try self.openAndActivate(&machine)
        machine.roundTripMeasured(.milliseconds(10))
        for step in 0..<3 {
            _ = machine.receive(.data(streamID: id, payload: ByteBuffer(repeating: 1, count: self.window)))
            _ = machine.streamConsumed(streamID: id, count: self.window, now: self.start + .microseconds(Int64(step)))
        }
        #expect(machine.receiveWindow(ofStream: id) == self.window)
        #expect(machine.maximumInboundDataLength == UInt32(self.window))
    }
}
