import NIOCore
import PunchCrypto
import PunchWire

/// Where the node learned an address of a peer.
public enum AddressSource: String, Sendable, Hashable, CaseIterable {
    /// The application gave it (``NodeConfiguration/knownPeers``, ``PunchNode/addAddresses(_:for:source:ttl:)``).
    case user
    /// The peer listed it in identify (`listenAddrs`).
    case identify
    /// A circuit address through a relay (a reservation the peer holds, or one we built from a
    /// configured relay).
    case circuit
    /// Exchanged in DCUtR (the address a punch reached the peer at).
    case dcutr
    /// A port mapping (ours, advertised; or one a peer told us about).
    case portMapping = "port_mapping"
}

/// The addresses the node knows for each peer, each with its source and a time to live; bounded.
///
/// A value type with no I/O: time comes from the caller (`now`), so every rule here is tested
/// without clocks. ``PunchNode`` owns one.
///
/// Limits (``Limits``): at most ``Limits/maximumPeers`` peers and ``Limits/maximumAddressesPerPeer``
/// addresses each. A full store first forgets expired addresses, then the peer updated least
/// recently; a full peer forgets its address that expires first. Addresses the user gave never
/// expire and are the last a full peer gives up.
public struct PeerStore: Sendable {
    /// The store's bounds, each with a named default.
    public struct Limits: Sendable, Hashable {
        /// The default ``maximumPeers``: 1024.
        public static let defaultMaximumPeers = 1024
        /// The default ``maximumAddressesPerPeer``: 16.
        public static let defaultMaximumAddressesPerPeer = 16
        /// The default ``defaultTimeToLive``: one hour.
        public static let defaultAddressTimeToLive = TimeAmount.hours(1)

        /// The most peers with addresses.
        public var maximumPeers = Self.defaultMaximumPeers
        /// The most addresses kept per peer.
        public var maximumAddressesPerPeer = Self.defaultMaximumAddressesPerPeer
        /// How long an address learned from the network (identify, DCUtR, a circuit) is kept
        /// after it was last seen.
        public var addressTimeToLive = Self.defaultAddressTimeToLive

        public init() {}
    }

    /// One address of a peer.
    public struct Record: Sendable, Hashable {
        /// The address, without the peer's trailing `/p2p/` (a circuit address keeps its relay's).
        public var address: Multiaddr
        /// Where it came from (the most trusted source when several gave it).
        public var source: AddressSource
        /// When it is forgotten; `nil`: never (addresses the user gave).
        public var expires: NIODeadline?
        /// Whether it goes through a relay.
        public var isCircuit: Bool { address.isCircuit }
    }

    private struct Entry {
        var records: [Record] = []
        var updated: NIODeadline
    }

    /// The bounds.
    public let limits: Limits
    private var entries: [PeerID: Entry] = [:]

    /// An empty store.
    public init(limits: Limits = Limits()) {
        self.limits = limits
    }

    /// The peers with at least one address.
    public var peers: [PeerID] { Array(entries.keys) }

    /// How many peers have addresses.
    public var count: Int { entries.count }

    /// Adds (or refreshes) addresses of `peer`.
    ///
    /// A trailing `/p2p/<peer>` is removed; an address naming another peer at its end, or one
    /// that is neither an IP/DNS transport address nor a circuit address, is ignored.
    ///
    /// - Parameters:
    ///   - ttl: how long to keep them; `nil` uses ``Limits/addressTimeToLive``, except for
    ///     `.user`, whose addresses never expire.
    /// - Returns: the addresses that were new to the store.
    @discardableResult
    public mutating func add(
        _ addresses: [Multiaddr], for peer: PeerID, source: AddressSource, ttl: TimeAmount? = nil, now: NIODeadline
    ) -> [Multiaddr] {
        let expires: NIODeadline? = source == .user && ttl == nil ? nil : now + (ttl ?? limits.addressTimeToLive)
        var entry = entries[peer] ?? Entry(updated: now)
        var added: [Multiaddr] = []
        for raw in addresses {
            guard let address = Self.normalize(raw, for: peer) else { continue }
            if let index = entry.records.firstIndex(where: { $0.address == address }) {
                var record = entry.records[index]
                // A later sighting extends the life; a user's address stays permanent.
                if record.expires != nil { record.expires = expires.map { max($0, record.expires!) } }
                if Self.rank(source) < Self.rank(record.source) { record.source = source }
                entry.records[index] = record
                continue
            }
            if entry.records.count >= limits.maximumAddressesPerPeer {
                // Give up the address that expires first; a permanent one only for another.
                guard let victim = entry.records.indices.min(by: { Self.evictionOrder(entry.records[$0], entry.records[$1]) }),
                    entry.records[victim].expires != nil || expires == nil
                else { continue }
                entry.records.remove(at: victim)
            }
            entry.records.append(Record(address: address, source: source, expires: expires))
            added.append(address)
        }
        guard !entry.records.isEmpty else { return added }
        entry.updated = now
        if entries[peer] == nil, entries.count >= limits.maximumPeers {
            removeExpired(now: now)
            if entries.count >= limits.maximumPeers, let oldest = entries.min(by: { $0.value.updated < $1.value.updated })?.key {
                entries[oldest] = nil
            }
        }
        entries[peer] = entry
        return added
    }

    /// The addresses of `peer` that have not expired: direct ones first, then circuit
    /// addresses, each group by source (user, port mapping, DCUtR, identify, circuit) and then in
    /// the order learned.
    public func addresses(for peer: PeerID, now: NIODeadline) -> [Record] {
        guard let entry = entries[peer] else { return [] }
        let live = entry.records.enumerated().filter { $0.element.expires.map { $0 > now } ?? true }
        return live.sorted { a, b in
            if a.element.isCircuit != b.element.isCircuit { return !a.element.isCircuit }
            if Self.rank(a.element.source) != Self.rank(b.element.source) {
                return Self.rank(a.element.source) < Self.rank(b.element.source)
            }
            return a.offset < b.offset
        }.map(\.element)
    }

    /// Forgets one address of `peer` (for example one that proved to belong to another peer).
    public mutating func remove(_ address: Multiaddr, for peer: PeerID) {
        guard let normalized = Self.normalize(address, for: peer), var entry = entries[peer] else { return }
        entry.records.removeAll { $0.address == normalized }
        entries[peer] = entry.records.isEmpty ? nil : entry
    }

    /// Forgets every address that has expired.
    public mutating func removeExpired(now: NIODeadline) {
        for (peer, var entry) in entries {
            entry.records.removeAll { $0.expires.map { $0 <= now } ?? false }
            entries[peer] = entry.records.isEmpty ? nil : entry
        }
    }

    /// `address` as stored for `peer`: without a trailing `/p2p/<peer>`; `nil` if unusable.
    static func normalize(_ address: Multiaddr, for peer: PeerID) -> Multiaddr? {
        var address = address
        if case .p2p(let hash) = address.components.last {
            // A circuit address ends in its target; a direct one in the peer itself.
            guard hash == peer.multihash else { return nil }
            address = address.withoutPeerID()
        }
        if address.isCircuit {
            // …/p2p/RELAY/p2p-circuit: a relay we can reach, then the circuit.
            guard let relay = address.relayAddress, relay.transport != nil, relay.peerID != nil,
                address.components.last == .p2pCircuit
            else { return nil }
            return address
        }
        guard address.transport != nil else { return nil }
        return address
    }

    /// Trust order of sources: the lower, the earlier dialed and the longer kept.
    static func rank(_ source: AddressSource) -> Int {
        switch source {
        case .user: 0
        case .portMapping: 1
        case .dcutr: 2
        case .identify: 3
        case .circuit: 4
        }
    }

    private static func evictionOrder(_ a: Record, _ b: Record) -> Bool {
        switch (a.expires, b.expires) {
        case (nil, nil): false
        case (nil, _): false
        case (_, nil): true
        case (let x?, let y?): x < y
        }
    }
}
