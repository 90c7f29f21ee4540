import Foundation
import NIOCore
import PunchCrypto
import PunchWire

/// What a peer said about itself in identify.
public struct IdentifyInfo: Sendable, Hashable {
    /// For example `ipfs/0.1.0`.
    public var protocolVersion: String?
    /// For example `punch/0.1.0` or `py-libp2p/0.8.1`.
    public var agentVersion: String?
    /// The peer's identity key; checked against the connection's PeerID.
    public var publicKey: PublicKey?
    /// The addresses the peer listens on.
    public var listenAddresses: [Multiaddr]
    /// The address the peer sees us connecting from: our public address when we are behind NAT.
    public var observedAddress: Multiaddr?
    /// The protocols the peer serves.
    public var protocols: [String]

    public init(
        protocolVersion: String? = nil, agentVersion: String? = nil, publicKey: PublicKey? = nil,
        listenAddresses: [Multiaddr] = [], observedAddress: Multiaddr? = nil, protocols: [String] = []
    ) {
        self.protocolVersion = protocolVersion
        self.agentVersion = agentVersion
        self.publicKey = publicKey
        self.listenAddresses = listenAddresses
        self.observedAddress = observedAddress
        self.protocols = protocols
    }
}

/// libp2p identify (`/ipfs/id/1.0.0`, libp2p/specs identify/README.md): the side that opens the
/// stream reads one Identify message that the other side writes before closing the stream.
public enum Identify {
    /// The protocol id.
    public static let protocolID = "/ipfs/id/1.0.0"
    /// The most listen addresses or protocols taken from one message; the rest are ignored.
    public static let maximumListEntries = 128

    static func register(on host: PunchHost) {
        host.setStreamHandler(for: protocolID) { [weak host] stream in
            guard let host else { return }
            try await serve(stream, host: host)
        }
    }

    /// The message this host sends on `connection`.
    static func message(for host: PunchHost, connection: Connection) -> PBIdentify {
        var message = PBIdentify()
        message.protocolVersion = host.configuration.protocolVersion
        message.agentVersion = host.configuration.agentVersion
        message.publicKey = Data(host.configuration.identity.publicKey.protobufEncoded)
        message.listenAddrs = host.listenAddresses.map { Data($0.withoutPeerID().bytes) }
        if let observed = connection.remoteAddress {
            message.observedAddr = Data(observed.bytes)
        }
        message.protocols = host.protocols
        return message
    }

    static func serve(_ stream: HostStream, host: PunchHost) async throws {
        var buffer = ByteBuffer()
        try ProtobufFraming.writeDelimited(message(for: host, connection: stream.connection), into: &buffer)
        try await stream.channel.executeThenClose { _, outbound in
            try await outbound.write(buffer)
            outbound.finish()
        }
    }

    static func request(on connection: Connection) async throws -> IdentifyInfo {
        let stream = try await connection.openStream(protocol: protocolID)
        let maximum = connection.streamRouter.maximumIdentifyMessageLength
        let bytes = try await stream.channel.executeThenClose { inbound, outbound in
            outbound.finish()
            var received = ByteBuffer()
            for try await var chunk in inbound {
                guard received.readableBytes + chunk.readableBytes <= maximum + 10 else {
                    throw TransportError(.identifyFailed, "the identify message exceeds \(maximum) bytes")
                }
                received.writeBuffer(&chunk)
            }
            return received
        }
        return try parse(bytes, peer: connection.remotePeerID, maximumLength: maximum)
    }

    /// Decodes what the peer wrote on an identify stream: one varint-delimited message (the
    /// spec's framing; older implementations sent the bare message, which is accepted too).
    static func parse(_ bytes: ByteBuffer, peer: PeerID, maximumLength: Int) throws -> IdentifyInfo {
        var framed = bytes
        let message: PBIdentify
        do {
            if let length = try? framed.readVarint(), length == UInt64(framed.readableBytes) {
                message = try ProtobufFraming.decode(PBIdentify.self, from: framed.readableBytesView, maximumLength: maximumLength)
            } else {
                message = try ProtobufFraming.decode(PBIdentify.self, from: bytes.readableBytesView, maximumLength: maximumLength)
            }
        } catch {
            throw TransportError(.identifyFailed, "the identify message does not decode: \(error)")
        }
        var info = IdentifyInfo()
        if message.hasProtocolVersion { info.protocolVersion = message.protocolVersion }
        if message.hasAgentVersion { info.agentVersion = message.agentVersion }
        if message.hasPublicKey {
            let key: PublicKey
            do {
                key = try PublicKey(protobufEncoded: message.publicKey)
            } catch {
                throw TransportError(.identifyFailed, "the identify public key is not usable: \(error)")
            }
            guard peer.matches(key) else {
                throw TransportError(.identifyFailed, "the identify public key does not belong to \(peer)")
            }
            info.publicKey = key
        }
        info.listenAddresses = message.listenAddrs.prefix(maximumListEntries).compactMap { try? Multiaddr(bytes: $0) }
        if message.hasObservedAddr {
            info.observedAddress = try? Multiaddr(bytes: message.observedAddr)
        }
        info.protocols = Array(message.protocols.prefix(maximumListEntries))
        return info
    }
}
