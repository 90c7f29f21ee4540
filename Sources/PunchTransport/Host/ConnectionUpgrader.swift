import NIOCore
import PunchCrypto

/// The upgrade of a TCP channel to a secure, multiplexed connection, the same for both
/// directions (libp2p connections spec, "Upgrading connections"):
///
/// 1. multistream-select `/noise`,
/// 2. Noise XX (initiator = dialer), proving both PeerIDs,
/// 3. multistream-select `/yamux/1.0.0` inside Noise,
/// 4. yamux (client = dialer: odd stream ids).
///
/// The inner negotiation is pipelined behind the handshake: its first message is written at once
/// and held by the Noise handler until the handshake completes, which saves a round trip.
enum ConnectionUpgrader {
    static let noiseProtocol = "/noise"
    static let yamuxProtocol = "/yamux/1.0.0"

    /// Installs the upgrade on `channel` (on its event loop) and returns a future that succeeds
    /// once yamux is ready. On failure or timeout the channel is closed.
    static func upgrade(
        channel: Channel,
        connection: Connection,
        configuration: HostConfiguration,
        expectedPeer: PeerID?,
        inboundStream: @escaping @Sendable (Channel) -> EventLoopFuture<Void>
    ) -> EventLoopFuture<Void> {
        let eventLoop = channel.eventLoop
        let done = eventLoop.makePromise(of: Void.self)
        // The dialer, except in a hole punch (both dial; DCUtR assigns the roles).
        let dialer = connection.isSecurityInitiator
        let timeout = eventLoop.scheduleTask(in: configuration.upgradeTimeout) {
            done.fail(TransportError(.hostUpgradeFailed, "the connection upgrade took longer than \(configuration.upgradeTimeout)"))
            channel.close(promise: nil)
        }
        done.futureResult.whenComplete { _ in timeout.cancel() }

        let observer = UpgradeObserver(connection: connection, done: done)
        let security = MultistreamSelectHandler<Void>(
            role: dialer ? .dialer([noiseProtocol]) : .listener([noiseProtocol]),
            configuration: configuration.multistream, eventLoop: eventLoop
        ) { _, channel in
            channel.eventLoop.makeCompletedFuture {
                let noise = NoiseHandler(
                    role: dialer ? .initiator : .responder, localKey: configuration.identity,
                    expectedRemotePeerID: expectedPeer, configuration: configuration.noise)
                let muxer = MultistreamSelectHandler<Void>(
                    role: dialer ? .dialer([yamuxProtocol]) : .listener([yamuxProtocol]),
                    configuration: configuration.multistream, eventLoop: channel.eventLoop
                ) { _, channel in
                    channel.eventLoop.makeCompletedFuture {
                        let multiplexer = YamuxMultiplexer(
                            role: dialer ? .client : .server, configuration: configuration.yamux,
                            inboundStreamInitializer: inboundStream)
                        try channel.pipeline.syncOperations.addHandler(multiplexer)
                        connection.multiplexerReady(multiplexer.streamOpener)
                    }
                }
                try channel.pipeline.syncOperations.addHandlers([noise, observer, muxer])
                muxer.negotiationResult.cascade(to: done)
            }
        }
        do {
            try channel.pipeline.syncOperations.addHandler(ByteCountingHandler(counter: connection.bytes))
            try channel.pipeline.syncOperations.addHandler(security)
            // Dialed channels start with autoRead off (see PunchHost's bootstrap) so that no
            // byte arrives before this point.
            try channel.syncOptions?.setOption(ChannelOptions.autoRead, value: true)
        } catch {
            done.fail(error)
        }
        security.negotiationResult.whenFailure { done.fail($0) }
        done.futureResult.whenFailure { error in
            connection.recordError(TransportError(upgrade: error))
            channel.close(promise: nil)
        }
        return done.futureResult
    }
}

extension TransportError {
    /// `error` as a transport error: itself when it is one, else wrapped as an upgrade failure.
    init(upgrade error: any Error) {
        if let error = error as? TransportError {
            self = error
        } else {
            self.init(.hostUpgradeFailed, "\(error)")
        }
    }
}

/// Sits after the Noise handler during the upgrade: records the peer Noise proved, and fails the
/// upgrade on the first error or on close. Passes everything on.
final class UpgradeObserver: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    private let connection: Connection
    private let done: EventLoopPromise<Void>

    init(connection: Connection, done: EventLoopPromise<Void>) {
        self.connection = connection
        self.done = done
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        context.fireChannelRead(data)
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let completed = event as? NoiseHandshakeCompleted {
            connection.handshakeCompleted(completed)
        }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        let transportError = TransportError(upgrade: error)
        connection.recordError(transportError)
        done.fail(transportError)
        context.fireErrorCaught(error)
    }

    func channelInactive(context: ChannelHandlerContext) {
        done.fail(TransportError(.connectionClosed, "the peer closed the connection during the upgrade"))
        context.fireChannelInactive()
    }
}
