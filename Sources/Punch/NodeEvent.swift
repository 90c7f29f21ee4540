import PunchCrypto
import PunchDiscovery
import PunchHolePunch
import PunchPortMapping
import PunchRelay
import PunchTransport
import PunchWire

/// What a ``PunchNode`` reports on ``PunchNode/events``.
public enum NodeEvent: Sendable {
    /// The node listens; the addresses peers can use.
    case listening([Multiaddr])
    /// A connection finished its upgrade and carries streams.
    case connected(Connection)
    /// identify finished on a connection.
    case identified(Connection, IdentifyInfo)
    /// A connection closed; `error` says why when it was not a normal close.
    case disconnected(Connection, error: TransportError?)
    /// An inbound or outbound connection failed before it was usable.
    case connectionFailed(direction: ConnectionDirection, remote: Multiaddr?, error: TransportError)
    /// A second connection to a peer will close once its open streams end: the node keeps one
    /// connection per peer (``ConnectionSelection``), and `kept` is that one.
    case duplicateConnection(Connection, kept: Connection)
    /// A reservation on a relay was made or refreshed.
    case reserved(RelayReservation)
    /// Reserving on `relay` failed; the next try is in `retryIn`.
    case reservationFailed(relay: Multiaddr, error: any Error, retryIn: Duration)
    /// The connection to `relay` closed; the node reserves again.
    case relayLost(relay: Multiaddr)
    /// A relayed peer now has a direct connection. `relayedToDirect` is the time since the peer
    /// was first relayed.
    case upgraded(peer: PeerID, outcome: HolePunchOutcome, relayedToDirect: Duration?)
    /// A DCUtR round with `peer` failed. `retryIn`: when our next round starts; `nil` when no
    /// round of ours is scheduled (we serve and the peer drives, or the loop stopped).
    case upgradeRoundFailed(peer: PeerID, error: any Error, retryIn: Duration?)
    /// The upgrade loop with `peer` is over without a direct connection (the peer stays relayed).
    case upgradeStopped(peer: PeerID, reason: HolePunchRetry.Verdict, error: (any Error)?)
    /// Our confirmed public addresses changed (identify's observed addresses, from listening
    /// ports only, confirmed by enough distinct peers; and a port mapping's address).
    case publicAddressesChanged([Multiaddr])
    /// AutoNAT v2 changed its verdict on one of our public addresses (aggregated over the servers
    /// asked, ``NodeConfiguration/autoNAT``).
    case reachabilityChanged(address: Multiaddr, reachability: AddressReachability)
    /// The gateway mapped our listening port.
    case portMapped(GatewayMapping)
    /// Port mapping failed or the mapping was lost.
    case portMappingFailed(any Error)
    /// This subscriber fell behind and missed `count` events here.
    case eventsDropped(Int)
}

/// The events of a ``PunchNode`` for one subscriber, in order. Each subscriber (each call of
/// ``PunchNode/events``) has its own buffer of ``NodeConfiguration/Limits/eventBufferLimit``
/// entries; one that falls behind gets ``NodeEvent/eventsDropped(_:)`` where it missed events,
/// and the other subscribers miss nothing. The sequence ends when the node shuts down.
public struct NodeEvents: AsyncSequence, Sendable {
    public typealias Element = NodeEvent

    let broadcaster: EventBroadcaster<NodeEvent>
    let id: Int

    public struct AsyncIterator: AsyncIteratorProtocol {
        let broadcaster: EventBroadcaster<NodeEvent>
        let id: Int

        public mutating func next() async -> NodeEvent? {
            switch await broadcaster.next(id) {
            case .event(let event): return event
            case .dropped(let count): return .eventsDropped(count)
            case nil: return nil
            }
        }
    }

    public func makeAsyncIterator() -> AsyncIterator {
        AsyncIterator(broadcaster: broadcaster, id: id)
    }

    /// Stops this subscription (its reader gets `nil`); the node stops buffering for it.
    public func cancel() { broadcaster.unsubscribe(id) }
}
