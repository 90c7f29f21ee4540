import PunchWire

/// The three protocols a gateway may speak to map a port.
public enum PortMappingProtocol: String, Hashable, Sendable, CaseIterable, CustomStringConvertible {
    /// Port Control Protocol, RFC 6887.
    case pcp
    /// NAT Port Mapping Protocol, RFC 6886.
    case natpmp
    /// UPnP Internet Gateway Device (WANIPConnection / WANPPPConnection).
    case upnp

    public var description: String { rawValue }
}

/// A port mapping a gateway granted: inbound traffic to ``external`` reaches this host's
/// ``internalPort``.
public struct GatewayMapping: Hashable, Sendable, CustomStringConvertible {
    /// The protocol that created it.
    public var mappingProtocol: PortMappingProtocol
    public var transport: PortMappingTransport
    public var internalPort: UInt16
    /// The gateway's external address and the mapped port.
    public var external: IPEndpoint
    /// Seconds the gateway granted; 0 from UPnP means "until removed" (a permanent lease).
    public var lifetime: UInt32

    public init(mappingProtocol: PortMappingProtocol, transport: PortMappingTransport, internalPort: UInt16, external: IPEndpoint, lifetime: UInt32) {
        self.mappingProtocol = mappingProtocol
        self.transport = transport
        self.internalPort = internalPort
        self.external = external
        self.lifetime = lifetime
    }

    public var description: String {
        "\(mappingProtocol) \(transport) \(external) -> :\(internalPort) for \(lifetime) s"
    }
}
