import NIOCore

/// Punch's echo protocol (`/punch/echo/1.0.0`): the listener writes back every byte it reads
/// until the dialer half-closes, then closes. `punch listen` serves it and `punch dial` uses it
/// to prove a path carries data intact.
public enum Echo {
    /// The protocol id.
    public static let protocolID = "/punch/echo/1.0.0"
    /// The size of the chunks the client writes.
    public static let chunkSize = 64 * 1024

    /// What one echo exchange measured.
    public struct Result: Sendable, Hashable {
        /// Bytes sent, and received back intact.
        public var bytes: Int
        /// From the first byte written to the last byte read back.
        public var duration: Duration
        /// The stream's receive window on this side when the echo ended (auto-tuning grows it
        /// while the window limits the transfer); 0 if it could not be read.
        public var receiveWindow: Int = 0

        /// Bytes per second in each direction.
        public var bytesPerSecond: Double {
            let seconds = Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
            return seconds > 0 ? Double(bytes) / seconds : 0
        }
    }

    /// Serves the echo protocol on `host`; `onFinished` learns of each completed exchange.
    public static func register(on host: PunchHost, onFinished: (@Sendable (HostStream, Int) -> Void)? = nil) {
        host.setStreamHandler(for: protocolID) { stream in
            let count = try await serve(stream)
            onFinished?(stream, count)
        }
    }

    /// Writes back what arrives until the peer's FIN, then half-closes. Returns the byte count.
    public static func serve(_ stream: HostStream) async throws -> Int {
        try await stream.channel.executeThenClose { inbound, outbound in
            var count = 0
            for try await chunk in inbound {
                count += chunk.readableBytes
                try await outbound.write(chunk)
            }
            outbound.finish()
            return count
        }
    }

    /// A deterministic byte stream (SplitMix64) so the reader can check the echo without keeping
    /// a copy of everything sent.
    struct PatternStream {
        private var state: UInt64
        init(seed: UInt64) { state = seed }

        mutating func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }

        mutating func fill(_ buffer: inout ByteBuffer, count: Int) {
            buffer.reserveCapacity(minimumWritableBytes: count + 8)
            var remaining = count
            while remaining >= 8 {
                buffer.writeInteger(next(), as: UInt64.self)
                remaining -= 8
            }
            if remaining > 0 {
                let word = next()
                for index in 0..<remaining { buffer.writeInteger(UInt8(truncatingIfNeeded: word >> (8 * index))) }
            }
        }
    }
}

extension TransportError.Code {
    /// The echo came back different from what was sent, or short.
    public static let echoMismatch = Self("echo.mismatch")
}

extension Connection {
    /// Sends `bytes` pseudo-random bytes on `/punch/echo/1.0.0`, half-closes, and checks that
    /// exactly the same bytes come back.
    ///
    /// - Throws: ``TransportError`` `.echoMismatch`, or stream errors.
    public func echo(bytes: Int) async throws -> Echo.Result {
        precondition(bytes >= 0, "a byte count cannot be negative")
        let stream = try await openStream(protocol: Echo.protocolID)
        let seed = UInt64.random(in: 0...UInt64.max)
        let clock = ContinuousClock()
        let start = clock.now
        let allocator = channel.allocator
        let receiveWindow = try await stream.channel.executeThenClose { inbound, outbound in
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask {
                    var pattern = Echo.PatternStream(seed: seed)
                    var sent = 0
                    while sent < bytes {
                        let size = min(Echo.chunkSize, bytes - sent)
                        // Whole 8-byte words keep the pattern aligned between writer and reader.
                        var chunk = allocator.buffer(capacity: size)
                        pattern.fill(&chunk, count: size)
                        try await outbound.write(chunk)
                        let before = sent
                        sent += size
                        if before / HostStream.writerCatchUpInterval != sent / HostStream.writerCatchUpInterval {
                            try await stream.waitForWriterToCatchUp()
                        }
                    }
                    outbound.finish()
                }
                group.addTask {
                    var expected = Echo.PatternStream(seed: seed)
                    var reference = ByteBuffer()
                    var received = 0
                    for try await chunk in inbound {
                        guard received + chunk.readableBytes <= bytes else {
                            throw TransportError(.echoMismatch, "the echo returned more than the \(bytes) bytes sent")
                        }
                        // Regenerate the same pattern in the writer's chunking.
                        while reference.readableBytes < chunk.readableBytes {
                            let offset = received + reference.readableBytes
                            let size = min(Echo.chunkSize, bytes - offset)
                            reference.discardReadBytes()
                            expected.fill(&reference, count: size)
                        }
                        guard reference.readSlice(length: chunk.readableBytes) == chunk else {
                            throw TransportError(.echoMismatch, "the echo differs from what was sent after \(received) bytes")
                        }
                        received += chunk.readableBytes
                    }
                    guard received == bytes else {
                        throw TransportError(.echoMismatch, "the echo ended after \(received) of \(bytes) bytes")
                    }
                }
                try await group.waitForAll()
            }
            return (try? await stream.channel.channel.getOption(YamuxChannelOptions.receiveWindow).get()) ?? 0
        }
        return Echo.Result(bytes: bytes, duration: clock.now - start, receiveWindow: receiveWindow)
    }
}
