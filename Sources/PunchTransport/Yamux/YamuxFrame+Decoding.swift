import NIOCore

extension YamuxFrame {
    /// Reads one whole frame from the front of `buffer`.
    ///
    /// The header is validated as soon as its 12 bytes are present, so a bad version, an unknown
    /// type or an oversized Data frame is reported without waiting for (or buffering) a payload.
    /// The payload of a Data frame is a slice of `buffer`: no bytes are copied.
    /// - Parameters:
    ///   - buffer: the received bytes; the reader index moves past the frame only on success.
    ///   - maximumDataLength: the largest Data payload accepted. A Data frame larger than every
    ///     receive window this side grants can never be legal (yamux spec, "Flow Control").
    /// - Returns: the frame, or `nil` if `buffer` does not yet hold all of it.
    /// - Throws: ``TransportError`` `.yamuxInvalidVersion`, `.yamuxInvalidFrameType` or
    ///   `.yamuxFrameTooLarge`; the reader index is unchanged.
    public static func decode(from buffer: inout ByteBuffer, maximumDataLength: UInt32) throws(TransportError) -> YamuxFrame? {
        guard let header = try Header.peek(in: buffer, maximumDataLength: maximumDataLength) else {
            return nil
        }
        var payload = ByteBuffer()
        if header.type == .data {
            guard let slice = buffer.getSlice(at: buffer.readerIndex + Self.headerLength, length: Int(header.length)) else {
                return nil
            }
            payload = slice
        }
        buffer.moveReaderIndex(forwardBy: Self.headerLength + payload.readableBytes)
        return YamuxFrame(type: header.type, flags: header.flags, streamID: header.streamID, length: header.length, payload: payload)
    }

    /// The fields of a frame header, validated.
    struct Header: Hashable, Sendable {
        var type: FrameType
        var flags: Flags
        var streamID: UInt32
        var length: UInt32

        /// Reads and validates the header at the front of `buffer` without consuming anything.
        /// - Returns: the header, or `nil` if fewer than 12 bytes are present.
        /// - Throws: as ``YamuxFrame/decode(from:maximumDataLength:)``.
        static func peek(in buffer: ByteBuffer, maximumDataLength: UInt32) throws(TransportError) -> Header? {
            var peek = buffer
            guard
                let (version, rawType, rawFlags, streamID, length) = peek.readMultipleIntegers(
                    as: (UInt8, UInt8, UInt16, UInt32, UInt32).self
                )
            else {
                return nil
            }
            guard version == YamuxFrame.version else {
                throw TransportError(
                    .yamuxInvalidVersion,
                    "the peer sent a yamux frame with version \(version); only version 0 exists"
                )
            }
            guard let type = FrameType(rawValue: rawType) else {
                throw TransportError(
                    .yamuxInvalidFrameType,
                    "the peer sent a yamux frame of unknown type \(rawType); types 0 to 3 exist"
                )
            }
            if type == .data, length > maximumDataLength {
                throw TransportError(
                    .yamuxFrameTooLarge,
                    "the peer announced a \(length)-byte Data frame on stream \(streamID); no receive window here exceeds \(maximumDataLength) bytes"
                )
            }
            return Header(type: type, flags: Flags(rawValue: rawFlags), streamID: streamID, length: length)
        }
    }
}
