/// What a ``PortMapper`` reports about its mapping, in order, on ``PortMapper/events``.
public enum PortMappingEvent: Sendable, Hashable {
    /// The mapping exists: first time, or again after it was lost.
    case mapped(GatewayMapping)
    /// A renewal succeeded with the same external address and port.
    case renewed(GatewayMapping)
    /// A renewal granted a different external address or port.
    case externalAddressChanged(old: GatewayMapping, new: GatewayMapping)
    /// The mapping is gone (gateway restart, failed renewal); the mapper is creating it again.
    case lost(PortMappingError)
    /// The mapper removed its mapping on shutdown.
    case removed(GatewayMapping)
    /// The mapper shut down but could not remove the mapping; it expires by itself.
    case removalFailed(GatewayMapping, PortMappingError)
}
