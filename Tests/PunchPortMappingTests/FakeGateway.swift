import NIOConcurrencyHelpers
import NIOCore
import NIOPosix

@testable import PunchPortMapping
@testable import PunchWire

/// A UDP "gateway" on 127.0.0.1 that answers each request with whatever the test's closure
/// returns: from its own port, or from a second socket (a spoofed source).
final class FakeUDPGateway: Sendable {
    enum Reply: Sendable {
        case fromGateway([UInt8])
        case fromElsewhere([UInt8])
    }

    let channel: any Channel
    let spoofChannel: any Channel
    private let received = NIOLockedValueBox<[[UInt8]]>([])

    var port: UInt16 { UInt16(channel.localAddress!.port!) }
    var requests: [[UInt8]] { received.withLockedValue { $0 } }

    init(answer: @escaping @Sendable ([UInt8]) -> [Reply]) async throws {
        let group = MultiThreadedEventLoopGroup.singleton
        spoofChannel = try await DatagramBootstrap(group: group).bind(host: "127.0.0.1", port: 0).get()
        let spoof = spoofChannel
        let received = self.received
        channel = try await DatagramBootstrap(group: group)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(Responder(answer: answer, spoof: spoof, received: received))
                }
            }
            .bind(host: "127.0.0.1", port: 0).get()
    }

    func close() async {
        try? await channel.close().get()
        try? await spoofChannel.close().get()
    }

    private final class Responder: ChannelInboundHandler {
        typealias InboundIn = AddressedEnvelope<ByteBuffer>
        typealias OutboundOut = AddressedEnvelope<ByteBuffer>
        let answer: @Sendable ([UInt8]) -> [Reply]
        let spoof: any Channel
        let received: NIOLockedValueBox<[[UInt8]]>

        init(answer: @escaping @Sendable ([UInt8]) -> [Reply], spoof: any Channel, received: NIOLockedValueBox<[[UInt8]]>) {
            self.answer = answer
            self.spoof = spoof
            self.received = received
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            let envelope = unwrapInboundIn(data)
            let bytes = Array(envelope.data.readableBytesView)
            received.withLockedValue { $0.append(bytes) }
            for reply in answer(bytes) {
                switch reply {
                case .fromGateway(let out):
                    context.writeAndFlush(wrapOutboundOut(AddressedEnvelope(remoteAddress: envelope.remoteAddress, data: ByteBuffer(bytes: out))), promise: nil)
                case .fromElsewhere(let out):
                    spoof.writeAndFlush(AddressedEnvelope(remoteAddress: envelope.remoteAddress, data: ByteBuffer(bytes: out)), promise: nil)
                }
            }
        }
    }
}

/// An HTTP server on 127.0.0.1 that answers each whole request with the test's closure:
/// (method, path, SOAPAction header, body) -> (status, body). One request per connection.
final class FakeHTTPServer: Sendable {
    struct Request: Sendable {
        var method: String
        var path: String
        var soapAction: String
        var body: String
    }

    let channel: any Channel
    var port: UInt16 { UInt16(channel.localAddress!.port!) }

    init(answer: @escaping @Sendable (Request) -> (Int, [UInt8])) async throws {
        channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(Handler(answer: answer))
                }
            }
            .bind(host: "127.0.0.1", port: 0).get()
    }

    func close() async { try? await channel.close().get() }

    private final class Handler: ChannelInboundHandler {
        typealias InboundIn = ByteBuffer
        typealias OutboundOut = ByteBuffer
        let answer: @Sendable (Request) -> (Int, [UInt8])
        var bytes: [UInt8] = []

        init(answer: @escaping @Sendable (Request) -> (Int, [UInt8])) { self.answer = answer }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            bytes += unwrapInboundIn(data).readableBytesView
            let text = String(decoding: bytes, as: UTF8.self)
            guard let headerEnd = text.range(of: "\r\n\r\n") else { return }
            let head = text[..<headerEnd.lowerBound].split(separator: "\r\n")
            var length = 0
            var action = ""
            for line in head.dropFirst() {
                let parts = line.split(separator: ":", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
                guard parts.count == 2 else { continue }
                if parts[0].lowercased() == "content-length" { length = Int(parts[1]) ?? 0 }
                if parts[0].lowercased() == "soapaction" { action = parts[1] }
            }
            let body = text[headerEnd.upperBound...]
            guard body.utf8.count >= length else { return }
            let requestLine = head.first?.split(separator: " ") ?? []
            let (status, out) = answer(Request(
                method: requestLine.first.map(String.init) ?? "", path: requestLine.dropFirst().first.map(String.init) ?? "",
                soapAction: action, body: String(body)))
            let response = Array("HTTP/1.1 \(status) X\r\nContent-Type: text/xml\r\nContent-Length: \(out.count)\r\nConnection: close\r\n\r\n".utf8) + out
            let bound = NIOLoopBound(context, eventLoop: context.eventLoop)
            context.writeAndFlush(wrapOutboundOut(ByteBuffer(bytes: response))).whenComplete { _ in bound.value.close(promise: nil) }
            bytes = []
        }
    }
}

import Foundation
