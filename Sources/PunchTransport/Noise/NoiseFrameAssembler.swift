import NIOCore
import PunchCrypto

/// Reassembles libp2p Noise frames from reads of any size (libp2p noise spec, "Wire Format":
/// a 16-bit big-endian length, then that many bytes of Noise message).
///
/// A frame that arrives whole in one read is decrypted where it lies (see `NoiseHandler`); the
/// assembler collects only frames split across reads, into one reusable buffer. It takes from the caller's buffer only the bytes of the frame in progress, so
/// the next frame's bytes stay where they are, and a frame split across reads is completed by the
/// next ones: no byte is lost or read twice, whatever the read boundaries.
struct NoiseFrameAssembler {
    /// Bytes of the length prefix.
    static let lengthFieldSize = 2
    /// Capacity above which an idle assembler gives its buffer back (see ``releaseCapacityIfIdle()``).
    static let idleCapacity = 1024

    private enum State {
        /// At a frame boundary.
        case awaitingLength
        /// The first byte of the length prefix arrived without the second.
        case awaitingSecondLengthByte(UInt8)
        /// Collecting a message of `length` bytes.
        case collecting(length: Int)
        /// A whole message is in the buffer; the caller must ``reset()`` before the next.
        case complete
    }

    private var state = State.awaitingLength
    private var buffer: ByteBuffer

    /// Creates an assembler that allocates from `allocator`.
    init(allocator: ByteBufferAllocator) {
        buffer = allocator.buffer(capacity: Self.idleCapacity)
    }

    /// Whether no frame is in progress (the next byte starts a length prefix).
    var isAtFrameBoundary: Bool {
        if case .awaitingLength = state { return true }
        return false
    }

    /// Whether a whole message is ready.
    var isComplete: Bool {
        if case .complete = state { return true }
        return false
    }

    /// Moves bytes of the frame in progress from `incoming` into the assembler.
    ///
    /// - Parameters:
    ///   - incoming: received bytes; only the current frame's bytes are read from it.
    ///   - maximumLength: the largest message accepted now, checked as soon as the length prefix
    ///     has arrived, before any of the message.
    /// - Returns: `true` when a whole message is ready: process it, then call ``reset()``.
    /// - Throws: ``TransportError`` `.noiseFrameTooLarge`.
    mutating func consume(_ incoming: inout ByteBuffer, maximumLength: Int) throws -> Bool {
        while true {
            switch state {
            case .complete:
                return true
            case .awaitingLength:
                if let length = incoming.readInteger(as: UInt16.self) {
                    try begin(length: Int(length), maximumLength: maximumLength)
                } else if let first = incoming.readInteger(as: UInt8.self) {
                    state = .awaitingSecondLengthByte(first)
                    return false
                } else {
                    return false
                }
            case .awaitingSecondLengthByte(let first):
                guard let second = incoming.readInteger(as: UInt8.self) else { return false }
                try begin(length: Int(first) << 8 | Int(second), maximumLength: maximumLength)
            case .collecting(let length):
                let missing = length - buffer.readableBytes
                if missing > 0 {
                    guard incoming.readableBytes > 0 else { return false }
                    var part = incoming.readSlice(length: min(missing, incoming.readableBytes))!
                    buffer.writeBuffer(&part)
                }
                if buffer.readableBytes == length {
                    state = .complete
                }
            }
        }
    }

    private mutating func begin(length: Int, maximumLength: Int) throws {
        guard length <= maximumLength else {
            throw TransportError(
                .noiseFrameTooLarge,
                "a Noise frame announces \(length) bytes, more than the \(maximumLength) allowed now; the peer does not speak libp2p Noise")
        }
        buffer.reserveCapacity(minimumWritableBytes: length)
        state = .collecting(length: length)
    }

    /// The whole message, copied out (for the small handshake messages).
    var message: [UInt8] {
        precondition(isComplete, "no whole Noise message is ready")
        return buffer.getBytes(at: buffer.readerIndex, length: buffer.readableBytes)!
    }

    /// Lends the whole message to `body`.
    func withMessage<Result>(_ body: (UnsafeRawBufferPointer) throws -> Result) rethrows -> Result {
        precondition(isComplete, "no whole Noise message is ready")
        return try buffer.withUnsafeReadableBytes(body)
    }

    /// Discards the processed message and waits for the next frame, keeping the buffer's storage.
    mutating func reset() {
        buffer.clear()
        state = .awaitingLength
    }

    /// Shrinks a large buffer back when no frame is in progress, so an idle connection does not
    /// hold 64 KiB.
    mutating func releaseCapacityIfIdle(allocator: ByteBufferAllocator) {
        guard case .awaitingLength = state, buffer.capacity > Self.idleCapacity else { return }
        buffer = allocator.buffer(capacity: Self.idleCapacity)
    }
}
