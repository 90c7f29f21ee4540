import Logging
import NIOCore
import PunchWire

/// The result of one completed transaction, as the handler hands it to ``STUNClient``.
struct STUNTransactionOutcome: Sendable {
    var message: STUNMessage
    var source: IPEndpoint
    var roundTrip: TimeAmount
}

/// The one channel handler of the STUN client: it demultiplexes the socket and runs the
/// transactions of a ``STUNTransactionStateMachine``.
///
/// Datagrams that do not start like STUN (RFC 7983 §7: first byte 0-3 and the magic cookie)
/// go on down the pipeline untouched, as do STUN requests and indications that no transaction
/// waits for, so the socket can be shared with hole punching and other protocols. STUN
/// responses are consumed here: matched, or dropped and counted.
final class STUNClientHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = AddressedEnvelope<ByteBuffer>
    typealias InboundOut = AddressedEnvelope<ByteBuffer>
    typealias OutboundOut = AddressedEnvelope<ByteBuffer>

    private var machine: STUNTransactionStateMachine
    private var promises: [STUNTransactionID: EventLoopPromise<STUNTransactionOutcome>] = [:]
    private var context: ChannelHandlerContext?
    private var timer: Scheduled<Void>?
    private var timerDeadline: NIODeadline?
    private let maximumMessageLength: Int
    private let logger: Logger

    init(configuration: STUNClientConfiguration, logger: Logger) {
        self.machine = STUNTransactionStateMachine(configuration: configuration)
        self.maximumMessageLength = configuration.maximumMessageLength
        self.logger = logger
    }

    var statistics: STUNTransactionStateMachine.Statistics { machine.statistics }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        failAll(DiscoveryError(.stunClientClosed, "the STUN client was removed from its channel"))
        self.context = nil
    }

    func channelInactive(context: ChannelHandlerContext) {
        failAll(DiscoveryError(.stunClientClosed, "the STUN client's socket closed"))
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let envelope = unwrapInboundIn(data)
        let bytes = envelope.data.readableBytesView
        guard STUNMessage.looksLikeSTUN(bytes) else {
            machine.receivedNonSTUN()
            context.fireChannelRead(data)
            return
        }
        guard let source = IPEndpoint(envelope.remoteAddress) else { return }
        let message: STUNMessage
        do {
            message = try STUNMessage.decode(datagram: Array(bytes), maximumLength: maximumMessageLength)
        } catch {
            machine.receivedMalformed()
            logger.debug("dropped a malformed STUN datagram", metadata: ["source": "\(source)", "error": "\(error)"])
            return
        }
        switch machine.receive(message, from: source, now: context.eventLoop.now) {
        case .complete(let id, let message, let source, let roundTrip):
            promises.removeValue(forKey: id)?.succeed(STUNTransactionOutcome(message: message, source: source, roundTrip: roundTrip))
            rescheduleTimer()
        case .passOn:
            context.fireChannelRead(data)
        case .drop:
            logger.trace("dropped a STUN message", metadata: ["source": "\(source)", "transaction": "\(message.transactionID)"])
        }
    }

    /// Starts a transaction; `promise` completes with the matching message or fails.
    func start(
        id: STUNTransactionID, request: [UInt8], destination: IPEndpoint, expectedSource: IPEndpoint?,
        expectation: STUNTransactionStateMachine.Expectation, promise: EventLoopPromise<STUNTransactionOutcome>
    ) {
        guard let context else {
            promise.fail(DiscoveryError(.stunClientClosed, "the STUN client's socket is closed"))
            return
        }
        switch machine.start(
            id: id, request: request, destination: destination, expectedSource: expectedSource, expectation: expectation,
            now: context.eventLoop.now)
        {
        case .refuse(let error):
            promise.fail(error)
        case .send(let bytes, let to):
            promises[id] = promise
            send(bytes, to: to, context: context, failing: id)
            rescheduleTimer()
        }
    }

    /// Gives up a transaction (its caller was cancelled).
    func cancel(_ id: STUNTransactionID) {
        if machine.cancel(id) {
            promises.removeValue(forKey: id)?.fail(CancellationError())
            rescheduleTimer()
        }
    }

    private func send(_ bytes: [UInt8], to destination: IPEndpoint, context: ChannelHandlerContext, failing id: STUNTransactionID?) {
        // NIO closes a datagram channel on a write error it deems unrecoverable, such as sending
        // to an address of the other family: refuse that here, so a shared socket stays open.
        if let local = context.channel.localAddress, (local.protocol == .inet) != destination.address.isIPv4 {
            fail(id, DiscoveryError(
                .stunAddressFamilyMismatch,
                "cannot send to \(destination) from the IPv\(local.protocol == .inet ? 4 : 6) socket \(local); use a socket of that family"))
            return
        }
        let address: SocketAddress
        do {
            address = try destination.socketAddress()
        } catch {
            fail(id, DiscoveryError(.stunAddressFamilyMismatch, "cannot send to \(destination): \(error)"))
            return
        }
        let envelope = AddressedEnvelope(remoteAddress: address, data: context.channel.allocator.buffer(bytes: bytes))
        let promise = context.eventLoop.makePromise(of: Void.self)
        promise.futureResult.assumeIsolated().whenFailure { [weak self] error in
            // A send that fails at once (no route, wrong family) fails the transaction; later
            // losses are what retransmission is for.
            guard let self, let id else { return }
            self.fail(id, DiscoveryError(.stunSendFailed, "cannot send a STUN request to \(destination): \(error)"))
        }
        context.writeAndFlush(wrapOutboundOut(envelope), promise: promise)
    }

    private func fail(_ id: STUNTransactionID?, _ error: DiscoveryError) {
        guard let id, machine.cancel(id) else { return }
        promises.removeValue(forKey: id)?.fail(error)
        rescheduleTimer()
    }

    private func timerFired() {
        guard let context else { return }
        timer = nil
        timerDeadline = nil
        for action in machine.timerFired(now: context.eventLoop.now) {
            switch action {
            case .retransmit(let bytes, let to):
                send(bytes, to: to, context: context, failing: nil)
            case .timeOut(let id):
                promises.removeValue(forKey: id)?.fail(DiscoveryError(
                    .stunTimeout, "no STUN response within the retransmission schedule (RFC 8489 §6.2.1); the server may be down, or UDP blocked"))
            }
        }
        rescheduleTimer()
    }

    /// Keeps one timer, set for the earliest deadline of the table.
    private func rescheduleTimer() {
        guard let context else { return }
        let next = machine.nextDeadline
        guard next != timerDeadline else { return }
        timer?.cancel()
        timer = nil
        timerDeadline = next
        if let next {
            timer = context.eventLoop.assumeIsolated().scheduleTask(deadline: next) { [weak self] in
                self?.timerFired()
            }
        }
    }

    private func failAll(_ error: DiscoveryError) {
        timer?.cancel()
        timer = nil
        timerDeadline = nil
        _ = machine.cancelAll()
        let pending = promises
        promises.removeAll()
        for promise in pending.values { promise.fail(error) }
    }
}
