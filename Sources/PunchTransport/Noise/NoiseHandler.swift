import NIOCore
import PunchCrypto

/// Secures a channel with libp2p Noise (libp2p/specs noise/README.md): runs the XX handshake,
/// then encrypts what is written and decrypts what is read.
///
/// Add it once `/noise` has been negotiated. The handshake starts when the handler is added to an
/// active channel (or when the channel becomes active); on success the handler fires
/// ``NoiseHandshakeCompleted`` as a user inbound event. Writes made before that are held back
/// (up to ``Configuration/maximumBufferedPlaintextBeforeHandshake`` bytes) and sent right after.
///
/// ```swift
/// try channel.pipeline.syncOperations.addHandler(
///     NoiseHandler(role: .initiator, localKey: key, expectedRemotePeerID: peer))
/// ```
///
/// Writes are coalesced until `flush` into transport messages of at most 65519 plaintext bytes
/// (65535 with the tag); a large write is encrypted straight from its buffer.
///
/// Any failure (a message that does not authenticate, a bad signature, an unexpected PeerID, a
/// malformed or oversized frame, the handshake timeout) fires a ``TransportError`` through
/// `errorCaught` and closes the channel.
public final class NoiseHandler: ChannelDuplexHandler, RemovableChannelHandler {
    /// Ciphertext from the network.
    public typealias InboundIn = ByteBuffer
    /// Plaintext to the next handler.
    public typealias InboundOut = ByteBuffer
    /// Plaintext from the next handler.
    public typealias OutboundIn = ByteBuffer
    /// Ciphertext to the network.
    public typealias OutboundOut = ByteBuffer

    private enum Phase {
        case idle
        case handshaking
        case established
        case failed(TransportError)
        case closed
    }

    private let configuration: Configuration
    private var handshake: LibP2PNoiseHandshake
    private var transport: NoiseTransportState?
    private var phase = Phase.idle
    private var timeout: Scheduled<Void>?

    /// The frame being received; created when the handler is added.
    private var assembler: NoiseFrameAssembler?
    /// Reads that arrived while an outer `channelRead` was still processing, oldest first.
    private var reentrantReads: [ByteBuffer] = []
    /// Whether `channelRead` is already processing further up the stack.
    private var isProcessingInbound = false

    /// Writes held back until the handshake completes.
    private var writesBeforeHandshake: [(data: ByteBuffer, promise: EventLoopPromise<Void>?)] = []
    private var bytesBeforeHandshake = 0
    /// Plaintext written since the last frame, waiting for a flush or for a full frame.
    /// Plaintext written since the last frame, waiting for a flush or for a full frame, oldest
    /// first: slices of the writes themselves (no copy), except that writes smaller than
    /// ``copiedWriteLimit`` are copied into a small buffer of their own.
    private var pendingParts = CircularBuffer<ByteBuffer>(initialCapacity: 4)
    /// Bytes in `pendingParts`.
    private var pendingCount = 0
    /// Whether the last of `pendingParts` is a buffer this handler allocated (small writes join it).
    private var lastPartIsOwned = false
    /// Writes smaller than this are copied rather than kept as slices, so many small writes (yamux
    /// headers, say) neither pin many buffers nor make many parts to seal.
    static let copiedWriteLimit = 1024
    /// Promises of writes whose bytes are (partly) in `pendingParts`, oldest first.
    private var pendingPromises: [EventLoopPromise<Void>] = []

    /// Creates a handler.
    ///
    /// - Parameters:
    ///   - role: `.initiator` on the dialing side, `.responder` on the listening side.
    ///   - localKey: this node's identity key.
    ///   - expectedRemotePeerID: the PeerID the remote must prove; a dialer always passes it
    ///     (libp2p noise spec, "SecureOutbound"). `nil` accepts any authenticated peer.
    ///   - configuration: timeout, limits and muxers.
    public init(
        role: NoiseRole,
        localKey: PrivateKey,
        expectedRemotePeerID: PeerID? = nil,
        configuration: Configuration = Configuration()
    ) {
        self.configuration = configuration
        self.handshake = LibP2PNoiseHandshake(
            role: role, identity: localKey, expectedRemotePeerID: expectedRemotePeerID,
            configuration: .init(muxers: configuration.muxers))
    }

    // MARK: - Lifecycle

    /// Starts the handshake if the channel is already active.
    public func handlerAdded(context: ChannelHandlerContext) {
        assembler = NoiseFrameAssembler(allocator: context.channel.allocator)
        if context.channel.isActive {
            startHandshake(context: context)
        }
    }

    /// Fails held-back writes and stops the handshake timer.
    public func handlerRemoved(context: ChannelHandlerContext) {
        timeout?.cancel()
        timeout = nil
        failPendingWrites(with: ChannelError.ioOnClosedChannel)
    }

    /// Starts the handshake.
    public func channelActive(context: ChannelHandlerContext) {
        startHandshake(context: context)
        context.fireChannelActive()
    }

    /// Fails held-back writes; the connection is gone.
    public func channelInactive(context: ChannelHandlerContext) {
        timeout?.cancel()
        timeout = nil
        reentrantReads = []
        if case .failed(let error) = phase {
            failPendingWrites(with: error)
        } else {
            failPendingWrites(with: ChannelError.ioOnClosedChannel)
            phase = .closed
        }
        context.fireChannelInactive()
    }

    // MARK: - Inbound

    /// Reassembles frames from the ciphertext and processes each whole one.
    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var incoming = unwrapInboundIn(data)
        switch phase {
        case .failed, .closed:
            return
        case .idle:
            startHandshake(context: context)
        case .handshaking, .established:
            break
        }
        // A handler further down may cause another read while this one fires plaintext; keep
        // the order by letting the outer call process it.
        guard !isProcessingInbound else {
            reentrantReads.append(incoming)
            return
        }
        isProcessingInbound = true
        defer { isProcessingInbound = false }
        process(&incoming, context: context)
        while !reentrantReads.isEmpty {
            var next = reentrantReads.removeFirst()
            process(&next, context: context)
        }
    }

    /// Gives an idle connection's reassembly buffer back, then passes the event on.
    public func channelReadComplete(context: ChannelHandlerContext) {
        assembler?.releaseCapacityIfIdle(allocator: context.channel.allocator)
        context.fireChannelReadComplete()
    }

    private func process(_ incoming: inout ByteBuffer, context: ChannelHandlerContext) {
        while incoming.readableBytes > 0 {
            if decryptWholeFrameInPlace(&incoming, context: context) { continue }
            // The phase may change with every frame (the last handshake message is followed by
            // transport messages in the same read), so the limit is chosen per frame.
            let maximumLength: Int
            switch phase {
            case .handshaking:
                maximumLength = min(configuration.maximumHandshakeMessageLength, NoiseTransportState.maximumMessageLength)
            case .established:
                maximumLength = NoiseTransportState.maximumMessageLength
            case .idle, .failed, .closed:
                return
            }
            do {
                guard try assembler!.consume(&incoming, maximumLength: maximumLength) else { return }
            } catch {
                fail(error, context: context)
                return
            }
            if case .established = phase {
                decryptAndForward(context: context)
            } else {
                receiveHandshakeMessage(assembler!.message, context: context)
            }
            assembler?.reset()
        }
    }

    private func receiveHandshakeMessage(_ message: [UInt8], context: ChannelHandlerContext) {
        do {
            let action = try handshake.receive(message)
            perform(action, context: context)
        } catch {
            fail(error, context: context)
        }
    }

    private func decryptAndForward(context: ChannelHandlerContext) {
        do {
            let plaintext = try assembler!.withMessage { message in
                try decrypt(message, context: context)
            }
            forward(plaintext, context: context)
        } catch {
            fail(error, context: context)
        }
    }

    /// Decrypts one transport message straight into a new buffer for the next handler.
    private func decrypt(_ message: UnsafeRawBufferPointer, context: ChannelHandlerContext) throws -> ByteBuffer {
        let length = max(0, message.count - NoiseCipherState.tagLength)
        var plaintext = context.channel.allocator.buffer(capacity: length)
        try plaintext.writeWithUnsafeMutableBytes(minimumWritableBytes: length) { output in
            try transport!.receiver.decrypt(message, into: UnsafeMutableRawBufferPointer(rebasing: output[..<length]))
            return length
        }
        return plaintext
    }

    private func forward(_ plaintext: ByteBuffer, context: ChannelHandlerContext) {
        // An empty transport message carries nothing for the next handler.
        if plaintext.readableBytes > 0 {
            context.fireChannelRead(wrapInboundOut(plaintext))
        }
    }

    /// When `incoming` holds a whole transport frame at a frame boundary, decrypts it from where it
    /// lies (no reassembly copy) and returns `true`; otherwise leaves everything as it is.
    private func decryptWholeFrameInPlace(_ incoming: inout ByteBuffer, context: ChannelHandlerContext) -> Bool {
        guard case .established = phase, assembler?.isAtFrameBoundary == true,
            let length = incoming.getInteger(at: incoming.readerIndex, as: UInt16.self),
            incoming.readableBytes >= NoiseFrameAssembler.lengthFieldSize + Int(length)
        else { return false }
        // Every 16-bit length is within NoiseTransportState.maximumMessageLength (65535).
        do {
            let plaintext = try incoming.withUnsafeReadableBytes { bytes in
                try decrypt(
                    UnsafeRawBufferPointer(rebasing: bytes[NoiseFrameAssembler.lengthFieldSize..<(NoiseFrameAssembler.lengthFieldSize + Int(length))]),
                    context: context)
            }
            incoming.moveReaderIndex(forwardBy: NoiseFrameAssembler.lengthFieldSize + Int(length))
            forward(plaintext, context: context)
        } catch {
            fail(error, context: context)
        }
        return true
    }

    // MARK: - Outbound

    /// Holds plaintext back during the handshake; afterwards encrypts it into frames.
    public func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let buffer = unwrapOutboundIn(data)
        switch phase {
        case .idle, .handshaking:
            guard bytesBeforeHandshake + buffer.readableBytes <= configuration.maximumBufferedPlaintextBeforeHandshake else {
                let error = TransportError(
                    .noiseBufferLimitExceeded,
                    "more than \(configuration.maximumBufferedPlaintextBeforeHandshake) bytes were written before the Noise handshake completed; wait for NoiseHandshakeCompleted")
                promise?.fail(error)
                fail(error, context: context)
                return
            }
            writesBeforeHandshake.append((buffer, promise))
            bytesBeforeHandshake += buffer.readableBytes
        case .established:
            encryptAndWrite(buffer, promise: promise, context: context)
        case .failed(let error):
            promise?.fail(error)
        case .closed:
            promise?.fail(ChannelError.ioOnClosedChannel)
        }
    }

    /// Sends the pending plaintext as a frame and flushes. During the handshake there is nothing to
    /// flush yet: everything held back is flushed as soon as the handshake completes.
    public func flush(context: ChannelHandlerContext) {
        guard case .established = phase else { return }
        emitPendingPlaintext(context: context)
        context.flush()
    }

    /// Encrypts `data` into as many full frames as it fills and keeps the remainder pending.
    ///
    /// A frame is sealed from the pending parts and the head of `data` in one pass (multi-part
    /// ChaCha20-Poly1305), so a write is never copied to be framed: with yamux, a pending
    /// 12-byte header and the payload written after it become one frame.
    private func encryptAndWrite(_ data: ByteBuffer, promise: EventLoopPromise<Void>?, context: ChannelHandlerContext) {
        let frameCapacity = NoiseTransportState.maximumPlaintextLength
        var data = data
        var promise = promise
        do {
            while pendingCount + data.readableBytes >= frameCapacity {
                let body = data.readSlice(length: frameCapacity - pendingCount)!
                if data.readableBytes == 0, let last = promise {
                    // This write ends with the frame: its promise completes with it.
                    pendingPromises.append(last)
                    promise = nil
                }
                try writePendingFrame(with: body, context: context)
            }
            if data.readableBytes > 0 {
                appendPending(&data, context: context)
            }
            if let promise { pendingPromises.append(promise) }
        } catch {
            promise?.fail(error)
            fail(error, context: context)
        }
    }

    /// Keeps `data` for the next frame: as a slice, or copied when small.
    private func appendPending(_ data: inout ByteBuffer, context: ChannelHandlerContext) {
        pendingCount += data.readableBytes
        if data.readableBytes >= Self.copiedWriteLimit {
            pendingParts.append(data)
            lastPartIsOwned = false
        } else if lastPartIsOwned {
            // Mutated in place: the circular buffer holds the only reference, so nothing is copied
            // but `data`.
            pendingParts[pendingParts.index(before: pendingParts.endIndex)].writeBuffer(&data)
        } else {
            var owned = context.channel.allocator.buffer(capacity: max(data.readableBytes, 256))
            owned.writeBuffer(&data)
            pendingParts.append(owned)
            lastPartIsOwned = true
        }
    }

    /// Encrypts the pending plaintext, if any, into one frame; completes zero-byte writes otherwise.
    private func emitPendingPlaintext(context: ChannelHandlerContext) {
        do {
            if pendingCount > 0 {
                try writePendingFrame(with: nil, context: context)
            } else if !pendingPromises.isEmpty {
                // Only empty writes are waiting: let them complete in order with the frames before them.
                context.write(wrapOutboundOut(context.channel.allocator.buffer(capacity: 0)), promise: takePendingPromises(context: context))
            }
        } catch {
            fail(error, context: context)
        }
    }

    /// Seals the pending parts followed by `body` as one frame, with the pending promises.
    private func writePendingFrame(with body: ByteBuffer?, context: ChannelHandlerContext) throws {
        let parts = pendingParts
        let count = pendingCount + (body?.readableBytes ?? 0)
        pendingParts.removeAll(keepingCapacity: true)
        pendingCount = 0
        lastPartIsOwned = false
        try writeFrame(plaintextCount: count, promise: takePendingPromises(context: context), context: context) { feed in
            for part in parts {
                try part.withUnsafeReadableBytes { try feed($0) }
            }
            if let body {
                try body.withUnsafeReadableBytes { try feed($0) }
            }
        }
    }

    /// One promise that completes every pending write's promise.
    private func takePendingPromises(context: ChannelHandlerContext) -> EventLoopPromise<Void>? {
        defer { pendingPromises.removeAll(keepingCapacity: true) }
        switch pendingPromises.count {
        case 0:
            return nil
        case 1:
            return pendingPromises[0]
        default:
            let combined = context.eventLoop.makePromise(of: Void.self)
            for promise in pendingPromises {
                combined.futureResult.cascade(to: promise)
            }
            return combined
        }
    }

    /// Writes one transport frame: length prefix, ciphertext, tag. The plaintext is
    /// `plaintextCount` bytes that `parts` feeds in order. Completes `promise` either way: with the
    /// write, or failed with the encryption error it rethrows.
    private func writeFrame(
        plaintextCount: Int, promise: EventLoopPromise<Void>?, context: ChannelHandlerContext,
        parts: (_ feed: (UnsafeRawBufferPointer) throws -> Void) throws -> Void
    ) throws {
        let messageLength = plaintextCount + NoiseCipherState.tagLength
        var frame = context.channel.allocator.buffer(capacity: NoiseFrameAssembler.lengthFieldSize + messageLength)
        frame.writeInteger(UInt16(messageLength))
        do {
            // Sealed straight into the frame: no intermediate buffer.
            try frame.writeWithUnsafeMutableBytes(minimumWritableBytes: messageLength) { output in
                try transport!.sender.encrypt(
                    plaintextCount: plaintextCount, into: UnsafeMutableRawBufferPointer(rebasing: output[..<messageLength]), parts: parts)
                return messageLength
            }
        } catch {
            promise?.fail(error)
            throw error
        }
        context.write(wrapOutboundOut(frame), promise: promise)
    }

    // MARK: - Handshake

    private func startHandshake(context: ChannelHandlerContext) {
        guard case .idle = phase else { return }
        phase = .handshaking
        let limit = configuration.handshakeTimeout
        timeout = context.eventLoop.assumeIsolated().scheduleTask(in: limit) {
            self.fail(
                TransportError(.noiseHandshakeTimeout, "the Noise handshake did not complete within \(limit)"),
                context: context)
        }
        do {
            perform(try handshake.start(), context: context)
        } catch {
            fail(error, context: context)
        }
    }

    private func perform(_ action: LibP2PNoiseHandshake.Action, context: ChannelHandlerContext) {
        switch action {
        case .wait:
            break
        case .send(let message):
            writeHandshakeMessage(message, context: context)
            context.flush()
        case .sendAndComplete(let message, let outcome):
            // The initiator's first transport frames follow message 3 in the same flush, as the
            // spec suggests ("Handshake Pattern": amortizing the final message).
            writeHandshakeMessage(message, context: context)
            complete(outcome, context: context)
        case .complete(let outcome):
            complete(outcome, context: context)
        }
    }

    private func writeHandshakeMessage(_ message: [UInt8], context: ChannelHandlerContext) {
        var frame = context.channel.allocator.buffer(capacity: NoiseFrameAssembler.lengthFieldSize + message.count)
        frame.writeInteger(UInt16(message.count))
        frame.writeBytes(message)
        context.write(wrapOutboundOut(frame), promise: nil)
    }

    private func complete(_ outcome: LibP2PNoiseHandshake.Outcome, context: ChannelHandlerContext) {
        timeout?.cancel()
        timeout = nil
        transport = outcome.transport
        phase = .established

        // Encrypt the held-back writes before announcing completion, so that anything the next
        // handler writes in response to the event follows them.
        let heldBack = writesBeforeHandshake
        writesBeforeHandshake = []
        bytesBeforeHandshake = 0
        for (data, promise) in heldBack {
            encryptAndWrite(data, promise: promise, context: context)
        }
        guard case .established = phase else { return }

        context.fireUserInboundEventTriggered(
            NoiseHandshakeCompleted(
                remotePeerID: outcome.remotePeerID, remotePublicKey: outcome.remotePublicKey,
                negotiatedMuxer: outcome.negotiatedMuxer))
        guard case .established = phase else { return }
        emitPendingPlaintext(context: context)
        context.flush()
    }

    // MARK: - Failure

    private func fail(_ error: any Error, context: ChannelHandlerContext) {
        switch phase {
        case .failed, .closed:
            return
        case .idle, .handshaking, .established:
            break
        }
        let transportError = TransportError(noise: error)
        phase = .failed(transportError)
        timeout?.cancel()
        timeout = nil
        reentrantReads = []
        failPendingWrites(with: transportError)
        context.fireErrorCaught(transportError)
        context.close(promise: nil)
    }

    private func failPendingWrites(with error: any Error) {
        let heldBack = writesBeforeHandshake
        writesBeforeHandshake = []
        bytesBeforeHandshake = 0
        let promises = pendingPromises
        pendingPromises = []
        pendingParts.removeAll()
        pendingCount = 0
        lastPartIsOwned = false
        for (_, promise) in heldBack {
            promise?.fail(error)
        }
        for promise in promises {
            promise.fail(error)
        }
    }
}

@available(*, unavailable)
extension NoiseHandler: Sendable {}
