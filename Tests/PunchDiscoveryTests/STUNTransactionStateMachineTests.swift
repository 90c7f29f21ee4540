import NIOCore
import PunchDiscovery
import PunchWire
import Testing

@Suite struct STUNTransactionStateMachineTests {
    let server = try! IPEndpoint("203.0.113.10:3478")
    let start = NIODeadline.uptimeNanoseconds(1_000_000_000)

    func response(_ id: STUNTransactionID, mapped: String = "198.51.100.1:4000") -> STUNMessage {
        STUNMessage(type: .bindingSuccessResponse, transactionID: id, attributes: [.xorMappedAddress(try! IPEndpoint(mapped))])
    }

    /// Drives the timer until the transaction fails; returns the send times in ms after the start.
    func schedule(_ configuration: STUNClientConfiguration) -> (sends: [Int64], timeout: Int64?) {
        var machine = STUNTransactionStateMachine(configuration: configuration)
        let id = STUNTransactionID.random()
        guard case .send = machine.start(id: id, request: [1], destination: server, expectedSource: server, now: start) else { return ([], nil) }
        var sends: [Int64] = [0]
        while let deadline = machine.nextDeadline {
            let ms = (deadline - start).nanoseconds / 1_000_000
            for action in machine.timerFired(now: deadline) {
                switch action {
                case .retransmit: sends.append(ms)
                case .timeOut: return (sends, ms)
                }
            }
        }
        return (sends, nil)
    }

    @Test func defaultRetransmissionScheduleIsRFC8489Example() {
        // RFC 8489 §6.2.1: requests at 0, 500, 1500, 3500, 7500, 15500, 31500 ms; failure at 39500 ms.
        let (sends, timeout) = schedule(STUNClientConfiguration())
        #expect(sends == [0, 500, 1500, 3500, 7500, 15500, 31500])
        #expect(timeout == 39500)
        #expect(STUNClientConfiguration().transactionTimeout == .milliseconds(39500))
    }

    @Test func configuredRetransmissionValuesAreHonoured() {
        let configuration = STUNClientConfiguration(retransmissionTimeout: .milliseconds(100), maximumRequests: 3, finalWaitMultiplier: 2)
        let (sends, timeout) = schedule(configuration)
        #expect(sends == [0, 100, 300])
        #expect(timeout == 500)
        #expect(configuration.transactionTimeout == .milliseconds(500))
        let single = schedule(STUNClientConfiguration(retransmissionTimeout: .milliseconds(100), maximumRequests: 1, finalWaitMultiplier: 4))
        #expect(single.sends == [0] && single.timeout == 400)
    }

    @Test func aLateTimerDoesNotStretchTheSchedule() {
        var machine = STUNTransactionStateMachine(configuration: STUNClientConfiguration())
        _ = machine.start(id: .random(), request: [1], destination: server, expectedSource: server, now: start)
        _ = machine.timerFired(now: start + .milliseconds(700))  // 200 ms late
        #expect(machine.nextDeadline == start + .milliseconds(1500))
        #expect(machine.timerFired(now: start + .milliseconds(1000)).isEmpty)
    }

    @Test func responseWithMatchingIDAndSourceCompletes() {
        var machine = STUNTransactionStateMachine(configuration: STUNClientConfiguration())
        let id = STUNTransactionID.random()
        guard case .send(let bytes, let to) = machine.start(id: id, request: [7, 7], destination: server, expectedSource: server, now: start) else {
            Issue.record("not sent"); return
        }
        #expect(bytes == [7, 7] && to == server)
        guard case .complete(let completed, let message, let source, let rtt) = machine.receive(response(id), from: server, now: start + .milliseconds(20)) else {
            Issue.record("not completed"); return
        }
        #expect(completed == id && message.transactionID == id && source == server && rtt == .milliseconds(20))
        #expect(machine.outstandingCount == 0 && machine.nextDeadline == nil)
        #expect(machine.statistics.completed == 1)
        // A duplicate (a response to a retransmission) is now unknown.
        guard case .drop = machine.receive(response(id), from: server, now: start) else { Issue.record("duplicate accepted"); return }
        #expect(machine.statistics.droppedUnknownTransaction == 1)
    }

    @Test func responseFromAnotherSourceIsDroppedAndCounted() throws {
        var machine = STUNTransactionStateMachine(configuration: STUNClientConfiguration())
        let id = STUNTransactionID.random()
        _ = machine.start(id: id, request: [1], destination: server, expectedSource: server, now: start)
        for spoofer in ["203.0.113.66:3478", "203.0.113.10:3479"] {
            guard case .drop = machine.receive(response(id), from: try IPEndpoint(spoofer), now: start) else {
                Issue.record("accepted a response from \(spoofer)"); return
            }
        }
        #expect(machine.statistics.droppedWrongSource == 2)
        #expect(machine.outstandingCount == 1)
        guard case .complete = machine.receive(response(id), from: server, now: start) else { Issue.record("real response dropped"); return }
    }

    @Test func responseWithUnknownIDIsDroppedButUnknownRequestsArePassedOn() {
        var machine = STUNTransactionStateMachine(configuration: STUNClientConfiguration())
        _ = machine.start(id: .random(), request: [1], destination: server, expectedSource: server, now: start)
        guard case .drop = machine.receive(response(.random()), from: server, now: start) else { Issue.record("unknown ID accepted"); return }
        #expect(machine.statistics.droppedUnknownTransaction == 1)
        guard case .passOn = machine.receive(STUNMessage(type: .bindingRequest), from: server, now: start) else { Issue.record("request not passed on"); return }
        guard case .passOn = machine.receive(STUNMessage(type: .bindingIndication), from: server, now: start) else { Issue.record("indication not passed on"); return }
        #expect(machine.statistics.passedOn == 2)
    }

    @Test func changeRequestTransactionExpectsTheChangedSource() throws {
        var machine = STUNTransactionStateMachine(configuration: STUNClientConfiguration())
        let id = STUNTransactionID.random()
        let other = try IPEndpoint("203.0.113.11:3479")
        _ = machine.start(id: id, request: [1], destination: server, expectedSource: other, now: start)
        guard case .drop = machine.receive(response(id), from: server, now: start) else { Issue.record("answer from the unchanged address accepted"); return }
        guard case .complete(_, _, let source, _) = machine.receive(response(id), from: other, now: start) else { Issue.record("changed answer dropped"); return }
        #expect(source == other)
    }

    @Test func echoTransactionCompletesWithTheRequestFromAnySource() throws {
        var machine = STUNTransactionStateMachine(configuration: STUNClientConfiguration())
        let request = STUNMessage(type: .bindingRequest)
        let mapped = try IPEndpoint("198.51.100.1:4000")
        _ = machine.start(id: request.transactionID, request: [1], destination: mapped, expectedSource: nil, expectation: .echo, now: start)
        guard case .drop = machine.receive(response(request.transactionID), from: mapped, now: start) else { Issue.record("a response completed an echo"); return }
        #expect(machine.statistics.droppedUnexpectedClass == 1)
        guard case .complete = machine.receive(request, from: try IPEndpoint("10.0.1.1:5555"), now: start) else { Issue.record("echo not matched"); return }
    }

    @Test func aRequestDoesNotCompleteAResponseTransaction() {
        var machine = STUNTransactionStateMachine(configuration: STUNClientConfiguration())
        let request = STUNMessage(type: .bindingRequest)
        _ = machine.start(id: request.transactionID, request: [1], destination: server, expectedSource: server, now: start)
        guard case .drop = machine.receive(request, from: server, now: start) else { Issue.record("a request completed a response transaction"); return }
        #expect(machine.statistics.droppedUnexpectedClass == 1 && machine.outstandingCount == 1)
    }

    @Test func outstandingTransactionsAreBounded() {
        var configuration = STUNClientConfiguration()
        configuration.maximumOutstandingTransactions = 3
        var machine = STUNTransactionStateMachine(configuration: configuration)
        for _ in 0..<3 {
            guard case .send = machine.start(id: .random(), request: [1], destination: server, expectedSource: server, now: start) else {
                Issue.record("refused below the limit"); return
            }
        }
        guard case .refuse(let error) = machine.start(id: .random(), request: [1], destination: server, expectedSource: server, now: start) else {
            Issue.record("accepted above the limit"); return
        }
        #expect(error.code == .stunTooManyTransactions)
        #expect(machine.statistics.refused == 1 && machine.outstandingCount == 3)
    }

    @Test func cancelForgetsATransaction() {
        var machine = STUNTransactionStateMachine(configuration: STUNClientConfiguration())
        let id = STUNTransactionID.random()
        _ = machine.start(id: id, request: [1], destination: server, expectedSource: server, now: start)
        let first = machine.cancel(id)
        let second = machine.cancel(id)
        #expect(first && !second)
        #expect(machine.nextDeadline == nil)
        guard case .drop = machine.receive(response(id), from: server, now: start) else { Issue.record("cancelled transaction completed"); return }
    }
}
