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
        var peek = buffer
        guard
            let (version, rawType, rawFlags, streamID, length) = peek.readMultipleIntegers(
                as: (UInt8, UInt8, UInt16, UInt32, UInt32).self
            )
        else {
            return nil
        }
        guard version == Self.version else {
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
        var payload = ByteBuffer()
        if type == .data {
            guard length <= maximumDataLength else {
                throw TransportError(
                    .yamuxFrameTooLarge,
                    "the peer announced a \(length)-byte Data frame on stream \(streamID); no receive window here exceeds \(maximumDataLength) bytes"
                )
            }
            guard let slice = peek.readSlice(length: Int(length)) else {
                return nil
            }
            payload = slice
        }
        buffer = peek
        return YamuxFrame(type: type, flags: Flags(rawValue: rawFlags), streamID: streamID, length: length, payload: payload)
    }
}
