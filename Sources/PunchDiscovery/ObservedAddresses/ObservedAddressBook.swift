import NIOCore
import PunchCrypto
import PunchWire

/// The addresses peers say they see us at (identify's `observedAddr`), and which of them enough
/// distinct peers agree on to be believed.
///
/// One peer's word is cheap: a peer can lie, and a peer behind the same carrier-grade NAT sees a
/// private address. So an address is *confirmed* only once ``Configuration/confirmations``
/// distinct peers have reported it within ``Configuration/timeToLive``. Each peer has one vote per
/// local address: when it reports a new observed address for the same local address, its vote
/// moves (a flapping peer cannot confirm two addresses). The book is bounded by
/// ``Configuration/maximumAddresses`` and ``Configuration/maximumObserversPerAddress``.
///
/// A value type with no I/O: time comes from the caller. ``ObservedAddressTracker`` wraps it for
/// use from many connections at once.
///
/// ```swift
/// var book = ObservedAddressBook()
/// let info = try await connection.identify()
/// if let observed = info.observedAddress {
///     book.record(observed, by: connection.remotePeerID, local: connection.localAddress, now: .now())
/// }
/// print(book.confirmed(now: .now()))
/// ```
public struct ObservedAddressBook: Sendable {
    /// Limits and thresholds of an ``ObservedAddressBook``, each with a documented default.
    public struct Configuration: Sendable, Hashable {
        /// The default ``confirmations``: 3 distinct peers (go-libp2p's observed-address manager
        /// also asks for several observers before it believes an address).
        public static let defaultConfirmations = 3
        /// The default ``maximumAddresses``: 64 observed addresses tracked at once.
        public static let defaultMaximumAddresses = 64
        /// The default ``maximumObserversPerAddress``: 16 peers remembered per address.
        public static let defaultMaximumObserversPerAddress = 16
        /// The default ``timeToLive``: 30 minutes since a peer last reported an address.
        public static let defaultTimeToLive = TimeAmount.minutes(30)

        /// How many distinct peers must report an address before it is confirmed (at least 1).
        /// A network with a single public observer (the NAT lab, one relay) sets 1.
        public var confirmations = Self.defaultConfirmations
        /// The most observed addresses tracked. When full, a new address replaces the entry with
        /// the fewest observers (the least recently seen among them), unless every entry has more
        /// observers than the newcomer: then the new observation is dropped, so a single peer
        /// cannot push confirmed addresses out.
        public var maximumAddresses = Self.defaultMaximumAddresses
        /// The most peers remembered per address; a new observer replaces the least recently
        /// seen one (the count, and so confirmation, is unchanged).
        public var maximumObserversPerAddress = Self.defaultMaximumObserversPerAddress
        /// How long an observation counts after it was last made; a new report from the same
        /// peer refreshes it.
        public var timeToLive = Self.defaultTimeToLive

        /// The defaults above.
        public init() {}

        /// Checks every value is in range.
        ///
        /// - Throws: ``DiscoveryError`` `.invalidConfiguration`.
        public func validate() throws {
            guard confirmations >= 1 else {
                throw DiscoveryError(.invalidConfiguration, "confirmations must be at least 1, not \(confirmations)")
            }
            guard maximumAddresses >= 1, maximumObserversPerAddress >= 1 else {
                throw DiscoveryError(.invalidConfiguration, "the observed-address book needs room for at least one address and one observer")
            }
            guard confirmations <= maximumObserversPerAddress else {
                throw DiscoveryError(
                    .invalidConfiguration,
                    "confirmations (\(confirmations)) cannot exceed maximumObserversPerAddress (\(maximumObserversPerAddress)): no address could be confirmed")
            }
            guard timeToLive > .zero else {
                throw DiscoveryError(.invalidConfiguration, "timeToLive must be positive")
            }
        }
    }

    /// One observed address as the book sees it.
    public struct Entry: Sendable, Hashable {
        /// The address peers see (without `/p2p/`).
        public var address: Multiaddr
        /// Our end of the connection it was last observed on (our listening address when dials
        /// leave from the listening port), or `nil` when unknown.
        public var localAddress: Multiaddr?
        /// How many distinct peers report it now.
        public var observers: Int
        /// When a peer last reported it.
        public var lastSeen: NIODeadline
        /// Whether ``observers`` reached ``Configuration/confirmations``.
        public var isConfirmed: Bool
    }

    /// What ``record(_:by:local:now:)`` did with an observation.
    public enum RecordOutcome: Sendable, Hashable {
        /// A new address is tracked.
        case added
        /// The address was tracked; the observer was added or refreshed.
        case updated
        /// The book is full of better-supported addresses; the observation was dropped.
        case dropped
        /// The address is not usable as an observed address (no IP and port, or a circuit).
        case ignored
    }

    private struct Observed: Sendable {
        var localAddress: Multiaddr?
        var observers: [PeerID: NIODeadline] = [:]
        var lastSeen: NIODeadline
    }

    /// Where one peer's vote for one local address is.
    private struct VoteKey: Hashable, Sendable {
        var observer: PeerID
        var local: Multiaddr?
    }

    /// The thresholds and limits; ``Configuration/confirmations`` may be changed at any time.
    public var configuration: Configuration
    private var addresses: [Multiaddr: Observed] = [:]
    private var votes: [VoteKey: Multiaddr] = [:]

    /// An empty book.
    public init(configuration: Configuration = Configuration()) {
        self.configuration = configuration
    }

    /// Records that `observer` sees us at `observed` on a connection whose local end is `local`.
    ///
    /// - Parameters:
    ///   - observed: identify's observed address; a trailing `/p2p/` is dropped.
    ///   - observer: the peer that reported it (the connection's proven PeerID).
    ///   - local: our end of that connection.
    ///   - now: the current time.
    /// - Returns: what happened to the observation.
    @discardableResult
    public mutating func record(_ observed: Multiaddr, by observer: PeerID, local: Multiaddr?, now: NIODeadline) -> RecordOutcome {
        expire(now: now)
        let address = observed.withoutPeerID()
        guard !address.isCircuit, address.transportEndpoint != nil else { return .ignored }
        let key = VoteKey(observer: observer, local: local)
        // The peer's vote moves: it counts for one observed address per local address.
        if let previous = votes[key], previous != address {
            removeVote(of: observer, from: previous)
            votes[key] = nil
        }
        var outcome = RecordOutcome.updated
        if addresses[address] == nil {
            if addresses.count >= configuration.maximumAddresses {
                guard evictOne(toMakeRoomFor: 1) else { return .dropped }
            }
            addresses[address] = Observed(localAddress: local, lastSeen: now)
            outcome = .added
        }
        var entry = addresses[address]!
        if entry.observers[observer] == nil, entry.observers.count >= configuration.maximumObserversPerAddress,
            let stalest = entry.observers.min(by: { $0.value < $1.value })?.key
        {
            entry.observers[stalest] = nil
            votes = votes.filter { !($0.key.observer == stalest && $0.value == address) }
        }
        entry.observers[observer] = now
        entry.lastSeen = now
        entry.localAddress = local
        addresses[address] = entry
        votes[key] = address
        return outcome
    }

    /// Forgets observations older than ``Configuration/timeToLive``, and addresses nobody
    /// reports any more.
    public mutating func expire(now: NIODeadline) {
        let oldest = now - configuration.timeToLive
        for (address, var entry) in addresses {
            let stale = entry.observers.filter { $0.value < oldest }.map(\.key)
            guard !stale.isEmpty else { continue }
            for observer in stale { entry.observers[observer] = nil }
            votes = votes.filter { !(stale.contains($0.key.observer) && $0.value == address) }
            addresses[address] = entry.observers.isEmpty ? nil : entry
        }
    }

    /// The confirmed addresses, the best supported first (ties by the most recent report).
    public func confirmed(now: NIODeadline) -> [Multiaddr] {
        entries(now: now).filter(\.isConfirmed).map(\.address)
    }

    /// Every tracked address, the best supported first. Observations older than
    /// ``Configuration/timeToLive`` do not count.
    public func entries(now: NIODeadline) -> [Entry] {
        let oldest = now - configuration.timeToLive
        return addresses.compactMap { address, entry -> Entry? in
            let live = entry.observers.values.filter { $0 >= oldest }
            guard let lastSeen = live.max() else { return nil }
            return Entry(
                address: address, localAddress: entry.localAddress, observers: live.count, lastSeen: lastSeen,
                isConfirmed: live.count >= configuration.confirmations)
        }
        .sorted { ($0.observers, $0.lastSeen) > ($1.observers, $1.lastSeen) }
    }

    /// The number of addresses tracked (some may have expired since the last call that took the
    /// time).
    public var count: Int { addresses.count }

    private mutating func removeVote(of observer: PeerID, from address: Multiaddr) {
        guard var entry = addresses[address] else { return }
        entry.observers[observer] = nil
        addresses[address] = entry.observers.isEmpty ? nil : entry
    }

    /// Evicts the entry with the fewest observers (the least recently seen among them), if it has
    /// no more than `newcomerObservers`.
    private mutating func evictOne(toMakeRoomFor newcomerObservers: Int) -> Bool {
        guard let victim = addresses.min(by: { ($0.value.observers.count, $0.value.lastSeen) < ($1.value.observers.count, $1.value.lastSeen) }),
            victim.value.observers.count <= newcomerObservers
        else { return false }
        addresses[victim.key] = nil
        votes = votes.filter { $0.value != victim.key }
        return true
    }
}
