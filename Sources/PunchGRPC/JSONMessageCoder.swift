// Codable messages as JSON: gRPC without generated code, for examples and tests.

public import GRPCCore
import Foundation

/// Serializes and deserializes `Message` as JSON, so a service can be written by hand with
/// `Codable` types instead of generated protobuf code (the example application does).
/// Any gRPC serializer works with the Punch transports; this is only the shortest.
public struct JSONMessageCoder<Message: Codable & Sendable>: MessageSerializer, MessageDeserializer {
    public init() {}

    public func serialize<Bytes: GRPCContiguousBytes>(_ message: Message) throws -> Bytes {
        Bytes(try JSONEncoder().encode(message))
    }

    public func deserialize<Bytes: GRPCContiguousBytes>(_ serializedMessageBytes: Bytes) throws -> Message {
        do {
            return try serializedMessageBytes.withUnsafeBytes { try JSONDecoder().decode(Message.self, from: Data($0)) }
        } catch {
            throw RPCError(code: .invalidArgument, message: "not a JSON \(Message.self): \(error)", cause: error)
        }
    }
}
