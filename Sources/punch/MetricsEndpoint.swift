import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import Punch

/// A Prometheus scrape endpoint (`GET /metrics`, text exposition format 0.0.4) on a plain HTTP/1.1
/// listener, for `punch relay --metrics HOST:PORT`. Each scrape calls `collect` for the current
/// text; any other path answers 404, any other method 405. Requests are small and bounded: a
/// request head over ``maximumHeadBytes`` or a body is refused by closing the connection.
enum MetricsEndpoint {
    /// The largest request head accepted (NIOHTTP1's own limit is 80 KiB).
    static let maximumHeadBytes = 8 * 1024
    /// The Content-Type of the Prometheus text format.
    static let contentType = "text/plain; version=0.0.4; charset=utf-8"

    /// Listens on `endpoint`; returns the listening channel (close it to stop).
    static func start(at endpoint: IPEndpoint, collect: @escaping @Sendable () async -> [UInt8]) async throws -> Channel {
        try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
                    try channel.pipeline.syncOperations.addHandler(Handler(collect: collect))
                }
            }
            .bind(to: endpoint.socketAddress())
            .get()
    }

    private final class Handler: ChannelInboundHandler {
        typealias InboundIn = HTTPServerRequestPart
        typealias OutboundOut = HTTPServerResponsePart

        let collect: @Sendable () async -> [UInt8]
        private var head: HTTPRequestHead?

        init(collect: @escaping @Sendable () async -> [UInt8]) { self.collect = collect }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            switch unwrapInboundIn(data) {
            case .head(let head):
                let size = head.uri.utf8.count + head.headers.reduce(0) { $0 + $1.name.utf8.count + $1.value.utf8.count + 4 }
                guard size <= MetricsEndpoint.maximumHeadBytes else {
                    context.close(promise: nil)
                    return
                }
                self.head = head
            case .body:
                // A scrape has no body; a client that sends one is not a scraper.
                context.close(promise: nil)
            case .end:
                guard let head else { return }
                self.head = nil
                respond(to: head, channel: context.channel)
            }
        }

        private func respond(to head: HTTPRequestHead, channel: Channel) {
            let keepAlive = head.isKeepAlive
            let version = head.version
            let send: @Sendable (HTTPResponseStatus, [UInt8], String) -> Void = { status, body, contentType in
                var headers = HTTPHeaders()
                headers.add(name: "Content-Type", value: contentType)
                headers.add(name: "Content-Length", value: "\(body.count)")
                if !keepAlive { headers.add(name: "Connection", value: "close") }
                channel.write(HTTPServerResponsePart.head(HTTPResponseHead(version: version, status: status, headers: headers)), promise: nil)
                channel.write(HTTPServerResponsePart.body(.byteBuffer(ByteBuffer(bytes: body))), promise: nil)
                channel.writeAndFlush(HTTPServerResponsePart.end(nil)).whenComplete { _ in
                    if !keepAlive { channel.close(promise: nil) }
                }
            }
            guard head.method == .GET else {
                send(.methodNotAllowed, Array("only GET /metrics\n".utf8), "text/plain")
                return
            }
            guard head.uri == "/metrics" || head.uri.hasPrefix("/metrics?") else {
                send(.notFound, Array("not found: the metrics are at /metrics\n".utf8), "text/plain")
                return
            }
            let collect = self.collect
            Task {
                let text = await collect()
                channel.eventLoop.execute { send(.ok, text, MetricsEndpoint.contentType) }
            }
        }
    }
}
