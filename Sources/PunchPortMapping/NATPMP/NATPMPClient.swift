import NIOCore
import NIOPosix
import PunchWire

/// A NAT-PMP (RFC 6886) client: asks the gateway for its external address and for UDP or TCP
/// mappings.
///
/// Replies are taken only from the gateway's address and port (RFC 6886 §3.1); requests are
/// retransmitted per the ``RetransmissionPolicy``.
///
/// ```swift
/// let client = try await NATPMPClient(gateway: try IPAddress("10.0.1.1"))
/// let mapping = try await client.map(.udp, internalPort: 4001, lifetime: 7200)
/// print(mapping.mapping.external)   // 203.0.113.1:4001
/// try await client.unmap(.udp, internalPort: 4001)
/// await client.close()
/// ```
public final class NATPMPClient: Sendable {
    /// The gateway's address and port (5351 unless a test says otherwise).
    public let gateway: IPEndpoint
    /// How requests are retried.
    public let policy: RetransmissionPolicy
    private let socket: DatagramSocket
    private let server: SocketAddress

    /// A mapping the gateway granted, with the epoch its reply carried.
    public struct Reply: Sendable, Hashable {
        public var mapping: GatewayMapping
        /// The gateway's seconds-since-start-of-epoch (RFC 6886 §3.6).
        public var epoch: UInt32
    }

    /// Opens the client's socket.
    /// - Parameters:
    ///   - gateway: the gateway's address.
    ///   - port: its NAT-PMP port; 5351 (RFC 6886 §3.1) except in tests.
    ///   - policy: retransmission; RFC 6886 §3.1's by default.
    ///   - group: the event loops for the socket.
    /// - Throws: ``PortMappingError`` `.socketFailure`, `.invalidArgument` for an IPv6 gateway.
    public init(gateway: IPAddress, port: UInt16 = NATPMP.serverPort, policy: RetransmissionPolicy = .rfc6886,
                group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton) async throws {
        guard gateway.isIPv4 else {
            throw PortMappingError(.invalidArgument, "NAT-PMP is IPv4 only; \(gateway) is IPv6")
        }
        self.gateway = IPEndpoint(address: gateway, port: port)
        self.policy = policy
        self.server = try self.gateway.socketAddress()
        self.socket = try await DatagramSocket.bind(group: group)
    }

    /// Asks for the gateway's external IPv4 address (RFC 6886 §3.2).
    /// - Returns: the address and the gateway's epoch.
    /// - Throws: ``PortMappingError``: `.timedOut`, `.unexpectedSource`, `.malformedResponse`,
    ///   `.gatewayRefused`, `.unsupportedVersion`.
    public func externalAddress() async throws -> (address: IPAddress, epoch: UInt32) {
        try await socket.exchange(NATPMPRequest.externalAddress.encoded, with: server, policy: policy, what: "NAT-PMP external address request") { datagram in
            switch Self.interpret(datagram.bytes, requestOpcode: 0) {
            case .accept(let response):
                guard case .externalAddress(let address) = response.body else { return .ignore }
                return .accept((IPAddress.v4(address), response.epoch))
            case .refuse(let error): return .refuse(error)
            case .fail(let error): return .fail(error)
            case .ignore: return .ignore
            }
        }
    }

    /// Creates or renews a mapping (RFC 6886 §3.3); asks for the external address first, since
    /// a mapping reply carries only the port.
    /// - Parameters:
    ///   - transport: UDP or TCP.
    ///   - internalPort: the port on this host.
    ///   - suggestedExternalPort: the external port wanted; 0 lets the gateway choose. The
    ///     gateway may grant another.
    ///   - lifetime: seconds requested; the gateway may grant less or more.
    /// - Returns: the mapping and the epoch of the mapping reply.
    /// - Throws: as ``externalAddress()``; `.invalidArgument` for lifetime 0 (use ``unmap(_:internalPort:)``).
    public func map(_ transport: PortMappingTransport, internalPort: UInt16, suggestedExternalPort: UInt16 = 0, lifetime: UInt32) async throws -> Reply {
        guard lifetime > 0 else {
            throw PortMappingError(.invalidArgument, "a NAT-PMP mapping with lifetime 0 is a deletion; call unmap")
        }
        let (address, _) = try await externalAddress()
        let response = try await request(.map(transport, internalPort: internalPort, suggestedExternalPort: suggestedExternalPort, lifetime: lifetime))
        guard case .mapping(_, _, let externalPort, let granted) = response.body else {
            throw PortMappingError(.mismatchedResponse, "the gateway answered a mapping request without a mapping")
        }
        let mapping = GatewayMapping(
            mappingProtocol: .natpmp, transport: transport, internalPort: internalPort,
            external: IPEndpoint(address: address, port: externalPort), lifetime: granted)
        return Reply(mapping: mapping, epoch: response.epoch)
    }

    /// Deletes this host's mapping of `internalPort` (RFC 6886 §3.4: lifetime 0, external port 0).
    /// - Returns: the epoch of the reply.
    /// - Throws: as ``externalAddress()``.
    @discardableResult
    public func unmap(_ transport: PortMappingTransport, internalPort: UInt16) async throws -> UInt32 {
        try await request(.map(transport, internalPort: internalPort, suggestedExternalPort: 0, lifetime: 0)).epoch
    }

    /// Closes the socket.
    public func close() async { await socket.close() }

    private func request(_ request: NATPMPRequest) async throws -> NATPMPResponse {
        guard case .map(let transport, let internalPort, _, let lifetime) = request else { preconditionFailure("only mapping requests come here") }
        return try await socket.exchange(request.encoded, with: server, policy: policy, what: "NAT-PMP \(transport) mapping request") { datagram in
            switch Self.interpret(datagram.bytes, requestOpcode: request.opcode) {
            case .accept(let response):
                // RFC 6886 §3.3: the reply echoes the internal port; one for another port is not ours.
                if case .mapping(_, let port, _, _) = response.body, port != internalPort {
                    return .refuse(PortMappingError(.mismatchedResponse, "a NAT-PMP reply for internal port \(port), not \(internalPort)"))
                }
                // §3.4: a deletion's reply has lifetime 0. A late reply to the mapping request
                // before it (same port) is not the deletion's answer, nor the reverse.
                if case .mapping(_, _, _, let granted) = response.body, (granted == 0) != (lifetime == 0) { return .ignore }
                return .accept(response)
            case .refuse(let error): return .refuse(error)
            case .fail(let error): return .fail(error)
            case .ignore: return .ignore
            }
        }
    }

    /// Decodes a reply from the gateway and sorts it: the answer, garbage, a refusal, or a reply
    /// to another opcode.
    static func interpret(_ bytes: [UInt8], requestOpcode: UInt8) -> ReplyVerdict<NATPMPResponse> {
        let response: NATPMPResponse
        do {
            response = try NATPMPResponse.decode(bytes)
        } catch let error as WireError {
            return .refuse(PortMappingError(.malformedResponse, "a NAT-PMP reply that does not decode: \(error)"))
        } catch {
            return .refuse(PortMappingError(.malformedResponse, "a NAT-PMP reply that does not decode: \(error)"))
        }
        guard response.requestOpcode == requestOpcode else { return .ignore }
        switch response.resultCode {
        case .success:
            return .accept(response)
        case .unsupportedVersion:
            return .fail(PortMappingError(.unsupportedVersion, "the gateway does not speak NAT-PMP version 0"))
        default:
            return .fail(PortMappingError(.gatewayRefused, "the gateway refused the NAT-PMP request: \(response.resultCode) (result code \(response.resultCode.rawValue))"))
        }
    }
}
