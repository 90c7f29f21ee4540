import PunchCrypto
import PunchWire

/// Whether an address of ours can be dialed from the Internet, as AutoNAT servers found.
public enum AddressReachability: String, Sendable, Hashable, Codable {
    /// Not enough servers agree yet.
    case unknown
    /// Enough distinct servers dialed it back.
    case reachable
    /// Enough distinct servers failed to dial it.
    case unreachable
}

/// A change of an address's aggregate reachability, from ``AutoNATClient/reachabilityUpdates``.
public struct AddressReachabilityUpdate: Sendable, Hashable {
    /// The address.
    public var address: Multiaddr
    /// Its reachability now.
    public var reachability: AddressReachability
    /// Distinct servers whose latest verdict is "dialed back".
    public var successes: Int
    /// Distinct servers whose latest verdict is "could not dial".
    public var failures: Int
}

/// The reachability of each address, aggregated over distinct servers: an address is reachable
/// once `confirmations` servers' latest verdicts say so and they outnumber the others, and
/// unreachable the other way round (autonat-v2.md, "Implementation Suggestions": query multiple
/// servers). Each server has one vote per address, its latest. Bounded: at most
/// `maximumAddresses` addresses (the least recently updated is forgotten) and
/// `maximumServersPerAddress` votes per address (the oldest vote is forgotten). No I/O.
public struct AddressReachabilityTracker: Sendable {
    private struct Votes: Sendable {
        var byServer: [PeerID: Bool] = [:]
        var order: [PeerID] = []
        var updated: UInt64 = 0
        var reachability = AddressReachability.unknown
    }

    /// Distinct servers that must agree.
    public var confirmations: Int
    /// The most addresses tracked.
    public let maximumAddresses: Int
    /// The most servers' votes kept per address.
    public let maximumServersPerAddress: Int
    private var addresses: [Multiaddr: Votes] = [:]
    private var clock: UInt64 = 0

    /// An empty tracker.
    public init(confirmations: Int, maximumAddresses: Int, maximumServersPerAddress: Int) {
        self.confirmations = max(1, confirmations)
        self.maximumAddresses = max(1, maximumAddresses)
        self.maximumServersPerAddress = max(1, maximumServersPerAddress)
    }

    /// Records `server`'s verdict on `address`.
    ///
    /// - Returns: the update when the address's reachability changed, else `nil`.
    public mutating func record(_ address: Multiaddr, server: PeerID, reachable: Bool) -> AddressReachabilityUpdate? {
        clock += 1
        if addresses[address] == nil, addresses.count >= maximumAddresses,
            let stalest = addresses.min(by: { $0.value.updated < $1.value.updated })?.key
        {
            addresses[stalest] = nil
        }
        var votes = addresses[address] ?? Votes()
        if votes.byServer[server] == nil {
            if votes.order.count >= maximumServersPerAddress {
                let oldest = votes.order.removeFirst()
                votes.byServer[oldest] = nil
            }
            votes.order.append(server)
        }
        votes.byServer[server] = reachable
        votes.updated = clock
        let successes = votes.byServer.values.filter { $0 }.count
        let failures = votes.byServer.count - successes
        let now: AddressReachability =
            if successes >= confirmations && successes > failures {
                .reachable
            } else if failures >= confirmations && failures > successes {
                .unreachable
            } else {
                .unknown
            }
        let changed = now != votes.reachability
        votes.reachability = now
        addresses[address] = votes
        return changed ? AddressReachabilityUpdate(address: address, reachability: now, successes: successes, failures: failures) : nil
    }

    /// The aggregate reachability of `address`.
    public func reachability(of address: Multiaddr) -> AddressReachability {
        addresses[address]?.reachability ?? .unknown
    }

    /// Addresses tracked.
    public var count: Int { addresses.count }
}
