import NIOConcurrencyHelpers
import NIOCore

/// Joins two stream channels into one circuit: what one reads, the other writes, with
/// backpressure (a side stops reading while the other cannot write), a byte limit per direction
/// and a time limit (circuit-v2.md, "Limit"). Half-closes pass through; a limit, an error or a
/// full close on one side closes both.
///
/// The two channels may live on different event loops: each handler touches only its own
/// channel's state on its own loop and talks to its partner by hopping.
final class CircuitGlue: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer

    /// What one circuit carried, reported once when it ends.
    struct Outcome: Sendable {
        var bytesAToB: UInt64
        var bytesBToA: UInt64
        var reason: String
    }

    private let byteLimit: UInt64?
    private let shared: Shared
    private let isA: Bool
    private var partner: NIOLoopBound<CircuitGlue>?
    private var partnerChannel: Channel?
    private var context: ChannelHandlerContext?
    private var forwarded: UInt64 = 0
    private var readPending = false

    /// State both sides share: the outcome, completed once.
    final class Shared: Sendable {
        let outcome = NIOLockedValueBox(Outcome(bytesAToB: 0, bytesBToA: 0, reason: ""))
        let ended = NIOLockedValueBox(false)
        let done: EventLoopPromise<Outcome>

        init(eventLoop: EventLoop) { done = eventLoop.makePromise() }

        func add(_ count: Int, fromA: Bool) {
            outcome.withLockedValue {
                if fromA { $0.bytesAToB += UInt64(count) } else { $0.bytesBToA += UInt64(count) }
            }
        }

        func end(_ reason: String) {
            let first = ended.withLockedValue { ended -> Bool in
                defer { ended = true }
                return !ended
            }
            guard first else { return }
            let result = outcome.withLockedValue { $0.reason = reason; return $0 }
            done.succeed(result)
        }
    }

    private init(isA: Bool, byteLimit: UInt64?, shared: Shared) {
        self.isA = isA
        self.byteLimit = byteLimit
        self.shared = shared
    }

    /// Joins `a` and `b`. Each may still hold its ``RelayMessageReader``: the reader is handed off
    /// once the glue is in place, so bytes it held after the relay messages are forwarded first.
    ///
    /// - Returns: a future of what the circuit carried, completed when it ends.
    static func join(
        _ a: Channel, _ b: Channel, readers: (NIOLoopBound<RelayMessageReader>?, NIOLoopBound<RelayMessageReader>?),
        byteLimit: UInt64?, duration: TimeAmount?
    ) -> EventLoopFuture<Outcome> {
        let shared = Shared(eventLoop: a.eventLoop)
        let installA = a.eventLoop.submit {
            let glue = CircuitGlue(isA: true, byteLimit: byteLimit, shared: shared)
            glue.partnerChannel = b
            try a.pipeline.syncOperations.addHandler(glue)
            try a.syncOptions?.setOption(ChannelOptions.autoRead, value: false)
            // What arrived behind the relay messages goes through the glue first.
            readers.0?.value.handOff()
            return NIOLoopBound(glue, eventLoop: a.eventLoop)
        }
        let installB = b.eventLoop.submit {
            let glue = CircuitGlue(isA: false, byteLimit: byteLimit, shared: shared)
            glue.partnerChannel = a
            try b.pipeline.syncOperations.addHandler(glue)
            try b.syncOptions?.setOption(ChannelOptions.autoRead, value: false)
            readers.1?.value.handOff()
            return NIOLoopBound(glue, eventLoop: b.eventLoop)
        }
        let joined = installA.and(installB).flatMap { boundA, boundB in
            a.eventLoop.submit {
                boundA.value.partner = boundB
            }.and(b.eventLoop.submit {
                boundB.value.partner = boundA
            })
        }
        joined.whenSuccess { _ in
            a.read()
            b.read()
        }
        joined.whenFailure { error in
            shared.end("the circuit could not be joined: \(error)")
            a.close(promise: nil)
            b.close(promise: nil)
        }
        if let duration {
            let timer = a.eventLoop.scheduleTask(in: duration) {
                shared.end("the circuit reached its duration limit (\(duration))")
                a.close(promise: nil)
                b.close(promise: nil)
            }
            shared.done.futureResult.whenComplete { _ in timer.cancel() }
        }
        a.closeFuture.and(b.closeFuture).whenComplete { _ in shared.end("both sides closed") }
        return shared.done.futureResult
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var buffer = unwrapInboundIn(data)
        guard let partnerChannel else { return }
        if let byteLimit {
            let allowed = byteLimit - forwarded
            if UInt64(buffer.readableBytes) > allowed {
                // Up to the limit and no further (circuit-v2.md: "maximum number of bytes allowed
                // to be transmitted in each direction").
                let last = buffer.readSlice(length: Int(allowed))!
                forwarded += allowed
                shared.add(last.readableBytes, fromA: isA)
                let reason = "the circuit reached its data limit (\(byteLimit) bytes in one direction)"
                let shared = self.shared
                partnerChannel.writeAndFlush(last).whenComplete { _ in
                    shared.end(reason)
                    partnerChannel.close(promise: nil)
                }
                shared.end(reason)
                context.close(promise: nil)
                return
            }
        }
        forwarded += UInt64(buffer.readableBytes)
        shared.add(buffer.readableBytes, fromA: isA)
        partnerChannel.write(buffer, promise: nil)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        guard let partnerChannel else { return }
        partnerChannel.flush()
        if partnerChannel.isWritable {
            context.read()
        } else {
            readPending = true
        }
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        // This side can take writes again: let the partner read.
        if context.channel.isWritable, let partner {
            partner.eventLoop.execute { partner.value.resumeReading() }
        }
        context.fireChannelWritabilityChanged()
    }

    private func resumeReading() {
        guard readPending, let context else { return }
        readPending = false
        context.read()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case ChannelEvent.inputClosed = event, let partnerChannel {
            // The peer half-closed: pass the FIN on.
            partnerChannel.close(mode: .output, promise: nil)
        }
        context.fireUserInboundEventTriggered(event)
    }

    func channelInactive(context: ChannelHandlerContext) {
        partnerChannel?.close(promise: nil)
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        shared.end("\(error)")
        context.close(promise: nil)
    }
}
