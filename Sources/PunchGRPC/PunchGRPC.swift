// gRPC over Punch: what the client and server transports share.
//
// The choice (README, "gRPC over Punch"): HTTP/2 over one Punch stream per gRPC connection, not
// one Punch stream per RPC. grpc-swift-nio-transport's HTTP/2 pipeline then runs unchanged over a
// yamux stream (deadlines, cancellation, status codes, metadata, flow control, graceful shutdown),
// and an RPC costs no stream negotiation: a new yamux stream needs a multistream-select round
// trip before its first byte, an HTTP/2 stream none.

public import GRPCCore
public import PunchCrypto
import NIOCore

/// Names shared by ``PunchClientTransport`` and ``PunchServerTransport``.
public enum PunchGRPC {
    /// The protocol a gRPC connection negotiates on its Punch stream.
    public static let protocolID = "/punch/grpc/1.0.0"

    /// The request metadata key under which the server transport hands each handler the PeerID of
    /// the peer that called, as authenticated by Noise. A value the client sent under this key is
    /// removed first, so a handler can trust it.
    public static let peerIDMetadataKey = "punch-peer-id"

    /// Readies a negotiated Punch stream for HTTP/2 (on its event loop): half-closure off, as on a
    /// TCP socket. HTTP/2 ends a connection with GOAWAY and then closes; a stream that stayed
    /// half-open after the peer's FIN would keep both sides waiting for each other.
    static func prepare(_ channel: any Channel) throws {
        try channel.syncOptions?.setOption(ChannelOptions.allowRemoteHalfClosure, value: false)
    }

    /// The Unix path a gRPC stream reports as its remote address, so that
    /// `ServerContext.remotePeer` reads `unix:/p2p/PEERID`.
    static func remotePeerPath(_ peer: PeerID) -> String { "/p2p/\(peer)" }

    /// The PeerID in a `ServerContext.remotePeer` string that the server transport wrote.
    static func peerID(fromRemotePeer remotePeer: String) -> PeerID? {
        let prefix = "unix:/p2p/"
        guard remotePeer.hasPrefix(prefix) else { return nil }
        return try? PeerID(String(remotePeer.dropFirst(prefix.count)))
    }
}

extension ServerContext {
    /// The PeerID of the calling peer, as the Punch connection authenticated it (`nil` for a
    /// context that no ``PunchServerTransport`` made).
    public var punchPeerID: PeerID? { PunchGRPC.peerID(fromRemotePeer: remotePeer) }
}

extension Metadata {
    /// The caller's PeerID that ``PunchServerTransport`` put under ``PunchGRPC/peerIDMetadataKey``.
    public var punchPeerID: PeerID? {
        for value in self[stringValues: PunchGRPC.peerIDMetadataKey] {
            if let peer = try? PeerID(value) { return peer }
        }
        return nil
    }
}

extension ServiceConfig {
    /// The method config gRPC's rules pick for `descriptor`: an exact service and method name,
    /// else the service's, else the default (empty service name).
    func methodConfig(for descriptor: MethodDescriptor) -> MethodConfig? {
        func match(service: String, method: String) -> MethodConfig? {
            methodConfig.first { config in
                config.names.contains { $0.service == service && $0.method == method }
            }
        }
        return match(service: descriptor.service.fullyQualifiedService, method: descriptor.method)
            ?? match(service: descriptor.service.fullyQualifiedService, method: "")
            ?? match(service: "", method: "")
    }
}
