import NIOCore
import NIOPosix
import Testing

@testable import PunchTransport

/// Yamux over a real TCP connection on 127.0.0.1, with `NIOAsyncChannel` on every stream.
@Suite struct YamuxLoopbackTests {
    static let streamCount = 16
    static let bytesPerStream = 1024 * 1024
    static let chunkSize = 64 * 1024

    /// The bytes stream `index` sends: a 253-byte period (prime) seeded per stream.
    static func payload(stream index: Int) -> ByteBuffer {
        let period = (0..<253).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ index &* 13) }
        var buffer = ByteBuffer()
        buffer.reserveCapacity(bytesPerStream)
        while buffer.readableBytes < bytesPerStream {
            buffer.writeBytes(period.prefix(bytesPerStream - buffer.readableBytes))
        }
        return buffer
    }

    @Test func sixteenParallelStreamsEachEchoOneMebibyte() async throws {
        let group = MultiThreadedEventLoopGroup.singleton
        let (echoed, echoedContinuation) = AsyncStream<Int>.makeStream()

        // Server: every stream the client opens is echoed by an async task.
        let server = try await ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { connection in
                connection.eventLoop.makeCompletedFuture {
                    let multiplexer = YamuxMultiplexer(role: .server) { stream in
                        stream.eventLoop.makeCompletedFuture {
                            try stream.syncOptions!.setOption(ChannelOptions.allowRemoteHalfClosure, value: true)
                            let asyncStream = try NIOAsyncChannel<ByteBuffer, ByteBuffer>(
                                wrappingChannelSynchronously: stream,
                                configuration: .init(isOutboundHalfClosureEnabled: true)
                            )
                            Task {
                                let count = try await asyncStream.executeThenClose { inbound, outbound in
                                    var count = 0
                                    for try await chunk in inbound {
                                        count += chunk.readableBytes
                                        try await outbound.write(chunk)
                                    }
                                    return count
                                }
                                echoedContinuation.yield(count)
                            }
                        }
                    }
                    try connection.pipeline.syncOperations.addHandler(multiplexer)
                }
            }
            .bind(host: "127.0.0.1", port: 0)
            .get()
        let port = try #require(server.localAddress?.port)

        // Client: refuses streams from the server, opens its own.
        let (connection, opener) = try await ClientBootstrap(group: group)
            .connect(host: "127.0.0.1", port: port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    let multiplexer = YamuxMultiplexer(role: .client) { stream in
                        stream.eventLoop.makeFailedFuture(ChannelError.operationUnsupported)
                    }
                    try channel.pipeline.syncOperations.addHandler(multiplexer)
                    return (channel, multiplexer.streamOpener)
                }
            }

        try await withThrowingTaskGroup(of: Void.self) { tasks in
            for index in 0..<Self.streamCount {
                tasks.addTask {
                    let stream = try await opener.openStream { channel in
                        channel.eventLoop.makeCompletedFuture {
                            try channel.syncOptions!.setOption(ChannelOptions.allowRemoteHalfClosure, value: true)
                            return try NIOAsyncChannel<ByteBuffer, ByteBuffer>(
                                wrappingChannelSynchronously: channel,
                                configuration: .init(isOutboundHalfClosureEnabled: true)
                            )
                        }
                    }
                    let payload = Self.payload(stream: index)
                    let received = try await stream.executeThenClose { inbound, outbound in
                        try await withThrowingTaskGroup(of: ByteBuffer?.self) { sides in
                            sides.addTask {
                                var remaining = payload
                                while let chunk = remaining.readSlice(length: min(Self.chunkSize, remaining.readableBytes)),
                                    chunk.readableBytes > 0
                                {
                                    try await outbound.write(chunk)
                                }
                                outbound.finish()
                                return nil
                            }
                            sides.addTask {
                                var received = ByteBuffer()
                                for try await var chunk in inbound {
                                    received.writeBuffer(&chunk)
                                }
                                return received
                            }
                            var received: ByteBuffer?
                            for try await result in sides {
                                if let result { received = result }
                            }
                            return received
                        }
                    }
                    #expect(received == payload, "stream \(index) echoed \(received?.readableBytes ?? 0) bytes")
                }
            }
            try await tasks.waitForAll()
        }

        var totals: [Int] = []
        for await count in echoed {
            totals.append(count)
            if totals.count == Self.streamCount { break }
        }
        #expect(totals == Array(repeating: Self.bytesPerStream, count: Self.streamCount))

        // One more round trip on the session itself, through an opener found in the pipeline.
        let found = try await connection.pipeline.yamuxStreamOpener().get()
        let rtt = try await found.ping()
        #expect(rtt >= .zero)

        try await connection.close()
        try await server.close()
    }
}
