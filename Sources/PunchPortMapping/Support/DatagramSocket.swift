import NIOCore
import NIOPosix
import PunchWire

/// A UDP socket with an async receive that waits until a deadline: what a request/response
/// protocol over UDP (NAT-PMP, PCP, SSDP) needs, and nothing more.
///
/// Received datagrams wait in a queue of at most ``maximumQueuedDatagrams``; beyond that the
/// oldest are dropped (a flood cannot grow memory). Datagrams longer than
/// ``maximumDatagramLength`` are truncated by the kernel read and then refused by the decoders.
final class DatagramSocket: Sendable {
    /// The most datagrams kept waiting for ``receive(until:)``.
    static let maximumQueuedDatagrams = 64
    /// The receive buffer per datagram: larger than any NAT-PMP (16), PCP (1100) or SSDP reply
    /// a client needs; a longer datagram arrives cut to this length.
    static let maximumDatagramLength = 2048

    struct Datagram: Sendable {
        var bytes: [UInt8]
        var source: SocketAddress
    }

    let channel: any Channel
    private let inbox: NIOLoopBound<Inbox>

    private init(channel: any Channel, inbox: NIOLoopBound<Inbox>) {
        self.channel = channel
        self.inbox = inbox
    }

    /// Binds a UDP socket.
    /// - Parameters:
    ///   - host: the local address (`0.0.0.0` for any).
    ///   - port: the local port; 0 picks a free one.
    ///   - reuseAddress: sets SO_REUSEADDR (lets several listeners share the announcement port).
    /// - Throws: ``PortMappingError`` `.socketFailure`.
    static func bind(host: String = "0.0.0.0", port: Int = 0, reuseAddress: Bool = false, group: any EventLoopGroup) async throws -> DatagramSocket {
        do {
            let channel = try await DatagramBootstrap(group: group)
                .channelOption(.socketOption(.so_reuseaddr), value: reuseAddress ? 1 : 0)
                .channelOption(.recvAllocator, value: FixedSizeRecvByteBufferAllocator(capacity: maximumDatagramLength))
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandler(Inbox())
                    }
                }
                .bind(host: host, port: port).get()
            let inbox = try await channel.eventLoop.submit {
                NIOLoopBound(try channel.pipeline.syncOperations.handler(type: Inbox.self), eventLoop: channel.eventLoop)
            }.get()
            return DatagramSocket(channel: channel, inbox: inbox)
        } catch {
            throw PortMappingError(.socketFailure, "cannot bind a UDP socket to \(host):\(port): \(error)")
        }
    }

    /// The bound local address.
    var localAddress: SocketAddress? { channel.localAddress }

    /// Sends one datagram.
    /// - Throws: ``PortMappingError`` `.socketFailure`.
    func send(_ bytes: [UInt8], to destination: SocketAddress) async throws {
        do {
            try await channel.writeAndFlush(AddressedEnvelope(remoteAddress: destination, data: ByteBuffer(bytes: bytes))).get()
        } catch {
            throw PortMappingError(.socketFailure, "cannot send to \(destination): \(error)")
        }
    }

    /// The next datagram, or `nil` if none arrives before `deadline` or the socket closed.
    func receive(until deadline: NIODeadline) async -> Datagram? {
        let inbox = self.inbox
        return try? await channel.eventLoop.flatSubmit { inbox.value.next(until: deadline) }.get()
    }

    /// Closes the socket; a pending ``receive(until:)`` returns `nil`.
    func close() async {
        try? await channel.close().get()
    }

    /// Keeps received datagrams for ``DatagramSocket/receive(until:)``; used only on its event loop.
    private final class Inbox: ChannelInboundHandler {
        typealias InboundIn = AddressedEnvelope<ByteBuffer>

        private var queue: [Datagram] = []
        private var waiter: (promise: EventLoopPromise<Datagram?>, timer: Scheduled<Void>)?
        private var closed = false

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            let envelope = unwrapInboundIn(data)
            let datagram = Datagram(bytes: Array(envelope.data.readableBytesView), source: envelope.remoteAddress)
            if let waiter {
                self.waiter = nil
                waiter.timer.cancel()
                waiter.promise.succeed(datagram)
                return
            }
            if queue.count >= DatagramSocket.maximumQueuedDatagrams { queue.removeFirst() }
            queue.append(datagram)
        }

        func channelInactive(context: ChannelHandlerContext) {
            closed = true
            if let waiter {
                self.waiter = nil
                waiter.timer.cancel()
                waiter.promise.succeed(nil)
            }
            context.fireChannelInactive()
        }

        func errorCaught(context: ChannelHandlerContext, error: any Error) {
            // ICMP port unreachable surfaces here as ECONNREFUSED on some kernels; a UDP client
            // treats it as "no answer" and keeps waiting for its timeout.
        }

        func next(until deadline: NIODeadline) -> EventLoopFuture<Datagram?> {
            let eventLoop = waiterEventLoop
            if !queue.isEmpty { return eventLoop.makeSucceededFuture(queue.removeFirst()) }
            if closed || waiter != nil || deadline <= .now() { return eventLoop.makeSucceededFuture(nil) }
            let promise = eventLoop.makePromise(of: Datagram?.self)
            let inbox = NIOLoopBound(self, eventLoop: eventLoop)
            let timer = eventLoop.scheduleTask(deadline: deadline) {
                guard let waiter = inbox.value.waiter else { return }
                inbox.value.waiter = nil
                waiter.promise.succeed(nil)
            }
            waiter = (promise, timer)
            return promise.futureResult
        }

        private var context: ChannelHandlerContext?
        private var waiterEventLoop: any EventLoop { context!.eventLoop }

        func handlerAdded(context: ChannelHandlerContext) { self.context = context }
        func handlerRemoved(context: ChannelHandlerContext) { self.context = nil }
    }
}

extension DatagramSocket {
    /// Sends `request` to `server` and waits for a reply that `accept` takes, retransmitting per
    /// `policy`.
    ///
    /// Replies from any other address or port are refused (`.unexpectedSource`); replies
    /// `accept` refuses are dropped too, and the transaction keeps waiting (RFC 6887 §8.3 and
    /// RFC 6886 §3.1 both say to ignore invalid replies). If no reply is taken, the error of
    /// the last refused reply is thrown, else `.timedOut`: a spoofed or corrupt reply is
    /// reported as such rather than as silence.
    /// - Throws: ``PortMappingError``: what `accept` throws through ``ReplyVerdict/fail(_:)``,
    ///   the last refusal, or `.timedOut`.
    func exchange<Reply: Sendable>(
        _ request: [UInt8], with server: SocketAddress, policy: RetransmissionPolicy, what: String,
        accept: (Datagram) -> ReplyVerdict<Reply>
    ) async throws -> Reply {
        var lastRefusal: PortMappingError?
        for attempt in 0..<policy.maximumAttempts {
            try Task.checkCancellation()
            try await send(request, to: server)
            let deadline = NIODeadline.now() + TimeAmount(policy.timeout(attempt: attempt))
            while let datagram = await receive(until: deadline) {
                guard Self.sameEndpoint(datagram.source, server) else {
                    lastRefusal = PortMappingError(
                        .unexpectedSource, "a reply to the \(what) came from \(datagram.source), not the gateway \(server); it was ignored")
                    continue
                }
                switch accept(datagram) {
                case .accept(let reply): return reply
                case .refuse(let error): lastRefusal = error
                case .fail(let error): throw error
                case .ignore: continue
                }
            }
        }
        throw lastRefusal
            ?? PortMappingError(.timedOut, "the gateway \(server) did not answer the \(what) after \(policy.maximumAttempts) tries")
    }

    static func sameEndpoint(_ a: SocketAddress, _ b: SocketAddress) -> Bool {
        guard let aIP = a.ipAddress, let bIP = b.ipAddress, a.port == b.port else { return false }
        if aIP == bIP { return true }
        // A v4 socket address and its IPv4-mapped IPv6 form name the same endpoint.
        return (try? IPAddress(aIP)) == (try? IPAddress(bIP)) || aIP.replacingOccurrences(of: "::ffff:", with: "") == bIP.replacingOccurrences(of: "::ffff:", with: "")
    }
}

/// What a protocol client makes of one reply from the right source.
enum ReplyVerdict<Reply: Sendable> {
    /// The answer; the exchange ends.
    case accept(Reply)
    /// An invalid reply (malformed, wrong nonce): dropped, remembered, and the wait goes on.
    case refuse(PortMappingError)
    /// A valid reply that ends the exchange with an error (the gateway refused).
    case fail(PortMappingError)
    /// A valid reply to something else (a stray announcement): dropped silently.
    case ignore
}

/// The local address the kernel would use to reach `destination`: a connected UDP socket is
/// created, read and closed without sending anything. PCP must put this address in every
/// request (RFC 6887 §8.1), and UPnP's secure mode requires it as `NewInternalClient`.
func localAddress(toward destination: SocketAddress, group: any EventLoopGroup) async throws -> IPAddress {
    do {
        let channel = try await DatagramBootstrap(group: group).connect(to: destination).get()
        defer { channel.close(promise: nil) }
        guard let local = channel.localAddress?.ipAddress, let address = try? IPAddress(local) else {
            throw PortMappingError(.socketFailure, "no local address toward \(destination)")
        }
        return address
    } catch let error as PortMappingError {
        throw error
    } catch {
        throw PortMappingError(.socketFailure, "no route to \(destination): \(error)")
    }
}
