import NIOCore
import PunchWire
import SwiftProtobuf

/// Reads the varint-delimited protobuf messages that open a relay stream (Circuit Relay v2 hop and
/// stop), then hands the stream on unchanged: after ``handOff(context:)`` the bytes that followed
/// the last message reach the next handler, so a circuit loses nothing of what the peer sent
/// early (such as the start of its Noise handshake).
///
/// Everything happens on the stream's event loop. At most ``maximumBufferedBytes`` are held.
final class RelayMessageReader: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    /// Bytes held before the stream is handed on: a message and the peer's first circuit bytes.
    static let maximumBufferedBytes = 64 * 1024

    private let maximumMessageLength: Int
    private var buffer = ByteBuffer()
    private var waiter: EventLoopPromise<ByteBuffer>?
    private var failure: (any Error)?
    private var context: ChannelHandlerContext?
    private let eventLoop: EventLoop

    init(maximumMessageLength: Int, eventLoop: EventLoop) {
        self.maximumMessageLength = maximumMessageLength
        self.eventLoop = eventLoop
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
        waiter?.fail(RelayError(.streamClosed, "the relay stream was handed on while a message was awaited"))
        waiter = nil
    }

    /// The next message's bytes (without the length prefix). One at a time.
    func next(timeout: TimeAmount) -> EventLoopFuture<ByteBuffer> {
        eventLoop.preconditionInEventLoop()
        guard context != nil || failure != nil else {
            return eventLoop.makeFailedFuture(RelayError(.streamClosed, "the relay stream is closed"))
        }
        precondition(waiter == nil, "one message at a time")
        let promise = eventLoop.makePromise(of: ByteBuffer.self)
        waiter = promise
        let timer = eventLoop.assumeIsolated().scheduleTask(in: timeout) { [weak self] in
            guard let self, let waiter = self.waiter, waiter.futureResult === promise.futureResult else { return }
            self.waiter = nil
            waiter.fail(RelayError(.timeout, "no relay message arrived within \(timeout)"))
        }
        promise.futureResult.whenComplete { _ in timer.cancel() }
        deliver()
        return promise.futureResult
    }

    /// Decodes the next message as `type`.
    func next<Message: SwiftProtobuf.Message>(_ type: Message.Type, timeout: TimeAmount) -> EventLoopFuture<Message> {
        let maximum = maximumMessageLength
        return next(timeout: timeout).flatMapThrowing { bytes in
            do {
                return try ProtobufFraming.decode(type, from: bytes.readableBytesView, maximumLength: maximum)
            } catch {
                throw RelayError(.malformedMessage, "\(Message.protoMessageName): \(error)")
            }
        }
    }

    /// Removes the reader and passes the bytes held after the last message to the next handler.
    func handOff(context: ChannelHandlerContext) {
        let rest = buffer
        buffer = ByteBuffer()
        // Pass the bytes on while still in the pipeline (a removed context has no next handler),
        // then leave: everything after goes straight to the next handler.
        if rest.readableBytes > 0 {
            context.fireChannelRead(wrapInboundOut(rest))
            context.fireChannelReadComplete()
        }
        context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
    }

    /// ``handOff(context:)`` from outside the pipeline.
    func handOff() {
        guard let context else { return }
        handOff(context: context)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var incoming = unwrapInboundIn(data)
        guard buffer.readableBytes + incoming.readableBytes <= Self.maximumBufferedBytes else {
            fail(RelayError(.malformedMessage, "more than \(Self.maximumBufferedBytes) bytes arrived before the relay exchange finished"), context: context)
            return
        }
        buffer.writeBuffer(&incoming)
        deliver()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case ChannelEvent.inputClosed = event {
            fail(RelayError(.streamClosed, "the peer closed the relay stream"), context: nil)
        }
        context.fireUserInboundEventTriggered(event)
    }

    func channelInactive(context: ChannelHandlerContext) {
        fail(RelayError(.streamClosed, "the relay stream closed"), context: nil)
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        fail(error, context: nil)
        context.fireErrorCaught(error)
    }

    private func deliver() {
        guard let waiter else { return }
        if let failure {
            self.waiter = nil
            waiter.fail(failure)
            return
        }
        do {
            guard let frame = try buffer.readLengthPrefixedMessage(maximumLength: maximumMessageLength) else { return }
            self.waiter = nil
            waiter.succeed(frame)
        } catch {
            self.waiter = nil
            waiter.fail(RelayError(.malformedMessage, "a relay message is not varint-delimited within \(maximumMessageLength) bytes: \(error)"))
        }
    }

    private func fail(_ error: any Error, context: ChannelHandlerContext?) {
        if failure == nil { failure = error }
        deliver()
        context?.close(promise: nil)
    }
}

extension Channel {
    /// Writes `message` as relay messages travel (a varint length, then the protobuf) and
    /// flushes; the future fails if the message does not encode.
    func writeRelayMessage(_ message: some SwiftProtobuf.Message) -> EventLoopFuture<Void> {
        var buffer = allocator.buffer(capacity: 256)
        do {
            try ProtobufFraming.writeDelimited(message, into: &buffer)
        } catch {
            return eventLoop.makeFailedFuture(error)
        }
        return writeAndFlush(buffer)
    }
}
