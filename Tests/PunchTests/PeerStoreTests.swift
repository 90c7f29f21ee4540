import NIOCore
import Punch
import Testing

@Suite struct PeerStoreTests {
    let peer = PrivateKey.generate().peerID
    let now = NIODeadline.uptimeNanoseconds(1_000_000_000)

    @Test func addressesAreKeptWithTheirSourceDirectFirstThenCircuits() throws {
        var store = PeerStore()
        let circuit = try Multiaddr("/ip4/203.0.113.10/tcp/4001/p2p/\(PrivateKey.generate().peerID)/p2p-circuit")
        store.add([circuit], for: peer, source: .circuit, now: now)
        store.add([try Multiaddr("/ip4/198.51.100.1/tcp/4001/p2p/\(peer)")], for: peer, source: .identify, now: now)
        store.add([try Multiaddr("/ip4/198.51.100.2/tcp/4001")], for: peer, source: .user, now: now)
        let records = store.addresses(for: peer, now: now)
        #expect(records.map(\.address) == [
            try Multiaddr("/ip4/198.51.100.2/tcp/4001"), try Multiaddr("/ip4/198.51.100.1/tcp/4001"), circuit,
        ])
        #expect(records.map(\.source) == [.user, .identify, .circuit])
    }

    @Test func anAddressNamingAnotherPeerIsIgnored() throws {
        var store = PeerStore()
        let other = PrivateKey.generate().peerID
        let added = store.add([try Multiaddr("/ip4/198.51.100.1/tcp/4001/p2p/\(other)"), try Multiaddr("/p2p-circuit")], for: peer, source: .user, now: now)
        #expect(added.isEmpty)
        #expect(store.count == 0)
    }

    @Test func learnedAddressesExpireAndUserAddressesDoNot() throws {
        var limits = PeerStore.Limits()
        limits.addressTimeToLive = .seconds(10)
        var store = PeerStore(limits: limits)
        store.add([try Multiaddr("/ip4/198.51.100.1/tcp/4001")], for: peer, source: .identify, now: now)
        store.add([try Multiaddr("/ip4/198.51.100.2/tcp/4001")], for: peer, source: .user, now: now)
        let later = now + .seconds(11)
        #expect(store.addresses(for: peer, now: later).map(\.source) == [.user])
        store.removeExpired(now: later)
        #expect(store.addresses(for: peer, now: later).count == 1)
        // Seeing an address again extends its life.
        store.add([try Multiaddr("/ip4/198.51.100.3/tcp/4001")], for: peer, source: .identify, now: now)
        store.add([try Multiaddr("/ip4/198.51.100.3/tcp/4001")], for: peer, source: .identify, now: now + .seconds(8))
        #expect(store.addresses(for: peer, now: now + .seconds(15)).count == 2)
    }

    @Test func aFullPeerGivesUpTheAddressThatExpiresFirst() throws {
        var limits = PeerStore.Limits()
        limits.maximumAddressesPerPeer = 2
        var store = PeerStore(limits: limits)
        store.add([try Multiaddr("/ip4/198.51.100.1/tcp/1")], for: peer, source: .identify, now: now)
        store.add([try Multiaddr("/ip4/198.51.100.1/tcp/2")], for: peer, source: .identify, now: now + .seconds(1))
        store.add([try Multiaddr("/ip4/198.51.100.1/tcp/3")], for: peer, source: .identify, now: now + .seconds(2))
        #expect(store.addresses(for: peer, now: now + .seconds(2)).map { $0.address.transport?.port } == [2, 3])
    }

    @Test func aFullStoreForgetsThePeerUpdatedLeastRecently() throws {
        var limits = PeerStore.Limits()
        limits.maximumPeers = 2
        var store = PeerStore(limits: limits)
        let peers = (0..<3).map { _ in PrivateKey.generate().peerID }
        for (index, peer) in peers.enumerated() {
            store.add([try Multiaddr("/ip4/198.51.100.1/tcp/\(index + 1)")], for: peer, source: .user, now: now + .seconds(Int64(index)))
        }
        #expect(store.count == 2)
        #expect(Set(store.peers) == Set(peers.suffix(2)))
    }
}
