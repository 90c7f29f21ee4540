import Punch
import Testing

@Suite struct ConnectionSelectionTests {
    let low: PeerID
    let high: PeerID

    init() {
        let (x, y) = (PrivateKey.generate().peerID, PrivateKey.generate().peerID)
        (low, high) = x.multihash.bytes.lexicographicallyPrecedes(y.multihash.bytes) ? (x, y) : (y, x)
    }

    @Test func directIsKeptOverRelayed() {
        let candidates = [
            ConnectionSelection.Candidate(path: .relayed, initiator: low, order: 1),
            ConnectionSelection.Candidate(path: .direct, initiator: high, order: 2),
        ]
        let decision = ConnectionSelection.decide(candidates, local: low)
        #expect(decision?.keep == 1)
        // The relayed one is the host's to close once idle.
        #expect(decision?.close == [])
    }

    @Test func crossedDialsKeepTheOneWhoseInitiatorHasTheSmallerPeerIDOnBothSides() {
        // Each side lists the two connections in its own order; both keep the same one.
        let onLow = [
            ConnectionSelection.Candidate(path: .direct, initiator: low, order: 1),
            ConnectionSelection.Candidate(path: .direct, initiator: high, order: 2),
        ]
        let onHigh = [
            ConnectionSelection.Candidate(path: .direct, initiator: high, order: 1),
            ConnectionSelection.Candidate(path: .direct, initiator: low, order: 2),
        ]
        let a = ConnectionSelection.decide(onLow, local: low)
        let b = ConnectionSelection.decide(onHigh, local: high)
        #expect(onLow[a!.keep].initiator == low)
        #expect(onHigh[b!.keep].initiator == low)
        #expect(a?.close == [1])
        #expect(b?.close == [0])
    }

    @Test func twoConnectionsWithOneInitiatorAreSortedOutByThatInitiatorAlone() {
        let candidates = [
            ConnectionSelection.Candidate(path: .direct, initiator: high, order: 2),
            ConnectionSelection.Candidate(path: .direct, initiator: high, order: 1),
        ]
        #expect(ConnectionSelection.decide(candidates, local: high)?.keep == 1)
        #expect(ConnectionSelection.decide(candidates, local: high)?.close == [0])
        #expect(ConnectionSelection.decide(candidates, local: low)?.close == [])
    }
}
