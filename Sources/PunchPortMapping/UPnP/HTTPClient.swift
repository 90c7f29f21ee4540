import NIOCore
import NIOPosix
import PunchWire

/// The smallest HTTP/1.1 client UPnP needs: one request per connection (`Connection: close`),
/// a response bounded in size and time. Only IP-literal hosts: a UPnP device is addressed by the
/// IP its SSDP reply came from.
enum HTTPClient {
    struct Request: Sendable {
        var method: String
        var host: IPEndpoint
        var path: String
        var headers: [(String, String)] = []
        var body: [UInt8] = []
    }

    /// Sends a request and reads the response.
    /// - Parameters:
    ///   - request: what to send.
    ///   - maximumBytes: the most response bytes read; more is `.responseTooLarge`.
    ///   - timeout: for the whole exchange, connection included.
    ///   - group: the event loops.
    /// - Returns: the response (any status).
    /// - Throws: ``PortMappingError``: `.httpFailure` (connect, framing), `.timedOut`, `.responseTooLarge`.
    static func send(_ request: Request, maximumBytes: Int, timeout: Duration, group: any EventLoopGroup) async throws -> HTTPResponseParser.Response {
        let address = try request.host.socketAddress()
        let channel: any Channel
        do {
            channel = try await ClientBootstrap(group: group)
                .connectTimeout(TimeAmount(timeout))
                .connect(to: address).get()
        } catch {
            throw PortMappingError(.httpFailure, "cannot connect to \(request.host): \(error)")
        }
        let promise = channel.eventLoop.makePromise(of: HTTPResponseParser.Response.self)
        let deadline = channel.eventLoop.scheduleTask(in: TimeAmount(timeout)) {
            promise.fail(PortMappingError(.timedOut, "\(request.method) \(request.path) at \(request.host) got no complete response in \(timeout)"))
            channel.close(promise: nil)
        }
        promise.futureResult.whenComplete { _ in
            deadline.cancel()
            channel.close(promise: nil)
        }
        do {
            try await channel.eventLoop.submit {
                try channel.pipeline.syncOperations.addHandler(ResponseHandler(parser: HTTPResponseParser(maximumBytes: maximumBytes), promise: promise))
            }.get()
        } catch {
            promise.fail(PortMappingError(.httpFailure, "cannot set up the connection to \(request.host): \(error)"))
        }
        var head = "\(request.method) \(request.path) HTTP/1.1\r\nHost: \(request.host)\r\nConnection: close\r\n"
        for (name, value) in request.headers { head += "\(name): \(value)\r\n" }
        head += "Content-Length: \(request.body.count)\r\n\r\n"
        channel.writeAndFlush(ByteBuffer(bytes: Array(head.utf8) + request.body), promise: nil)
        return try await promise.futureResult.get()
    }

    /// Feeds the parser; completes the promise once, with the response or the error.
    private final class ResponseHandler: ChannelInboundHandler {
        typealias InboundIn = ByteBuffer
        private var parser: HTTPResponseParser
        private let promise: EventLoopPromise<HTTPResponseParser.Response>

        init(parser: HTTPResponseParser, promise: EventLoopPromise<HTTPResponseParser.Response>) {
            self.parser = parser
            self.promise = promise
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            let buffer = unwrapInboundIn(data)
            do {
                if let response = try parser.feed(buffer.readableBytesView) { promise.succeed(response) }
            } catch {
                promise.fail(error)
            }
        }

        func channelInactive(context: ChannelHandlerContext) {
            do { promise.succeed(try parser.finish()) } catch { promise.fail(error) }
        }

        func errorCaught(context: ChannelHandlerContext, error: any Error) {
            promise.fail(PortMappingError(.httpFailure, "the HTTP connection failed: \(error)"))
            context.close(promise: nil)
        }
    }
}
