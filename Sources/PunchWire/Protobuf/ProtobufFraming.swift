import NIOCore
import SwiftProtobuf

/// Decoding and framing of libp2p's protobuf messages, with bounded sizes and ``WireError``s.
///
/// libp2p sends its RPC messages (identify, Circuit Relay v2, DCUtR, AutoNAT v2) as a varint
/// length followed by the protobuf bytes. These functions are the one place where Punch turns
/// bytes into generated `PB…` messages, so every decode path is bounded and fuzzed the same way.
public enum ProtobufFraming {
    /// Decodes one message that fills `bytes` exactly.
    ///
    /// - Parameters:
    ///   - type: the generated message type, such as `PBIdentify.self`.
    ///   - bytes: the serialized message, without a length prefix.
    ///   - maximumLength: the largest input accepted; checked before decoding.
    /// - Returns: the message.
    /// - Throws: ``WireError`` `.tooLarge`, or `.malformedProtobuf` when the bytes do not decode or
    ///   a required field is missing.
    public static func decode<Message: SwiftProtobuf.Message>(
        _ type: Message.Type,
        from bytes: some Collection<UInt8>,
        maximumLength: Int
    ) throws -> Message {
        guard bytes.count <= maximumLength else {
            throw WireError(.tooLarge, "\(Message.protoMessageName) of \(bytes.count) bytes exceeds the maximum of \(maximumLength)")
        }
        do {
            return try Message(serializedBytes: Array(bytes))
        } catch {
            throw WireError(.malformedProtobuf, "\(Message.protoMessageName) does not decode: \(error)")
        }
    }

    /// Reads one varint-length-prefixed message, moving the reader index only when it was whole.
    ///
    /// - Returns: the message, or `nil` if the buffer does not yet hold the whole frame.
    /// - Throws: ``WireError``; the reader index is then unchanged.
    public static func readDelimited<Message: SwiftProtobuf.Message>(
        _ type: Message.Type,
        from buffer: inout ByteBuffer,
        maximumLength: Int
    ) throws -> Message? {
        var copy = buffer
        guard let frame = try copy.readLengthPrefixedMessage(maximumLength: maximumLength) else { return nil }
        let message = try decode(type, from: frame.readableBytesView, maximumLength: maximumLength)
        buffer = copy
        return message
    }

    /// The serialized bytes of `message`.
    ///
    /// - Throws: ``WireError`` `.malformedProtobuf` if a proto2 required field is unset (a bug in
    ///   the caller, reported rather than sent).
    public static func encode(_ message: some SwiftProtobuf.Message) throws -> [UInt8] {
        do {
            return try message.serializedBytes()
        } catch {
            throw WireError(.malformedProtobuf, "\(type(of: message).protoMessageName) does not encode: \(error)")
        }
    }

    /// Writes `message` with a varint length prefix.
    ///
    /// - Returns: the number of bytes written.
    /// - Throws: ``WireError`` `.malformedProtobuf` as ``encode(_:)``.
    @discardableResult
    public static func writeDelimited(_ message: some SwiftProtobuf.Message, into buffer: inout ByteBuffer) throws -> Int {
        let bytes = try encode(message)
        return buffer.writeVarint(UInt64(bytes.count)) + buffer.writeBytes(bytes)
    }
}
