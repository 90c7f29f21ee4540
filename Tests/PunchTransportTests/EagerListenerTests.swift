import NIOCore
import NIOPosix
import PunchCrypto
import PunchTransport
import PunchWire
import Testing

/// A listener may send its multistream-select header the moment it accepts, before it has read
/// anything (py-libp2p does). Those bytes must reach the dialer's negotiation, not an empty
/// pipeline: before the fix most dials failed with `multistream.badHeader` ("the peer sent
/// '/noise'") because the header had been read and dropped before the upgrade was installed.
struct EagerListenerTests {
    /// Writes the header on accept, answers `/noise` to the proposal, then closes.
    final class EagerListener: ChannelInboundHandler {
        typealias InboundIn = ByteBuffer
        typealias OutboundOut = ByteBuffer
        private var answered = false

        func channelActive(context: ChannelHandlerContext) {
            var header = ByteBuffer()
            header.writeVarint(19)
            header.writeString("/multistream/1.0.0\n")
            context.writeAndFlush(wrapOutboundOut(header), promise: nil)
            context.fireChannelActive()
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            guard !answered else { return }
            answered = true
            var answer = ByteBuffer()
            answer.writeVarint(7)
            answer.writeString("/noise\n")
            let channel = context.channel
            context.writeAndFlush(wrapOutboundOut(answer)).whenComplete { _ in channel.close(promise: nil) }
        }
    }

    @Test func headerSentBeforeTheDialersProposalIsNotLost() async throws {
        let server = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(EagerListener()) }
            }
            .bind(host: "127.0.0.1", port: 0).get()
        let port = try #require(server.localAddress?.port)
        let host = PunchHost(configuration: HostConfiguration(identity: .generate()))
        for _ in 0..<20 {
            do {
                _ = try await host.dial(Multiaddr("/ip4/127.0.0.1/tcp/\(port)"))
                Issue.record("the dial cannot succeed: the listener closes after /noise")
            } catch let error as TransportError {
                // Negotiation succeeded; the connection then closed in the Noise handshake.
                #expect(error.code != .multistreamBadHeader, "\(error)")
            }
        }
        await host.close()
        try await server.close()
    }
}
