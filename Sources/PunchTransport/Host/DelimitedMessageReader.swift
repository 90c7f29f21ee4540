import NIOConcurrencyHelpers
import NIOCore
import PunchWire
import SwiftProtobuf

/// Reads varint-delimited protobuf messages (the framing of DCUtR, AutoNAT v2 and identify) from
/// a stream's inbound bytes, each within a size bound and a time limit: a message that does not
/// arrive within `timeout` closes the stream. A message is taken from the buffer only when it is
/// whole; each protocol maps ``Failure`` to its own typed error.
public struct DelimitedMessageReader<Message: SwiftProtobuf.Message> {
    /// Why no message came.
    public enum Failure: Error {
        /// The bytes are not a message of this type, or its length is over the maximum
        /// (`WireError` `.tooLarge`, checked from the length prefix before the body is read).
        case malformed(any Error)
        /// No whole message within the timeout; the stream was closed.
        case timedOut
        /// The stream ended (or failed) before a whole message.
        case ended
    }

    private var iterator: NIOAsyncChannelInboundStream<ByteBuffer>.AsyncIterator
    private var buffer = ByteBuffer()
    public let maximumLength: Int
    public let timeout: TimeAmount
    private let channel: Channel
    private let timedOut = NIOLockedValueBox(false)

    /// - Parameters:
    ///   - inbound: the stream's inbound sequence (from `executeThenClose`).
    ///   - channel: the stream's channel, closed when a message takes longer than `timeout`.
    public init(_ inbound: NIOAsyncChannelInboundStream<ByteBuffer>, channel: Channel, maximumLength: Int, timeout: TimeAmount) {
        self.iterator = inbound.makeAsyncIterator()
        self.channel = channel
        self.maximumLength = maximumLength
        self.timeout = timeout
    }

    /// The next message, within ``timeout``.
    public mutating func next() async throws(Failure) -> Message {
        try await next(within: timeout)
    }

    /// The next message, within `limit` instead of ``timeout``: for a wait the protocol knows to
    /// be longer than one message's (the peer is busy with something else first).
    public mutating func next(within limit: TimeAmount) async throws(Failure) -> Message {
        let timedOut = self.timedOut
        let channel = self.channel
        let watchdog = channel.eventLoop.scheduleTask(in: limit) {
            timedOut.withLockedValue { $0 = true }
            channel.close(promise: nil)
        }
        defer { watchdog.cancel() }
        while true {
            do {
                if let message = try ProtobufFraming.readDelimited(Message.self, from: &buffer, maximumLength: maximumLength) {
                    return message
                }
            } catch {
                throw .malformed(error)
            }
            let chunk: ByteBuffer?
            do {
                chunk = try await iterator.next()
            } catch {
                chunk = nil
            }
            guard var bytes = chunk else {
                throw timedOut.withLockedValue({ $0 }) ? .timedOut : .ended
            }
            buffer.writeBuffer(&bytes)
        }
    }
}
