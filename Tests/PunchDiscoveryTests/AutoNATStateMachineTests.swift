import Foundation
import NIOCore
import PunchCrypto
@testable import PunchDiscovery
import PunchWire
import Testing

@Suite struct AutoNATServerStateMachineTests {
    let client = PrivateKey.generate().peerID
    let observed = try! IPAddress("203.0.113.1")

    func configuration(allowPrivate: Bool = false) -> AutoNATServerConfiguration {
        var configuration = AutoNATServerConfiguration()
        configuration.allowPrivateAddresses = allowPrivate
        return configuration
    }

    func request(_ addresses: [String], nonce: UInt64 = 42) throws -> PBAutoNATv2Message {
        var request = PBAutoNATv2DialRequest()
        request.addrs = try addresses.map { Data(try Multiaddr($0).bytes) }
        request.nonce = nonce
        var message = PBAutoNATv2Message()
        message.msg = .dialRequest(request)
        return message
    }

    func data(_ count: Int) -> PBAutoNATv2Message {
        var response = PBAutoNATv2DialDataResponse()
        response.data = Data(count: count)
        var message = PBAutoNATv2Message()
        message.msg = .dialDataResponse(response)
        return message
    }

    @Test func anAddressAtTheObservedIPIsDialedWithoutDialData() throws {
        var machine = AutoNATServerStateMachine(configuration: configuration(), client: client, observedIP: observed)
        let action = try machine.receive(try request(["/ip4/203.0.113.1/tcp/4001"], nonce: 7))
        let expected = try Multiaddr("/ip4/203.0.113.1/tcp/4001").appendingPeerID(client.multihash)
        #expect(action == .dialBack(address: expected, addressIndex: 0, nonce: 7))
        #expect(machine.dialBackFinished(.succeeded) == .respond(status: .ok, addressIndex: 0, dialStatus: .ok))
    }

    @Test func anotherIPCostsDialDataAndTheDialWaitsForAllOfIt() throws {
        var machine = AutoNATServerStateMachine(configuration: configuration(), client: client, observedIP: observed)
        let action = try machine.receive(try request(["/ip4/198.51.100.7/tcp/4001"]))
        #expect(action == .requestDialData(addressIndex: 0, bytes: 30_000))
        var received = 0
        while received + 4096 < 30_000 {
            #expect(try machine.receive(data(4096)) == .awaitDialData)
            received += 4096
        }
        // The last chunk may overshoot; only then is the dial asked for.
        guard case .dialBack(_, 0, 42) = try machine.receive(data(4096)) else {
            Issue.record("no dial-back after the last chunk")
            return
        }
        #expect(machine.dialDataReceived >= 30_000)
        #expect(machine.dialBackFinished(.dialFailed) == .respond(status: .ok, addressIndex: 0, dialStatus: .eDialError))
    }

    @Test func theFirstAddressTheServerIsWillingToDialIsChosen() throws {
        var machine = AutoNATServerStateMachine(configuration: configuration(), client: client, observedIP: observed)
        let other = PrivateKey.generate().peerID
        let action = try machine.receive(
            try request([
                "/ip4/10.0.1.2/tcp/4001",  // private
                "/ip4/127.0.0.1/tcp/4001",  // loopback
                "/ip4/203.0.113.1/udp/4001/quic-v1",  // not TCP
                "/ip4/203.0.113.1/tcp/4001/p2p/\(other)",  // another peer's
                "/ip4/203.0.113.1/tcp/4002/p2p/\(client)",
            ]))
        guard case .dialBack(let address, 4, _) = action else {
            Issue.record("expected the fifth address, got \(action)")
            return
        }
        #expect(address.transportEndpoint?.port == 4002)
        #expect(machine.dialBackFinished(.dialBackFailed) == .respond(status: .ok, addressIndex: 4, dialStatus: .eDialBackError))
    }

    @Test func privateAddressesAreRefusedUnlessAllowed() throws {
        var strict = AutoNATServerStateMachine(configuration: configuration(), client: client, observedIP: try IPAddress("127.0.0.1"))
        #expect(try strict.receive(try request(["/ip4/127.0.0.1/tcp/4001", "/ip4/10.0.0.1/tcp/1"])) == .respond(status: .eDialRefused, addressIndex: 0, dialStatus: .unused))
        var lab = AutoNATServerStateMachine(configuration: configuration(allowPrivate: true), client: client, observedIP: try IPAddress("127.0.0.1"))
        guard case .dialBack = try lab.receive(try request(["/ip4/127.0.0.1/tcp/4001"])) else {
            Issue.record("a loopback address is dialed when allowed")
            return
        }
    }

    @Test func anIPv4OnlyServerRefusesIPv6AddressesAndTheOtherWayRound() throws {
        var v4Only = AutoNATServerStateMachine(configuration: configuration(), client: client, observedIP: observed, dialsIPv4: true, dialsIPv6: false)
        guard case .dialBack(_, 1, _) = try v4Only.receive(try request(["/ip6/2001:db8::1/tcp/4001", "/ip4/203.0.113.1/tcp/4001"])) else {
            Issue.record("an IPv4-only server skips the IPv6 address")
            return
        }
        var v6Only = AutoNATServerStateMachine(configuration: configuration(), client: client, observedIP: observed, dialsIPv4: false, dialsIPv6: true)
        #expect(try v6Only.receive(try request(["/ip4/203.0.113.1/tcp/4001"])) == .respond(status: .eDialRefused, addressIndex: 0, dialStatus: .unused))
    }

    @Test func overRelayEveryAddressCostsDialData() throws {
        var machine = AutoNATServerStateMachine(configuration: configuration(), client: client, observedIP: nil)
        #expect(try machine.receive(try request(["/ip4/203.0.113.1/tcp/4001"])) == .requestDialData(addressIndex: 0, bytes: 30_000))
    }

    @Test func messagesOutOfOrderAndOversizedChunksAreErrors() throws {
        var early = AutoNATServerStateMachine(configuration: configuration(), client: client, observedIP: observed)
        #expect(throws: DiscoveryError(.autonatUnexpectedMessage, "")) { try early.receive(data(10)) }

        var twice = AutoNATServerStateMachine(configuration: configuration(), client: client, observedIP: observed)
        _ = try twice.receive(try request(["/ip4/203.0.113.1/tcp/4001"]))
        #expect(throws: DiscoveryError(.autonatUnexpectedMessage, "")) { try twice.receive(try request(["/ip4/203.0.113.1/tcp/4001"])) }

        var big = AutoNATServerStateMachine(configuration: configuration(), client: client, observedIP: observed)
        _ = try big.receive(try request(["/ip4/198.51.100.7/tcp/4001"]))
        #expect(throws: DiscoveryError(.autonatMessageTooLarge, "")) { try big.receive(data(4097)) }

        var empty = AutoNATServerStateMachine(configuration: configuration(), client: client, observedIP: observed)
        #expect(throws: DiscoveryError(.autonatUnexpectedMessage, "")) { try empty.receive(PBAutoNATv2Message()) }
    }

    @Test func rejectionAnswersRequestRejected() {
        var machine = AutoNATServerStateMachine(configuration: configuration(), client: client, observedIP: observed)
        #expect(machine.reject() == .respond(status: .eRequestRejected, addressIndex: 0, dialStatus: .unused))
    }

    @Test func configurationKeepsDialDataWithinTheSpecsRange() {
        var configuration = AutoNATServerConfiguration()
        #expect(throws: Never.self) { try configuration.validate() }
        configuration.dialDataBytes = 29_999
        #expect(throws: DiscoveryError(.invalidConfiguration, "")) { try configuration.validate() }
        configuration.dialDataBytes = 100_001
        #expect(throws: DiscoveryError(.invalidConfiguration, "")) { try configuration.validate() }
    }
}

extension AutoNATServerStateMachineTests {
    /// A deterministic generator, so a failure can be replayed.
    struct SplitMix: RandomNumberGenerator {
        var state: UInt64
        mutating func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
    }

    /// Random message sequences never crash the machine, every refusal is a typed error, and a
    /// dial-back to an address other than the observed IP is only ever asked for once the
    /// configured dial data has arrived.
    @Test func randomMessageSequencesNeverDialBeforeTheDataIsPaid() throws {
        var random = SplitMix(state: 2026)
        let addresses = ["/ip4/203.0.113.1/tcp/4001", "/ip4/198.51.100.7/tcp/4001", "/ip4/10.0.0.1/tcp/1", "/ip4/127.0.0.1/tcp/2"]
        for _ in 0..<2000 {
            var machine = AutoNATServerStateMachine(configuration: configuration(), client: client, observedIP: observed)
            for _ in 0..<Int.random(in: 1...12, using: &random) {
                var message = PBAutoNATv2Message()
                switch Int.random(in: 0...4, using: &random) {
                case 0:
                    message = try request((0..<Int.random(in: 0...3, using: &random)).map { _ in addresses.randomElement(using: &random)! })
                case 1, 2:
                    message = data(Int.random(in: 0...4200, using: &random))
                case 3:
                    message.msg = .dialResponse(PBAutoNATv2DialResponse())
                default:
                    message.msg = .dialDataRequest(PBAutoNATv2DialDataRequest())
                }
                do {
                    let action = try machine.receive(message)
                    if case .dialBack(let address, _, _) = action, address.ipAddress != observed {
                        #expect(machine.dialDataReceived >= 30_000, "dialed \(address) after \(machine.dialDataReceived) bytes")
                    }
                } catch let error as DiscoveryError {
                    #expect([.autonatUnexpectedMessage, .autonatMessageTooLarge].contains(error.code))
                }
            }
        }
    }
}

@Suite struct AutoNATServerAdmissionTests {
    let start = NIODeadline.uptimeNanoseconds(1_000_000_000)

    func admit(_ admission: inout AutoNATServerAdmission, _ peer: PeerID, now: NIODeadline) -> Bool {
        admission.admit(peer, now: now)
    }

    @Test func concurrencyIsLimitedGlobally() {
        var configuration = AutoNATServerConfiguration()
        configuration.maximumConcurrentRequests = 2
        var admission = AutoNATServerAdmission(configuration: configuration)
        let peers = (0..<3).map { _ in PrivateKey.generate().peerID }
        #expect(admit(&admission, peers[0], now: start))
        #expect(admit(&admission, peers[1], now: start))
        #expect(!admit(&admission, peers[2], now: start))
        admission.finish(peers[0])
        #expect(admit(&admission, peers[2], now: start))
    }

    @Test func onePeerHasAtMostTwoRequestsAtOnce() {
        var admission = AutoNATServerAdmission(configuration: AutoNATServerConfiguration())
        let peer = PrivateKey.generate().peerID
        #expect(admit(&admission, peer, now: start))
        #expect(admit(&admission, peer, now: start))
        #expect(!admit(&admission, peer, now: start))
        #expect(admit(&admission, PrivateKey.generate().peerID, now: start))
        admission.finish(peer)
        #expect(admit(&admission, peer, now: start))
        #expect(admission.active == 3)
    }

    @Test func eachPeerHasARateWindow() {
        var configuration = AutoNATServerConfiguration()
        configuration.maximumRequestsPerPeer = 2
        configuration.rateWindow = .seconds(60)
        var admission = AutoNATServerAdmission(configuration: configuration)
        let peer = PrivateKey.generate().peerID
        for _ in 0..<2 {
            #expect(admit(&admission, peer, now: start))
            admission.finish(peer)
        }
        #expect(!admit(&admission, peer, now: start + .seconds(30)))
        let other = PrivateKey.generate().peerID
        #expect(admit(&admission, other, now: start + .seconds(30)))
        admission.finish(other)
        #expect(admit(&admission, peer, now: start + .seconds(61)))
    }

    @Test func theTableOfPeersIsBounded() {
        var configuration = AutoNATServerConfiguration()
        configuration.maximumTrackedPeers = 2
        configuration.rateWindow = .seconds(60)
        var admission = AutoNATServerAdmission(configuration: configuration)
        for _ in 0..<2 {
            let peer = PrivateKey.generate().peerID
            #expect(admit(&admission, peer, now: start))
            admission.finish(peer)
        }
        #expect(!admit(&admission, PrivateKey.generate().peerID, now: start + .seconds(1)))
        // Once the earlier peers' windows have passed they are forgotten.
        #expect(admit(&admission, PrivateKey.generate().peerID, now: start + .seconds(61)))
        #expect(admission.trackedPeers == 1)
    }
}

@Suite struct AutoNATCodecTests {
    @Test func aMessageOverTheLimitIsRefusedFromItsLengthPrefix() {
        var buffer = ByteBuffer()
        buffer.writeVarint(100_000)
        buffer.writeBytes([0x0A])
        #expect(throws: DiscoveryError(.autonatMessageTooLarge, "")) {
            _ = try AutoNATMessageReader<PBAutoNATv2Message>.decode(from: &buffer, maximumLength: 8192)
        }
        #expect(buffer.readableBytes == 4)  // nothing consumed
    }

    @Test func aPartialMessageWaitsAndGarbageIsMalformed() throws {
        var message = PBAutoNATv2Message()
        var request = PBAutoNATv2DialRequest()
        request.nonce = 99
        request.addrs = [Data(try Multiaddr("/ip4/203.0.113.1/tcp/4001").bytes)]
        message.msg = .dialRequest(request)
        var whole = try AutoNATFraming.frame(message)
        var partial = whole.getSlice(at: 0, length: whole.readableBytes - 1)!
        #expect(try AutoNATMessageReader<PBAutoNATv2Message>.decode(from: &partial, maximumLength: 8192) == nil)
        let decoded = try #require(try AutoNATMessageReader<PBAutoNATv2Message>.decode(from: &whole, maximumLength: 8192))
        #expect(decoded.dialRequest.nonce == 99)

        var garbage = ByteBuffer()
        garbage.writeVarint(3)
        garbage.writeBytes([0xFF, 0xFF, 0xFF])
        #expect(throws: DiscoveryError(.autonatMalformedMessage, "")) {
            _ = try AutoNATMessageReader<PBAutoNATv2Message>.decode(from: &garbage, maximumLength: 8192)
        }
    }
}

@Suite struct AddressReachabilityTrackerTests {
    let address = try! Multiaddr("/ip4/203.0.113.1/tcp/4001")
    let servers = (0..<5).map { _ in PrivateKey.generate().peerID }

    @Test func distinctServersMustAgree() {
        var tracker = AddressReachabilityTracker(confirmations: 3, maximumAddresses: 8, maximumServersPerAddress: 8)
        #expect(tracker.record(address, server: servers[0], reachable: true) == nil)
        #expect(tracker.record(address, server: servers[0], reachable: true) == nil)  // same server again
        #expect(tracker.record(address, server: servers[1], reachable: true) == nil)
        let update = tracker.record(address, server: servers[2], reachable: true)
        #expect(update?.reachability == .reachable && update?.successes == 3)
        #expect(tracker.reachability(of: address) == .reachable)
        // A server changing its mind replaces its vote: two for, one against is not enough.
        _ = tracker.record(address, server: servers[0], reachable: false)
        #expect(tracker.reachability(of: address) == .unknown)
    }

    @Test func oneConfirmationForASingleServer() {
        var tracker = AddressReachabilityTracker(confirmations: 1, maximumAddresses: 1, maximumServersPerAddress: 1)
        #expect(tracker.record(address, server: servers[0], reachable: false)?.reachability == .unreachable)
        // Bounded: a second address evicts the first.
        let other = try! Multiaddr("/ip4/203.0.113.2/tcp/4001")
        #expect(tracker.record(other, server: servers[0], reachable: true)?.reachability == .reachable)
        #expect(tracker.count == 1)
        #expect(tracker.reachability(of: address) == .unknown)
    }
}
