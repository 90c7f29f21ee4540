import NIOCore
import NIOPosix
import PunchWire

/// A PCP (RFC 6887) client for the MAP and ANNOUNCE opcodes.
///
/// Each mapping has its own nonce, kept for renewals and the deletion (RFC 6887 §11.2); a
/// reply that does not echo it is refused as `.nonceMismatch`. A gateway that only speaks
/// NAT-PMP answers with version 0 or UNSUPP_VERSION: ``map(_:internalPort:suggestedExternalPort:lifetime:nonce:)``
/// then throws `.unsupportedVersion` and the caller falls back to NAT-PMP (RFC 6887 §9).
///
/// ```swift
/// let client = try await PCPClient(gateway: try IPAddress("10.0.1.1"))
/// let nonce = PCPNonce.random()
/// let reply = try await client.map(.udp, internalPort: 4001, lifetime: 7200, nonce: nonce)
/// try await client.unmap(.udp, internalPort: 4001, nonce: nonce)
/// ```
public final class PCPClient: Sendable {
    /// The server's address and port (5351 unless a test says otherwise).
    public let server: IPEndpoint
    /// This host's address toward the server: the PCP client address of every request.
    public let clientAddress: IPAddress
    public let policy: RetransmissionPolicy
    private let socket: DatagramSocket
    private let serverAddress: SocketAddress

    /// A mapping the server granted, with the epoch its reply carried.
    public struct Reply: Sendable, Hashable {
        public var mapping: GatewayMapping
        /// The server's epoch time (RFC 6887 §8.5).
        public var epoch: UInt32
    }

    /// Opens the client's socket and learns the local address toward the server.
    /// - Parameters:
    ///   - gateway: the PCP server (the default gateway, RFC 6887 §8.1).
    ///   - port: its port; 5351 except in tests.
    ///   - clientAddress: the address to claim; by default the one the kernel uses toward `gateway`.
    ///   - policy: retransmission. RFC 6887 §8.1.1 retries without end (IRT 3 s, MRT 1024 s);
    ///     this client stops after the policy's tries so a caller can fall back to another protocol.
    ///   - group: the event loops for the socket.
    /// - Throws: ``PortMappingError`` `.socketFailure`.
    public init(gateway: IPAddress, port: UInt16 = PCP.serverPort, clientAddress: IPAddress? = nil, policy: RetransmissionPolicy = .rfc6886,
                group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton) async throws {
        self.server = IPEndpoint(address: gateway, port: port)
        self.serverAddress = try server.socketAddress()
        self.policy = policy
        if let clientAddress {
            self.clientAddress = clientAddress
        } else {
            self.clientAddress = try await localAddress(toward: serverAddress, group: group)
        }
        self.socket = try await DatagramSocket.bind(host: gateway.isIPv4 ? "0.0.0.0" : "::", group: group)
    }

    /// Creates or renews a mapping with a MAP request (RFC 6887 §11).
    /// - Parameters:
    ///   - transport: UDP or TCP.
    ///   - internalPort: the port on this host.
    ///   - suggestedExternalPort: the external port wanted; 0 lets the server choose.
    ///   - lifetime: seconds requested; must be more than 0 (use ``unmap(_:internalPort:nonce:)``).
    ///   - nonce: the mapping's nonce; the same one for every renewal.
    /// - Returns: the mapping and the server's epoch.
    /// - Throws: ``PortMappingError``: `.timedOut`; `.unexpectedSource`, `.malformedResponse`,
    ///   `.nonceMismatch` when only invalid replies came; `.unsupportedVersion` from a
    ///   NAT-PMP-only gateway; `.gatewayRefused` for any other result code.
    public func map(_ transport: PortMappingTransport, internalPort: UInt16, suggestedExternalPort: UInt16 = 0, lifetime: UInt32, nonce: PCPNonce) async throws -> Reply {
        guard lifetime > 0 else {
            throw PortMappingError(.invalidArgument, "a PCP MAP with lifetime 0 is a deletion; call unmap")
        }
        let response = try await send(transport, internalPort: internalPort, suggestedExternalPort: suggestedExternalPort, lifetime: lifetime, nonce: nonce)
        guard let data = response.map else {
            throw PortMappingError(.malformedResponse, "a successful PCP MAP reply without MAP data")
        }
        let mapping = GatewayMapping(
            mappingProtocol: .pcp, transport: transport, internalPort: internalPort,
            external: IPEndpoint(address: data.externalAddress, port: data.externalPort), lifetime: response.lifetime)
        return Reply(mapping: mapping, epoch: response.epoch)
    }

    /// Deletes a mapping: a MAP with lifetime 0 and the mapping's nonce (RFC 6887 §15).
    /// - Returns: the server's epoch.
    /// - Throws: as ``map(_:internalPort:suggestedExternalPort:lifetime:nonce:)``.
    @discardableResult
    public func unmap(_ transport: PortMappingTransport, internalPort: UInt16, nonce: PCPNonce) async throws -> UInt32 {
        try await send(transport, internalPort: internalPort, suggestedExternalPort: 0, lifetime: 0, nonce: nonce).epoch
    }

    /// Sends ANNOUNCE (RFC 6887 §14.1) and returns the server's epoch: a cheap way to learn
    /// whether it restarted.
    /// - Throws: as ``map(_:internalPort:suggestedExternalPort:lifetime:nonce:)``.
    public func announce() async throws -> UInt32 {
        let request = PCPRequest.announce(clientAddress: clientAddress).encoded
        return try await socket.exchange(request, with: serverAddress, policy: policy, what: "PCP ANNOUNCE") { datagram in
            switch Self.interpret(datagram.bytes, opcode: .announce) {
            case .accept(let response): return .accept(response.epoch)
            case .refuse(let error): return .refuse(error)
            case .fail(let error): return .fail(error)
            case .ignore: return .ignore
            }
        }
    }

    /// Closes the socket.
    public func close() async { await socket.close() }

    private func send(_ transport: PortMappingTransport, internalPort: UInt16, suggestedExternalPort: UInt16, lifetime: UInt32, nonce: PCPNonce) async throws -> PCPResponse {
        let data = PCPMapData(
            nonce: nonce, transport: transport, internalPort: internalPort, externalPort: suggestedExternalPort,
            externalAddress: clientAddress.isIPv4 ? .v4(.init(0, 0, 0, 0)) : .v6(.init(high: 0, low: 0)))
        let request = PCPRequest.map(clientAddress: clientAddress, lifetime: lifetime, data).encoded
        return try await socket.exchange(request, with: serverAddress, policy: policy, what: "PCP MAP request") { datagram in
            switch Self.interpret(datagram.bytes, opcode: .map) {
            case .accept(let response):
                // A deletion (lifetime 0) and the MAP before it share the nonce: a late answer to
                // that MAP (granted lifetime > 0) is not the deletion's answer, nor the reverse.
                if response.resultCode == .success, (response.lifetime == 0) != (lifetime == 0) { return .ignore }
                return Self.check(response, nonce: nonce, transport: transport, internalPort: internalPort)
            case .refuse(let error): return .refuse(error)
            case .fail(let error): return .fail(error)
            case .ignore: return .ignore
            }
        }
    }

    /// RFC 6887 §11.4: a MAP reply is the answer only if nonce, protocol and internal port match.
    static func check(_ response: PCPResponse, nonce: PCPNonce, transport: PortMappingTransport, internalPort: UInt16) -> ReplyVerdict<PCPResponse> {
        guard let data = response.map else {
            // An error reply without opcode data cannot be matched to the request; a success
            // reply without it was already refused by the decoder.
            return .fail(Self.refusal(response.resultCode))
        }
        guard data.nonce == nonce else {
            return .refuse(PortMappingError(.nonceMismatch, "a PCP MAP reply carried nonce \(data.nonce), not the request's \(nonce); it was ignored"))
        }
        guard data.transport == transport, data.internalPort == internalPort else {
            return .refuse(PortMappingError(.mismatchedResponse, "a PCP MAP reply for \(data.transport) port \(data.internalPort), not \(transport) port \(internalPort)"))
        }
        return response.resultCode == .success ? .accept(response) : .fail(Self.refusal(response.resultCode))
    }

    /// Decodes a reply and sorts it. A version-0 reply is a NAT-PMP gateway's answer to a PCP
    /// request (RFC 6887 §9): `.unsupportedVersion`, so the caller falls back.
    static func interpret(_ bytes: [UInt8], opcode: PCPOpcode) -> ReplyVerdict<PCPResponse> {
        if bytes.count >= 2, bytes[0] == NATPMP.version, bytes[1] >= 128 {
            return .fail(PortMappingError(.unsupportedVersion, "the gateway answered PCP with NAT-PMP (version 0): it speaks NAT-PMP only"))
        }
        let response: PCPResponse
        do {
            response = try PCPResponse.decode(bytes)
        } catch {
            return .refuse(PortMappingError(.malformedResponse, "a PCP reply that does not decode: \(error)"))
        }
        if response.resultCode == .unsupportedVersion {
            return .fail(refusal(response.resultCode))
        }
        guard response.opcode == opcode else { return .ignore }
        if opcode == .announce, response.resultCode != .success { return .fail(refusal(response.resultCode)) }
        return .accept(response)
    }

    static func refusal(_ code: PCPResultCode) -> PortMappingError {
        if code == .unsupportedVersion {
            return PortMappingError(.unsupportedVersion, "the gateway does not speak PCP version 2 (UNSUPP_VERSION)")
        }
        return PortMappingError(.gatewayRefused, "the PCP server refused the request: \(code) (result code \(code.rawValue))")
    }
}
