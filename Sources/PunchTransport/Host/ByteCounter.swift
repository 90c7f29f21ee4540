import NIOCore
import Synchronization

/// The bytes a connection carried, both ways, as seen on its transport (TCP, or the relay
/// circuit's stream): Noise framing and yamux headers included. Thread-safe.
public final class ByteCounter: Sendable {
    private let received = Atomic<Int>(0)
    private let sent = Atomic<Int>(0)

    init() {}

    /// Bytes read from the transport so far.
    public var bytesReceived: Int { received.load(ordering: .relaxed) }
    /// Bytes written to the transport so far (handed to it; the kernel may still hold some).
    public var bytesSent: Int { sent.load(ordering: .relaxed) }

    func addReceived(_ count: Int) { received.add(count, ordering: .relaxed) }
    func addSent(_ count: Int) { sent.add(count, ordering: .relaxed) }
}

/// The first handler of a connection's pipeline: counts what passes into its ``ByteCounter``.
final class ByteCountingHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let counter: ByteCounter

    init(counter: ByteCounter) { self.counter = counter }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        counter.addReceived(unwrapInboundIn(data).readableBytes)
        context.fireChannelRead(data)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        counter.addSent(unwrapOutboundIn(data).readableBytes)
        context.write(data, promise: promise)
    }
}
