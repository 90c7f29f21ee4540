import NIOCore

/// libp2p ping (`/ipfs/ping/1.0.0`, libp2p/specs ping/ping.md): the dialer sends 32 random bytes,
/// the listener echoes them, on one stream as often as the dialer likes.
public enum Ping {
    /// The protocol id.
    public static let protocolID = "/ipfs/ping/1.0.0"
    /// The size of a ping payload, fixed by the spec.
    public static let payloadSize = 32

    static func register(on host: PunchHost) {
        host.setStreamHandler(for: protocolID) { stream in
            try await serve(stream)
        }
    }

    /// Echoes every whole 32-byte payload until the peer closes. Holds at most one partial payload
    /// plus one received chunk.
    static func serve(_ stream: HostStream) async throws {
        try await stream.channel.executeThenClose { inbound, outbound in
            var pending = ByteBuffer()
            for try await var chunk in inbound {
                pending.writeBuffer(&chunk)
                while let payload = pending.readSlice(length: payloadSize) {
                    try await outbound.write(payload)
                }
                pending.discardReadBytes()
            }
        }
    }
}

extension Connection {
    /// Pings the peer `count` times on one `/ipfs/ping/1.0.0` stream.
    ///
    /// - Returns: the round-trip time of each ping.
    /// - Throws: ``TransportError`` `.pingFailed` when an answer differs from what was sent or the
    ///   stream ends early; stream-opening errors such as `.multistreamNoProtocol`.
    public func ping(count: Int = 1) async throws -> [Duration] {
        precondition(count > 0, "ping at least once")
        let stream = try await openStream(protocol: Ping.protocolID)
        return try await stream.channel.executeThenClose { inbound, outbound in
            var iterator = inbound.makeAsyncIterator()
            var received = ByteBuffer()
            var times: [Duration] = []
            let clock = ContinuousClock()
            for _ in 0..<count {
                var generator = SystemRandomNumberGenerator()
                let payload = (0..<Ping.payloadSize).map { _ in UInt8.random(in: 0...255, using: &generator) }
                let start = clock.now
                try await outbound.write(ByteBuffer(bytes: payload))
                while received.readableBytes < Ping.payloadSize {
                    guard var chunk = try await iterator.next() else {
                        throw TransportError(.pingFailed, "the peer closed the ping stream before answering")
                    }
                    received.writeBuffer(&chunk)
                }
                let answer = received.readBytes(length: Ping.payloadSize)!
                received.discardReadBytes()
                times.append(clock.now - start)
                guard answer == payload else {
                    throw TransportError(.pingFailed, "the ping answer differs from the payload sent")
                }
            }
            outbound.finish()
            return times
        }
    }
}
