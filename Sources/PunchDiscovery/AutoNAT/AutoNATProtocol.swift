import Foundation
import NIOConcurrencyHelpers
import NIOCore
import PunchTransport
import PunchWire
import SwiftProtobuf

/// AutoNAT v2's protocol identifiers and the constants the spec fixes
/// (libp2p/specs autonat/autonat-v2.md).
public enum AutoNATProtocol {
    /// The stream a client opens to ask for a dial: `DialRequest`, `DialDataRequest`,
    /// `DialDataResponse` and `DialResponse`, each wrapped in `Message` ("RPC Messages").
    public static let dialRequest = "/libp2p/autonat/2/dial-request"
    /// The stream the server opens on its dial-back connection: `DialBack`, `DialBackResponse`.
    public static let dialBack = "/libp2p/autonat/2/dial-back"
    /// The most `data` bytes in one `DialDataResponse` ("Amplification Attack Prevention").
    public static let maximumDialDataChunk = 4096
    /// The least dial data a server should ask for: 30 kB ("Servers SHOULD ask for 30k to 100k
    /// bytes").
    public static let minimumDialDataRequest = 30_000
    /// The most dial data a server should ask for: 100 kB.
    public static let maximumDialDataRequest = 100_000
}

extension Multiaddr {
    /// The IP address of `/ip4|ip6/A/…`, or `nil`.
    var ipAddress: IPAddress? {
        guard let transport, case .ip(let ip) = transport.host else { return nil }
        return ip
    }
}

enum AutoNATFraming {
    static func frame(_ message: some SwiftProtobuf.Message) throws -> ByteBuffer {
        var buffer = ByteBuffer()
        try ProtobufFraming.writeDelimited(message, into: &buffer)
        return buffer
    }

    static func message(_ body: PBAutoNATv2Message.OneOf_Msg) throws -> ByteBuffer {
        var message = PBAutoNATv2Message()
        message.msg = body
        return try frame(message)
    }
}

/// Reads varint-delimited AutoNAT v2 messages from a stream (``DelimitedMessageReader``), each
/// within a size bound and a time limit: a message that does not arrive within `timeout` closes
/// the stream.
struct AutoNATMessageReader<Message: SwiftProtobuf.Message> {
    private var reader: DelimitedMessageReader<Message>

    init(_ stream: HostStream, inbound: NIOAsyncChannelInboundStream<ByteBuffer>, maximumLength: Int, timeout: TimeAmount) {
        reader = DelimitedMessageReader(inbound, channel: stream.channel.channel, maximumLength: maximumLength, timeout: timeout)
    }

    /// The next message.
    ///
    /// - Throws: ``DiscoveryError`` `.autonatMessageTooLarge`, `.autonatMalformedMessage`,
    ///   `.autonatTimeout`, `.autonatStreamClosed`.
    mutating func next() async throws -> Message {
        do {
            return try await reader.next()
        } catch .malformed(let error) {
            throw Self.error(error, maximumLength: reader.maximumLength)
        } catch .timedOut {
            throw DiscoveryError(.autonatTimeout, "no AutoNAT message arrived within \(reader.timeout)")
        } catch .ended {
            throw DiscoveryError(.autonatStreamClosed, "the AutoNAT stream ended")
        }
    }

    static func error(_ error: any Error, maximumLength: Int) -> DiscoveryError {
        if let error = error as? WireError, error.code == .tooLarge {
            return DiscoveryError(.autonatMessageTooLarge, "an AutoNAT message is over \(maximumLength) bytes: \(error)")
        }
        return DiscoveryError(.autonatMalformedMessage, "an AutoNAT message is malformed: \(error)")
    }

    /// Decodes one delimited message, or `nil` when the buffer does not hold a whole one yet.
    static func decode(from buffer: inout ByteBuffer, maximumLength: Int) throws -> Message? {
        do {
            return try ProtobufFraming.readDelimited(Message.self, from: &buffer, maximumLength: maximumLength)
        } catch {
            throw Self.error(error, maximumLength: maximumLength)
        }
    }
}
