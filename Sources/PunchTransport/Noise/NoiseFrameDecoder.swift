import NIOCore

/// The libp2p Noise framing (libp2p noise spec, "Wire Format"): every Noise message is preceded
/// by its length as a 16-bit big-endian integer.
enum NoiseFrameDecoder {
    /// Bytes of the length prefix.
    static let lengthFieldSize = 2

    /// Reads one whole frame, moving the reader index only when the frame is complete.
    ///
    /// - Parameters:
    ///   - buffer: the received bytes.
    ///   - maximumLength: the largest message accepted in the current phase; checked as soon as
    ///     the length prefix has arrived, before waiting for the body.
    /// - Returns: the message without its prefix, or `nil` if the buffer does not yet hold it.
    /// - Throws: ``TransportError`` `.noiseFrameTooLarge`; the reader index is then unchanged.
    static func decode(_ buffer: inout ByteBuffer, maximumLength: Int) throws -> ByteBuffer? {
        guard let length = buffer.getInteger(at: buffer.readerIndex, as: UInt16.self).map(Int.init) else {
            return nil
        }
        guard length <= maximumLength else {
            throw TransportError(
                .noiseFrameTooLarge,
                "a Noise frame announces \(length) bytes, more than the \(maximumLength) allowed now; the peer does not speak libp2p Noise")
        }
        guard buffer.readableBytes >= lengthFieldSize + length else { return nil }
        buffer.moveReaderIndex(forwardBy: lengthFieldSize)
        return buffer.readSlice(length: length)
    }

    /// The number of bytes the frame at the buffer's reader index needs in total, if its length
    /// prefix has arrived; used to reserve room for a large frame arriving in pieces.
    static func bytesNeeded(for buffer: ByteBuffer) -> Int? {
        buffer.getInteger(at: buffer.readerIndex, as: UInt16.self).map { lengthFieldSize + Int($0) }
    }
}
