import Foundation
import NIOCore
import NIOEmbedded

@testable import PunchTransport

/// Records what reaches the end of a stream's pipeline.
final class StreamRecorder: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer

    var received = ByteBuffer()
    var inputClosed = false
    var outputClosed = false
    var errors: [any Error] = []
    var writability: [Bool] = []
    var isInactive = false

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var buffer = self.unwrapInboundIn(data)
        self.received.writeBuffer(&buffer)
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        switch event as? ChannelEvent {
        case .inputClosed: self.inputClosed = true
        case .outputClosed: self.outputClosed = true
        default: break
        }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        self.errors.append(error)
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        self.writability.append(context.channel.isWritable)
        context.fireChannelWritabilityChanged()
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.isInactive = true
        context.fireChannelInactive()
    }

    var transportErrorCodes: [TransportError.Code] {
        self.errors.compactMap { ($0 as? TransportError)?.code }
    }
}

/// Writes back everything it reads; half-closes when the peer does.
final class EchoHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        context.write(data, promise: nil)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        context.flush()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case .inputClosed = event as? ChannelEvent {
            context.close(mode: .output, promise: nil)
        }
    }
}

// Sendable so the registry can hold it; every access happens on the stream's event loop.
extension StreamRecorder: @unchecked Sendable {}

/// Remembers each stream's recorder, which a closed stream's pipeline no longer holds.
enum RecorderRegistry {
    // Only touched while holding `lock`.
    nonisolated(unsafe) private static var recorders: [ObjectIdentifier: (Channel, StreamRecorder)] = [:]
    private static let lock = NSLock()

    static func register(_ recorder: StreamRecorder, for channel: Channel) {
        lock.lock()
        defer { lock.unlock() }
        recorders[ObjectIdentifier(channel)] = (channel, recorder)
    }

    static func recorder(for channel: Channel) -> StreamRecorder? {
        lock.lock()
        defer { lock.unlock() }
        return recorders[ObjectIdentifier(channel)]?.1
    }
}

extension Channel {
    /// The recorder set up for this stream (event loop only).
    var recorder: StreamRecorder {
        RecorderRegistry.recorder(for: self)!
    }
}

/// How a test sets up a stream's pipeline (runs on the event loop).
typealias StreamSetup = @Sendable (Channel) throws -> Void

enum Streams {
    /// A recorder; `halfClosure` sets `allowRemoteHalfClosure`.
    static func recording(halfClosure: Bool = true, autoRead: Bool = true) -> StreamSetup {
        { channel in
            try channel.syncOptions!.setOption(ChannelOptions.allowRemoteHalfClosure, value: halfClosure)
            try channel.syncOptions!.setOption(ChannelOptions.autoRead, value: autoRead)
            let recorder = StreamRecorder()
            try channel.pipeline.syncOperations.addHandler(recorder)
            RecorderRegistry.register(recorder, for: channel)
        }
    }

    /// An echo server.
    static let echo: StreamSetup = { channel in
        try channel.syncOptions!.setOption(ChannelOptions.allowRemoteHalfClosure, value: true)
        try channel.pipeline.syncOperations.addHandler(EchoHandler())
    }

    /// An initializer that runs `setup` and remembers the stream in `box`.
    static func initializer(_ box: NIOLoopBoundBox<[Channel]>, _ setup: @escaping StreamSetup) -> @Sendable (Channel) -> EventLoopFuture<Void> {
        { channel in
            channel.eventLoop.makeCompletedFuture {
                try setup(channel)
                box.value.append(channel)
            }
        }
    }
}

/// Two yamux sessions on embedded channels, wired back to back by ``shuttle()``.
final class YamuxPair {
    let loop = EmbeddedEventLoop()
    let client: EmbeddedChannel
    let server: EmbeddedChannel
    let clientMultiplexer: YamuxMultiplexer
    let serverMultiplexer: YamuxMultiplexer
    /// Streams the server accepted.
    let serverStreams: NIOLoopBoundBox<[Channel]>
    /// Streams the client accepted.
    let clientStreams: NIOLoopBoundBox<[Channel]>
    /// Every frame that crossed, in order, per direction.
    var framesToServer: [YamuxFrame] = []
    var framesToClient: [YamuxFrame] = []
    /// Bytes of a frame that has only partly crossed (a header is written apart from a large payload).
    private var partialToServer = ByteBuffer()
    private var partialToClient = ByteBuffer()

    init(
        configuration: YamuxConfiguration = YamuxConfiguration(),
        serverSetup: @escaping StreamSetup = Streams.recording(),
        clientSetup: @escaping StreamSetup = Streams.recording()
    ) throws {
        self.serverStreams = NIOLoopBoundBox([], eventLoop: self.loop)
        self.clientStreams = NIOLoopBoundBox([], eventLoop: self.loop)
        self.clientMultiplexer = YamuxMultiplexer(
            role: .client,
            configuration: configuration,
            inboundStreamInitializer: Streams.initializer(self.clientStreams, clientSetup)
        )
        self.serverMultiplexer = YamuxMultiplexer(
            role: .server,
            configuration: configuration,
            inboundStreamInitializer: Streams.initializer(self.serverStreams, serverSetup)
        )
        self.client = EmbeddedChannel(loop: self.loop)
        self.server = EmbeddedChannel(loop: self.loop)
        try self.client.pipeline.syncOperations.addHandler(self.clientMultiplexer)
        try self.server.pipeline.syncOperations.addHandler(self.serverMultiplexer)
        try self.client.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        try self.server.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 2)).wait()
    }

    /// Opens a client stream set up by `setup`.
    func openClientStream(_ setup: @escaping StreamSetup = Streams.recording()) throws -> Channel {
        let future = self.clientMultiplexer.createStream { channel in
            channel.eventLoop.makeCompletedFuture { try setup(channel) }
        }
        self.loop.run()
        return try future.wait()
    }

    /// Moves bytes both ways until neither side has anything left to send.
    func shuttle() throws {
        var moved = true
        while moved {
            self.loop.run()
            moved = false
            while let buffer = try self.client.readOutbound(as: ByteBuffer.self) {
                guard buffer.readableBytes > 0 else { continue }
                self.framesToServer += try Self.decode(buffer, partial: &self.partialToServer)
                if self.server.isActive {
                    try self.server.writeInbound(buffer)
                }
                moved = true
            }
            while let buffer = try self.server.readOutbound(as: ByteBuffer.self) {
                guard buffer.readableBytes > 0 else { continue }
                self.framesToClient += try Self.decode(buffer, partial: &self.partialToClient)
                if self.client.isActive {
                    try self.client.writeInbound(buffer)
                }
                moved = true
            }
        }
        self.loop.run()
    }

    /// Decodes the frames `buffer` completes, keeping an unfinished one in `partial`.
    static func decode(_ buffer: ByteBuffer, partial: inout ByteBuffer) throws -> [YamuxFrame] {
        var buffer = buffer
        partial.writeBuffer(&buffer)
        var frames: [YamuxFrame] = []
        while let frame = try YamuxFrame.decode(from: &partial, maximumDataLength: UInt32.max) {
            frames.append(frame)
        }
        partial.discardReadBytes()
        return frames
    }

    /// Reads every outbound write of `channel` and decodes the frames; the writes must end on a
    /// frame boundary.
    static func drainFrames(_ channel: EmbeddedChannel, forwardingTo other: EmbeddedChannel? = nil) throws -> [YamuxFrame] {
        var partial = ByteBuffer()
        var frames: [YamuxFrame] = []
        while let buffer = try channel.readOutbound(as: ByteBuffer.self) {
            frames += try Self.decode(buffer, partial: &partial)
            if let other, buffer.readableBytes > 0 {
                try other.writeInbound(buffer)
            }
        }
        precondition(partial.readableBytes == 0, "a frame was left unfinished")
        return frames
    }
}

/// One embedded yamux session fed raw frames, for bad-input tests.
final class RawYamuxPeer {
    let loop = EmbeddedEventLoop()
    let channel: EmbeddedChannel
    let multiplexer: YamuxMultiplexer
    let streams: NIOLoopBoundBox<[Channel]>

    init(role: YamuxRole = .server, configuration: YamuxConfiguration = YamuxConfiguration(), setup: @escaping StreamSetup = Streams.recording()) throws {
        self.streams = NIOLoopBoundBox([], eventLoop: self.loop)
        self.multiplexer = YamuxMultiplexer(
            role: role,
            configuration: configuration,
            inboundStreamInitializer: Streams.initializer(self.streams, setup)
        )
        self.channel = EmbeddedChannel(loop: self.loop)
        try self.channel.pipeline.syncOperations.addHandler(self.multiplexer)
        try self.channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
    }

    /// Feeds frames as one read; rethrows the session error the multiplexer fired, if any.
    func receive(_ frames: YamuxFrame...) throws {
        var buffer = ByteBuffer()
        for frame in frames {
            frame.encode(into: &buffer)
        }
        try self.receive(bytes: buffer)
    }

    func receive(bytes: ByteBuffer) throws {
        try self.channel.writeInbound(bytes)
        self.loop.run()
    }

    /// The frames the session wrote since the last call.
    func sent() throws -> [YamuxFrame] {
        try YamuxPair.drainFrames(self.channel)
    }
}
