import NIOCore
import PunchWire

/// One protocol's way to create, renew, check and delete the mapper's mapping.
protocol MappingBackend: Sendable {
    var mappingProtocol: PortMappingProtocol { get }
    /// How this protocol's epoch is checked; `nil` when it has none (UPnP).
    var epochRule: GatewayEpoch.Rule? { get }
    /// Creates or renews the mapping; returns it with the gateway's epoch, if the protocol has one.
    func map(suggestedExternalPort: UInt16, lifetime: UInt32) async throws -> (GatewayMapping, epoch: UInt32?)
    /// Whether the gateway still holds the mapping, for protocols that can ask (UPnP); `true` otherwise.
    func stillMapped(_ mapping: GatewayMapping) async throws -> Bool
    func unmap(_ mapping: GatewayMapping) async throws
    func close() async
}

struct NATPMPBackend: MappingBackend {
    let client: NATPMPClient
    let transport: PortMappingTransport
    let internalPort: UInt16
    var mappingProtocol: PortMappingProtocol { .natpmp }
    var epochRule: GatewayEpoch.Rule? { .natpmp }

    func map(suggestedExternalPort: UInt16, lifetime: UInt32) async throws -> (GatewayMapping, epoch: UInt32?) {
        let reply = try await client.map(transport, internalPort: internalPort, suggestedExternalPort: suggestedExternalPort, lifetime: lifetime)
        return (reply.mapping, reply.epoch)
    }

    func stillMapped(_ mapping: GatewayMapping) async throws -> Bool { true }
    func unmap(_ mapping: GatewayMapping) async throws { try await client.unmap(transport, internalPort: internalPort) }
    func close() async { await client.close() }
}

struct PCPBackend: MappingBackend {
    let client: PCPClient
    let transport: PortMappingTransport
    let internalPort: UInt16
    /// One nonce for the mapping's whole life (RFC 6887 §11.2).
    let nonce: PCPNonce
    var mappingProtocol: PortMappingProtocol { .pcp }
    var epochRule: GatewayEpoch.Rule? { .pcp }

    func map(suggestedExternalPort: UInt16, lifetime: UInt32) async throws -> (GatewayMapping, epoch: UInt32?) {
        let reply = try await client.map(transport, internalPort: internalPort, suggestedExternalPort: suggestedExternalPort, lifetime: lifetime, nonce: nonce)
        return (reply.mapping, reply.epoch)
    }

    func stillMapped(_ mapping: GatewayMapping) async throws -> Bool { true }
    func unmap(_ mapping: GatewayMapping) async throws { try await client.unmap(transport, internalPort: internalPort, nonce: nonce) }
    func close() async { await client.close() }
}

struct UPnPBackend: MappingBackend {
    let client: UPnPClient
    let transport: PortMappingTransport
    let internalPort: UInt16
    var mappingProtocol: PortMappingProtocol { .upnp }
    var epochRule: GatewayEpoch.Rule? { nil }

    func map(suggestedExternalPort: UInt16, lifetime: UInt32) async throws -> (GatewayMapping, epoch: UInt32?) {
        (try await client.map(transport, internalPort: internalPort, suggestedExternalPort: suggestedExternalPort, lifetime: lifetime), nil)
    }

    func stillMapped(_ mapping: GatewayMapping) async throws -> Bool {
        try await client.mappingExists(transport, externalPort: mapping.external.port, internalPort: internalPort)
    }

    func unmap(_ mapping: GatewayMapping) async throws { try await client.unmap(transport, externalPort: mapping.external.port) }
    func close() async {}
}
