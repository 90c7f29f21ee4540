import NIOCore
import PunchCrypto
import PunchDiscovery
import PunchWire
import Testing

@Suite struct ObservedAddressBookTests {
    let start = NIODeadline.uptimeNanoseconds(1_000_000_000)
    let local = try! Multiaddr("/ip4/10.0.1.2/tcp/4001")
    let publicA = try! Multiaddr("/ip4/203.0.113.1/tcp/4001")
    let publicB = try! Multiaddr("/ip4/203.0.113.1/tcp/5555")
    let peers = (0..<8).map { _ in PrivateKey.generate().peerID }

    func book(confirmations: Int = 3, maximumAddresses: Int = 64, maximumObservers: Int = 16, ttl: TimeAmount = .minutes(30)) -> ObservedAddressBook {
        var configuration = ObservedAddressBook.Configuration()
        configuration.confirmations = confirmations
        configuration.maximumAddresses = maximumAddresses
        configuration.maximumObserversPerAddress = maximumObservers
        configuration.timeToLive = ttl
        return ObservedAddressBook(configuration: configuration)
    }

    @Test func anAddressIsConfirmedOnlyAtTheThresholdOfDistinctPeers() {
        var book = book()
        #expect(book.record(publicA, by: peers[0], local: local, now: start) == .added)
        #expect(book.record(publicA, by: peers[1], local: local, now: start) == .updated)
        #expect(book.confirmed(now: start).isEmpty)
        book.record(publicA, by: peers[2], local: local, now: start)
        #expect(book.confirmed(now: start) == [publicA])
        #expect(book.entries(now: start).first?.observers == 3)
        #expect(book.entries(now: start).first?.localAddress == local)
    }

    @Test func theSamePeerReportingAgainDoesNotCountTwice() {
        var book = book()
        for _ in 0..<5 { book.record(publicA, by: peers[0], local: local, now: start) }
        book.record(publicA, by: peers[1], local: local, now: start)
        #expect(book.confirmed(now: start).isEmpty)
        #expect(book.entries(now: start).first?.observers == 2)
    }

    @Test func aLowerThresholdConfirmsWithOnePeerAndTheP2PSuffixIsDropped() throws {
        var book = book(confirmations: 1)
        let withPeer = publicA.appendingPeerID(peers[5].multihash)
        book.record(withPeer, by: peers[0], local: local, now: start)
        #expect(book.confirmed(now: start) == [publicA])
        // Lowering the threshold of a running book takes effect at once.
        var strict = self.book()
        strict.record(publicA, by: peers[0], local: local, now: start)
        #expect(strict.confirmed(now: start).isEmpty)
        strict.configuration.confirmations = 1
        #expect(strict.confirmed(now: start) == [publicA])
    }

    @Test func observationsAgeOutAndARefreshKeepsThem() {
        var book = book(ttl: .seconds(60))
        for peer in peers.prefix(3) { book.record(publicA, by: peer, local: local, now: start) }
        #expect(book.confirmed(now: start + .seconds(59)) == [publicA])
        // peers[0] refreshes at +50 s; the other two lapse at +60 s.
        book.record(publicA, by: peers[0], local: local, now: start + .seconds(50))
        #expect(book.confirmed(now: start + .seconds(61)).isEmpty)
        #expect(book.entries(now: start + .seconds(61)).first?.observers == 1)
        book.expire(now: start + .seconds(111))
        #expect(book.count == 0)
    }

    @Test func aFlappingPeerVotesForOneAddressAtATime() {
        var book = book(confirmations: 2)
        book.record(publicA, by: peers[1], local: local, now: start)
        for round in 0..<4 {
            book.record(round % 2 == 0 ? publicA : publicB, by: peers[0], local: local, now: start + .seconds(Int64(round)))
        }
        // peers[0] last said B: A has peers[1] only, B has peers[0] only.
        #expect(book.confirmed(now: start + .seconds(5)).isEmpty)
        let observers = Dictionary(uniqueKeysWithValues: book.entries(now: start + .seconds(5)).map { ($0.address, $0.observers) })
        #expect(observers == [publicA: 1, publicB: 1])
        // Its vote moves back to A, which is then confirmed by two distinct peers; B is gone.
        book.record(publicA, by: peers[0], local: local, now: start + .seconds(6))
        #expect(book.confirmed(now: start + .seconds(6)) == [publicA])
        #expect(book.entries(now: start + .seconds(6)).map(\.address) == [publicA])
    }

    @Test func theBookIsBoundedAndKeepsWellSupportedAddresses() throws {
        var book = book(confirmations: 2, maximumAddresses: 2)
        // A is confirmed by two peers; B by one.
        book.record(publicA, by: peers[0], local: local, now: start)
        book.record(publicA, by: peers[1], local: local, now: start)
        book.record(publicB, by: peers[2], local: local, now: start)
        // A newcomer with one observer replaces B (fewest observers), not A.
        let newcomer = try Multiaddr("/ip4/198.51.100.9/tcp/1")
        #expect(book.record(newcomer, by: peers[3], local: local, now: start + .seconds(1)) == .added)
        #expect(book.count == 2)
        #expect(Set(book.entries(now: start + .seconds(1)).map(\.address)) == [publicA, newcomer])
        // When every entry has more observers than a newcomer, the newcomer is dropped.
        book.record(newcomer, by: peers[4], local: local, now: start + .seconds(2))
        let another = try Multiaddr("/ip4/198.51.100.10/tcp/1")
        #expect(book.record(another, by: peers[5], local: local, now: start + .seconds(3)) == .dropped)
        #expect(book.confirmed(now: start + .seconds(3)).count == 2)
    }

    @Test func observersPerAddressAreBounded() {
        var book = book(confirmations: 2, maximumObservers: 2)
        for (index, peer) in peers.prefix(5).enumerated() {
            book.record(publicA, by: peer, local: local, now: start + .seconds(Int64(index)))
        }
        #expect(book.entries(now: start + .seconds(5)).first?.observers == 2)
        #expect(book.confirmed(now: start + .seconds(5)) == [publicA])
    }

    @Test func unusableAddressesAreIgnoredAndBadConfigurationsRejected() throws {
        var book = book()
        let circuit = try Multiaddr("/ip4/203.0.113.10/tcp/4001/p2p/\(peers[0])/p2p-circuit")
        #expect(book.record(circuit, by: peers[1], local: local, now: start) == .ignored)
        #expect(book.count == 0)
        var configuration = ObservedAddressBook.Configuration()
        configuration.confirmations = 0
        #expect(throws: DiscoveryError(.invalidConfiguration, "")) { try configuration.validate() }
        configuration.confirmations = 17
        #expect(throws: DiscoveryError(.invalidConfiguration, "")) { try configuration.validate() }
        #expect(throws: DiscoveryError(.invalidConfiguration, "")) { try ObservedAddressTracker(configuration: configuration) }
    }
}
