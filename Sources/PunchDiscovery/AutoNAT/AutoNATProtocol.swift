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

/// Where an IP address can be reached from, for the spec's "SHOULD NOT dial any private address".
enum AutoNATAddressScope: Equatable {
    case `public`
    /// RFC 1918, RFC 6598 (carrier-grade NAT), IPv6 unique-local.
    case `private`
    /// Loopback, unspecified, multicast, broadcast, link-local.
    case local

    init(_ address: IPAddress) {
        let bytes = address.bytes
        if address.isIPv4 {
            let (a, b) = (bytes[0], bytes[1])
            switch a {
            case 0, 127, 224...255: self = .local
            case 169 where b == 254: self = .local
            case 10: self = .private
            case 172 where (16...31).contains(b): self = .private
            case 192 where b == 168: self = .private
            case 100 where (64...127).contains(b): self = .private
            default: self = .public
            }
        } else if bytes.allSatisfy({ $0 == 0 }) || bytes == [UInt8](repeating: 0, count: 15) + [1] {
            self = .local
        } else if bytes[0] == 0xFF || (bytes[0] == 0xFE && bytes[1] & 0xC0 == 0x80) {
            self = .local
        } else if bytes[0] & 0xFE == 0xFC {
            self = .private
        } else {
            self = .public
        }
    }
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

/// Reads varint-delimited AutoNAT v2 messages from a stream, each within a size bound and a
/// time limit: a message that does not arrive within `timeout` closes the stream.
struct AutoNATMessageReader<Message: SwiftProtobuf.Message> {
    var iterator: NIOAsyncChannelInboundStream<ByteBuffer>.AsyncIterator
    var buffer = ByteBuffer()
    let maximumLength: Int
    let timeout: TimeAmount
    let channel: Channel
    let timedOut = NIOLockedValueBox(false)

    init(_ stream: HostStream, inbound: NIOAsyncChannelInboundStream<ByteBuffer>, maximumLength: Int, timeout: TimeAmount) {
        self.iterator = inbound.makeAsyncIterator()
        self.channel = stream.channel.channel
        self.maximumLength = maximumLength
        self.timeout = timeout
    }

    /// The next message.
    ///
    /// - Throws: ``DiscoveryError`` `.autonatMessageTooLarge`, `.autonatMalformedMessage`,
    ///   `.autonatTimeout`, `.autonatStreamClosed`.
    mutating func next() async throws -> Message {
        let timedOut = self.timedOut
        let channel = self.channel
        let watchdog = channel.eventLoop.scheduleTask(in: timeout) {
            timedOut.withLockedValue { $0 = true }
            channel.close(promise: nil)
        }
        defer { watchdog.cancel() }
        while true {
            if let message = try Self.decode(from: &buffer, maximumLength: maximumLength) {
                return message
            }
            let chunk: ByteBuffer?
            do {
                chunk = try await iterator.next()
            } catch {
                chunk = nil
            }
            guard var bytes = chunk else {
                if timedOut.withLockedValue({ $0 }) {
                    throw DiscoveryError(.autonatTimeout, "no AutoNAT message arrived within \(timeout)")
                }
                throw DiscoveryError(.autonatStreamClosed, "the AutoNAT stream ended")
            }
            buffer.writeBuffer(&bytes)
        }
    }

    /// Decodes one delimited message, or `nil` when the buffer does not hold a whole one yet.
    static func decode(from buffer: inout ByteBuffer, maximumLength: Int) throws -> Message? {
        do {
            return try ProtobufFraming.readDelimited(Message.self, from: &buffer, maximumLength: maximumLength)
        } catch let error as WireError where error.code == .tooLarge {
            throw DiscoveryError(.autonatMessageTooLarge, "an AutoNAT message is over \(maximumLength) bytes: \(error)")
        } catch {
            throw DiscoveryError(.autonatMalformedMessage, "an AutoNAT message is malformed: \(error)")
        }
    }
}
