import NIOCore

/// Limits of a relay (Circuit Relay v2 hop service). Every table is bounded by one of these.
public struct RelayConfiguration: Sendable {
    /// How long a reservation lasts before the client must refresh it. Default one hour, as
    /// go-libp2p's relay.
    public var reservationDuration: TimeAmount = .hours(1)
    /// The longest a circuit may last; `nil` for no limit. Default 2 minutes, the limit the spec's
    /// common deployments (go-libp2p, rust-libp2p) use.
    public var circuitDuration: TimeAmount? = .minutes(2)
    /// The most bytes a circuit carries in each direction; `nil` for no limit. Default 128 KiB,
    /// as go-libp2p and rust-libp2p: enough to coordinate a hole punch, not to carry traffic.
    public var circuitBytes: UInt64? = 128 * 1024
    /// Reservations held at once, in total. Default 128.
    public var maximumReservations = 128
    /// Reservations held at once from one IP address. Default 8.
    public var maximumReservationsPerIP = 8
    /// Circuits open at once, in total. Default 1024.
    public var maximumCircuits = 1024
    /// Circuits open at once to or from one peer. Default 16, as go-libp2p.
    public var maximumCircuitsPerPeer = 16
    /// The largest hop or stop message accepted. Default 4 KiB.
    public var maximumMessageLength = 4096
    /// How long a hop or stop exchange may take. Default 10 seconds.
    public var exchangeTimeout: TimeAmount = .seconds(10)
    /// Hop streams (at a relay) or stop streams (at a client) one connection may open at once
    /// before ``streamsPerSecond`` applies. Default 16.
    public var streamBurst = 16
    /// Hop or stop streams per second one connection may open after its burst. A connection
    /// over it is refused with RESOURCE_LIMIT_EXCEEDED and closed: the peer is cut off.
    /// Default 4 (an honest client reserves once an hour and connects once per circuit).
    public var streamsPerSecond = 4

    public init() {}

    /// A relay for one's own peers: no limit on circuit duration or bytes.
    public static var unlimited: RelayConfiguration {
        var configuration = RelayConfiguration()
        configuration.circuitDuration = nil
        configuration.circuitBytes = nil
        return configuration
    }
}

/// The relay protocol ids (circuit-v2.md).
public enum RelayProtocol {
    public static let hop = "/libp2p/circuit/relay/0.2.0/hop"
    public static let stop = "/libp2p/circuit/relay/0.2.0/stop"
}
