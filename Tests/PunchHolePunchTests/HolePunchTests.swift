import Foundation
import NIOConcurrencyHelpers
import NIOCore
import PunchCrypto
import PunchRelay
import PunchTransport
import PunchWire
import Testing

@testable import PunchHolePunch

@Suite struct HolePunchAddressFilterTests {
    @Test func keepsPublicTCPAndDropsEverythingAPeerShouldNotMakeUsDial() throws {
        let addresses = try [
            "/ip4/203.0.113.7/tcp/4001", "/ip4/203.0.113.7/tcp/4001/p2p/12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA",
            "/ip4/127.0.0.1/tcp/4001", "/ip4/0.0.0.0/tcp/4001", "/ip4/224.0.0.1/tcp/4001", "/ip4/255.255.255.255/tcp/1",
            "/ip4/169.254.1.1/tcp/4001", "/ip4/10.0.1.2/tcp/4001", "/ip4/192.168.1.2/tcp/4001", "/ip4/172.20.0.1/tcp/4001",
            "/ip4/100.64.0.1/tcp/4001", "/ip4/198.51.100.9/udp/4001", "/ip4/198.51.100.9/tcp/0", "/ip6/::1/tcp/4001",
            "/ip6/fe80::1/tcp/4001", "/ip6/ff02::1/tcp/4001", "/ip6/fd00::1/tcp/4001", "/ip6/2001:db8::1/tcp/4001",
            "/dns4/example.com/tcp/4001",
        ].map { try Multiaddr($0) }
        let usable = HolePunchAddressFilter.usable(addresses, allowPrivate: false, limit: 8)
        let expected = [try Multiaddr("/ip4/203.0.113.7/tcp/4001"), try Multiaddr("/ip6/2001:db8::1/tcp/4001")]
        #expect(usable == expected)
        let lan = HolePunchAddressFilter.usable(addresses, allowPrivate: true, limit: 8)
        let (privateV4, uniqueLocal, loopback) = (try Multiaddr("/ip4/10.0.1.2/tcp/4001"), try Multiaddr("/ip6/fd00::1/tcp/4001"), try Multiaddr("/ip4/127.0.0.1/tcp/4001"))
        #expect(lan.contains(privateV4) && lan.contains(uniqueLocal))
        #expect(!lan.contains(loopback))
        let many = (1...50).map { try! Multiaddr("/ip4/198.51.100.\($0)/tcp/4001") }
        #expect(HolePunchAddressFilter.usable(many, allowPrivate: false, limit: 4).count == 4)
    }
}

/// The responding side of DCUtR against a misbehaving initiator, over a real relayed connection
/// on loopback.
@Suite struct HolePunchResponderTests {
    struct Setup {
        let relay: PunchHost
        let server: RelayServer
        let a: PunchHost
        let b: PunchHost
        let relayed: Connection
        let aAddress: Multiaddr
        let outcomes: AsyncStream<Result<HolePunchOutcome, any Error>>

        static func make(
            offering offered: [Multiaddr] = [try! Multiaddr("/ip4/198.51.100.1/tcp/4001")],
            configuration: HolePunchConfiguration = HolePunchConfiguration()
        ) async throws -> Setup {
            let relay = PunchHost(configuration: HostConfiguration(identity: .generate()))
            let relayAddress = try await relay.listen(Multiaddr("/ip4/127.0.0.1/tcp/0"))[0]
            let server = RelayServer(host: relay, addresses: [relayAddress.withoutPeerID()])
            // A serves DCUtR with a public-looking address of its own.
            let a = PunchHost(configuration: HostConfiguration(identity: .generate()))
            let aAddress = try await a.listen(Multiaddr("/ip4/127.0.0.1/tcp/0"))[0]
            let (outcomes, continuation) = AsyncStream.makeStream(of: Result<HolePunchOutcome, any Error>.self)
            HolePuncher.serve(on: a, configuration: configuration, localAddresses: { _ in offered }) { _, result in
                continuation.yield(result)
            }
            RelayClient.acceptCircuits(on: a)
            let aToRelay = try await a.dial(relayAddress)
            _ = try await RelayClient.reserve(on: aToRelay, host: a)
            let b = PunchHost(configuration: HostConfiguration(identity: .generate()))
            let bToRelay = try await b.dial(relayAddress)
            let relayed = try await RelayClient.connect(to: a.peerID, via: bToRelay, host: b)
            return Setup(relay: relay, server: server, a: a, b: b, relayed: relayed, aAddress: aAddress, outcomes: outcomes)
        }

        func close() async {
            await b.close()
            await a.close()
            await relay.close()
        }

        /// Opens a DCUtR stream as a scripted initiator: sends CONNECT without addresses, then
        /// calls `onAnswer` with the count of the responder's CONNECTs so far for each one; ends
        /// when the responder closes. Returns how many CONNECTs it answered with.
        func answers(
            onAnswer: (Int, NIOAsyncChannelOutboundWriter<ByteBuffer>) async throws -> Void
        ) async throws -> Int {
            let stream = try await relayed.openStream(protocol: HolePunchProtocol.id)
            return try await stream.channel.executeThenClose { inbound, outbound -> Int in
                var received = ByteBuffer()
                var answers = 0
                try await outbound.write(try HolePunchResponderTests.frame(.connect, []))
                for try await var chunk in inbound {
                    received.writeBuffer(&chunk)
                    while try ProtobufFraming.readDelimited(PBHolePunch.self, from: &received, maximumLength: 4096) != nil {
                        answers += 1
                        try await onAnswer(answers, outbound)
                    }
                }
                return answers
            }
        }

        func nextOutcome() async -> Result<HolePunchOutcome, any Error>? {
            var iterator = outcomes.makeAsyncIterator()
            return await iterator.next()
        }
    }

    static func frame(_ type: PBHolePunch.TypeEnum, _ addresses: [Data]) throws -> ByteBuffer {
        var message = PBHolePunch()
        message.type = type
        message.obsAddrs = addresses
        var buffer = ByteBuffer()
        try ProtobufFraming.writeDelimited(message, into: &buffer)
        return buffer
    }

    @Test func anOversizedMessageIsRefused() async throws {
        let setup = try await Setup.make()
        defer { Task { await setup.close() } }
        let stream = try await setup.relayed.openStream(protocol: HolePunchProtocol.id)
        try await stream.channel.executeThenClose { inbound, outbound in
            // 5 KiB of addresses: over the spec's 4 KiB.
            try await outbound.write(try Self.frame(.connect, (0..<80).map { _ in Data(repeating: 0x04, count: 64) }))
            for try await _ in inbound {}
        }
        let outcome = await setup.nextOutcome()
        guard case .failure(let error as HolePunchError)? = outcome else {
            Issue.record("expected a failure, got \(String(describing: outcome))")
            return
        }
        #expect(error.code == .malformedMessage)
    }

    @Test func junkAddressesAreNeverDialed() async throws {
        let setup = try await Setup.make()
        defer { Task { await setup.close() } }
        let junk: [Data] = try [
            "/ip4/127.0.0.1/tcp/22", "/ip4/10.0.0.1/tcp/80", "/ip4/224.0.0.251/tcp/5353", "/ip6/::1/tcp/22",
        ].map { Data(try Multiaddr($0).bytes) } + [Data([0xFF, 0xFF, 0xFF]), Data()]
        let stream = try await setup.relayed.openStream(protocol: HolePunchProtocol.id)
        let answer = try await stream.channel.executeThenClose { inbound, outbound -> PBHolePunch? in
            try await outbound.write(try Self.frame(.connect, junk))
            var received = ByteBuffer()
            var answer: PBHolePunch?
            for try await var chunk in inbound {
                received.writeBuffer(&chunk)
                if let message = try ProtobufFraming.readDelimited(PBHolePunch.self, from: &received, maximumLength: 4096) {
                    answer = message
                    try await outbound.write(try Self.frame(.sync, []))
                    outbound.finish()
                }
            }
            return answer
        }
        // The responder still answers with its own address, but dials nothing.
        #expect(answer?.type == .connect)
        let offered = try Multiaddr("/ip4/198.51.100.1/tcp/4001")
        #expect(answer?.obsAddrs.compactMap { try? Multiaddr(bytes: Array($0)) } == [offered])
        let outcome = await setup.nextOutcome()
        guard case .failure(let error as HolePunchError)? = outcome else {
            Issue.record("expected a failure, got \(String(describing: outcome))")
            return
        }
        #expect(error.code == .failed)
        #expect(error.message.contains("no usable public address"))
        #expect(setup.a.connections(to: setup.b.peerID).allSatisfy { $0.path == .relayed })
    }

    /// After a failed attempt the responder waits for the initiator's next CONNECT longer than one
    /// message may take: the initiator's attempt can still be upgrading its punched connection
    /// (CI, 10 % loss: a Noise handshake stalled 10 s on one side after the other side's dial
    /// had given up). Here the next CONNECT comes after twice the exchange timeout.
    @Test func theNextConnectMayComeLaterThanOneMessage() async throws {
        var configuration = HolePunchConfiguration()
        configuration.exchangeTimeout = .milliseconds(500)
        let setup = try await Setup.make(configuration: configuration)
        defer { Task { await setup.close() } }
        // No usable address: each attempt fails after SYNC without a dial.
        let answers = try await setup.answers { answers, outbound in
            try await outbound.write(try Self.frame(.sync, []))
            if answers == 2 {
                outbound.finish()
            } else {
                try await Task.sleep(for: .seconds(1))
                try await outbound.write(try Self.frame(.connect, []))
            }
        }
        #expect(answers == 2)
        let outcome = await setup.nextOutcome()
        guard case .failure(let error as HolePunchError)? = outcome else {
            Issue.record("expected a failure, got \(String(describing: outcome))")
            return
        }
        #expect(error.code == .failed, "\(error)")
    }

    @Test func moreConnectsThanAttemptsAreRefused() async throws {
        let setup = try await Setup.make()
        defer { Task { await setup.close() } }
        let answers = try await setup.answers { _, outbound in
            // SYNC, then CONNECT again at once: a flood of exchanges.
            try? await outbound.write(try Self.frame(.sync, []))
            try? await outbound.write(try Self.frame(.connect, []))
        }
        #expect(answers == HolePunchConfiguration().attempts)
        let outcome = await setup.nextOutcome()
        guard case .failure(let error as HolePunchError)? = outcome else {
            Issue.record("expected a failure, got \(String(describing: outcome))")
            return
        }
        #expect(error.code == .failed)
    }

    @Test func dcutrOnADirectConnectionIsRefused() async throws {
        let setup = try await Setup.make()
        defer { Task { await setup.close() } }
        let direct = try await setup.b.dial(setup.aAddress)
        await #expect(throws: (any Error).self) {
            _ = try await HolePuncher.initiate(over: direct, host: setup.b, localAddresses: [try Multiaddr("/ip4/198.51.100.2/tcp/1")])
        }
        let stream = try await direct.openStream(protocol: HolePunchProtocol.id)
        try await stream.channel.executeThenClose { inbound, outbound in
            try await outbound.write(try Self.frame(.connect, []))
            for try await _ in inbound {}
        }
        let outcome = await setup.nextOutcome()
        guard case .failure(let error as HolePunchError)? = outcome else {
            Issue.record("expected a failure, got \(String(describing: outcome))")
            return
        }
        #expect(error.code == .notRelayed)
    }
}

/// `HolePuncher.keepUpgrading`: rounds with growing waits, an early round when our addresses
/// change, and no further round once the relayed connection is gone or a direct one exists.
/// The responder offers no address, so every round fails before SYNC and nothing is dialed.
@Suite struct HolePunchRetryTests {
    final class Rounds: Sendable {
        let log = NIOLockedValueBox<[(failed: Bool, retryIn: Duration?)]>([])
        var count: Int { log.withLockedValue { $0.count } }
        let errors = NIOLockedValueBox<[String]>([])
        func record(_ result: Result<HolePunchOutcome, any Error>, _ retryIn: Duration?) {
            if case .failure(let error) = result { errors.withLockedValue { $0.append("\(error)") } }
            log.withLockedValue { $0.append((result.failed, retryIn)) }
        }
        func wait(for rounds: Int) async throws {
            for _ in 0..<1500 where count < rounds { try await Task.sleep(for: .milliseconds(10)) }
            #expect(count >= rounds, "round \(rounds) did not start")
        }
    }

    static let ours = [try! Multiaddr("/ip4/198.51.100.2/tcp/4001")]

    static func configuration(delay: Duration, rounds: Int = 4) -> HolePunchConfiguration {
        var configuration = HolePunchConfiguration()
        configuration.rounds = rounds
        configuration.retryDelay = delay
        configuration.retryMultiplier = 2
        configuration.addressCheckInterval = .milliseconds(20)
        return configuration
    }

    @Test func roundsWaitLongerEachTimeThenStop() async throws {
        // Both sides offer a loopback port nobody listens on: every punch dial is refused at once,
        // which is a failure worth retrying (HolePunchRetry: .retry).
        let closed = try await Self.closedLoopbackPort()
        var loopback = HolePunchConfiguration()
        loopback.allowLoopbackAddresses = true
        loopback.exchangeTimeout = .seconds(2)
        loopback.dialTimeout = .seconds(1)
        let setup = try await HolePunchResponderTests.Setup.make(offering: [closed], configuration: loopback)
        defer { Task { await setup.close() } }
        let rounds = Rounds()
        var configuration = Self.configuration(delay: .milliseconds(50), rounds: 3)
        configuration.allowLoopbackAddresses = true
        configuration.dialAdvertisedAddressesFirst = false  // A's loopback listener would answer
        configuration.exchangeTimeout = .seconds(2)
        configuration.dialTimeout = .seconds(1)
        let outcome = await HolePuncher.keepUpgrading(
            setup.relayed, host: setup.b, localAddresses: { [closed] }, configuration: configuration, onRound: rounds.record)
        #expect(outcome == nil)
        let log = rounds.log.withLockedValue { $0 }
        #expect(log.map(\.failed) == [true, true, true], "\(rounds.errors.withLockedValue { $0 })")
        #expect(log.map(\.retryIn) == [.milliseconds(50), .milliseconds(100), nil], "\(rounds.errors.withLockedValue { $0 })")
    }

    /// A loopback address whose port was just bound and released: nobody listens there.
    static func closedLoopbackPort() async throws -> Multiaddr {
        let host = PunchHost(configuration: HostConfiguration(identity: .generate()))
        let address = try await host.listen(Multiaddr("/ip4/127.0.0.1/tcp/0"))[0].withoutPeerID()
        await host.close()
        return address
    }

    @Test func noAddressesOnTheOtherSideWaitsForOursToChangeInsteadOfRetrying() async throws {
        let setup = try await HolePunchResponderTests.Setup.make(offering: [])
        defer { Task { await setup.close() } }
        let rounds = Rounds()
        let task = Task {
            await HolePuncher.keepUpgrading(
                setup.relayed, host: setup.b, localAddresses: { Self.ours }, configuration: Self.configuration(delay: .milliseconds(20)),
                onRound: rounds.record)
        }
        defer { task.cancel() }
        try await rounds.wait(for: 1)
        // Far beyond every retry delay (20, 40, 80 ms): no round, since nothing changed.
        try await Task.sleep(for: .milliseconds(500))
        #expect(rounds.count == 1)
    }

    @Test func aNewAddressStartsTheNextRoundAtOnce() async throws {
        let setup = try await HolePunchResponderTests.Setup.make(offering: [])
        defer { Task { await setup.close() } }
        let rounds = Rounds()
        let addresses = NIOLockedValueBox(Self.ours)
        let task = Task {
            await HolePuncher.keepUpgrading(
                setup.relayed, host: setup.b, localAddresses: { addresses.withLockedValue { $0 } },
                configuration: Self.configuration(delay: .seconds(600)), onRound: rounds.record)
        }
        defer { task.cancel() }
        try await rounds.wait(for: 1)
        // Waiting 600 s for round 2 — unless our public address changes.
        addresses.withLockedValue { $0 = [try! Multiaddr("/ip4/198.51.100.3/tcp/4001")] }
        try await rounds.wait(for: 2)
    }

    @Test func noFurtherRoundOnceTheRelayedConnectionCloses() async throws {
        let setup = try await HolePunchResponderTests.Setup.make(offering: [])
        defer { Task { await setup.close() } }
        let rounds = Rounds()
        let task = Task {
            await HolePuncher.keepUpgrading(
                setup.relayed, host: setup.b, localAddresses: { Self.ours }, configuration: Self.configuration(delay: .seconds(600)),
                onRound: rounds.record)
        }
        try await rounds.wait(for: 1)
        await setup.relayed.close()
        #expect(await task.value == nil)
        #expect(rounds.count == 1)
    }

    @Test func noFurtherRoundOnceADirectConnectionExists() async throws {
        let setup = try await HolePunchResponderTests.Setup.make(offering: [])
        defer { Task { await setup.close() } }
        let rounds = Rounds()
        let task = Task {
            await HolePuncher.keepUpgrading(
                setup.relayed, host: setup.b, localAddresses: { Self.ours }, configuration: Self.configuration(delay: .seconds(600)),
                onRound: rounds.record)
        }
        try await rounds.wait(for: 1)
        _ = try await setup.b.dial(setup.aAddress)
        #expect(await task.value == nil)
        #expect(rounds.count == 1)
    }
}

extension Result {
    var failed: Bool { if case .failure = self { true } else { false } }
}

/// The roles on the punched connection. DCUtR.md: "For the purpose of all protocols run on top of
/// this TCP connection, A is assumed to be the client and B the server." py-libp2p 0.8.1 follows
/// it (its initiator dials with `dial_addr_as_responder`, its responder dials as the client), and
/// a peer the other way round meets it with two Noise initiators and never connects. Here Punch is
/// B and a hand-written A does exactly what the spec (and py-libp2p) does, over a real relay on
/// loopback.
@Suite struct HolePunchRoleTests {
    @Test func theInitiatorIsTheServerOfThePunchedConnection() async throws {
        let relay = PunchHost(configuration: HostConfiguration(identity: .generate()))
        let relayAddress = try await relay.listen(Multiaddr("/ip4/127.0.0.1/tcp/0"))[0]
        let server = RelayServer(host: relay, addresses: [relayAddress.withoutPeerID()])
        let a = PunchHost(configuration: HostConfiguration(identity: .generate()))
        let b = PunchHost(configuration: HostConfiguration(identity: .generate()))
        defer {
            Task {
                await b.close()
                await a.close()
                await relay.close()
                _ = server
            }
        }
        let aAddress = try await a.listen(Multiaddr("/ip4/127.0.0.1/tcp/0"))[0]
        let bAddress = try await b.listen(Multiaddr("/ip4/127.0.0.1/tcp/0"))[0]
        RelayClient.acceptCircuits(on: a)
        _ = try await RelayClient.reserve(on: try await a.dial(relayAddress), host: a)

        // A by hand: CONNECT back with its address, then on SYNC dial B at once as the client.
        let (dials, dialed) = AsyncStream.makeStream(of: Result<Connection, any Error>.self)
        let bPeer = b.peerID
        a.setStreamHandler(for: HolePunchProtocol.id) { stream in
            do {
                try await stream.channel.executeThenClose { inbound, outbound in
                    var iterator = inbound.makeAsyncIterator()
                    var received = ByteBuffer()
                    func next() async throws -> PBHolePunch {
                        while true {
                            if let message = try ProtobufFraming.readDelimited(PBHolePunch.self, from: &received, maximumLength: 4096) {
                                return message
                            }
                            guard var chunk = try await iterator.next() else { throw HolePunchError(.streamClosed, "B closed the stream") }
                            received.writeBuffer(&chunk)
                        }
                    }
                    let connect = try await next()
                    let theirs = try #require(connect.obsAddrs.first.map { try Multiaddr(bytes: Array($0)) })
                    // B's SYN may reach our listener before our own dial: it is the punch too.
                    a.expectHolePunch(from: [theirs], peer: bPeer, noiseInitiator: true, for: .seconds(10))
                    try await outbound.write(try HolePunchResponderTests.frame(.connect, [Data(aAddress.withoutPeerID().bytes)]))
                    #expect(try await next().type == .sync)
                    dialed.yield(.success(try await a.dial(theirs.appendingPeerID(bPeer.multihash), noiseInitiator: true, timeout: .seconds(5))))
                }
            } catch {
                dialed.yield(.failure(error))
            }
        }

        let relayed = try await RelayClient.connect(to: a.peerID, via: try await b.dial(relayAddress), host: b)
        var configuration = HolePunchConfiguration()
        configuration.allowLoopbackAddresses = true
        configuration.attempts = 1
        let outcome = try await HolePuncher.initiate(
            over: relayed, host: b, localAddresses: [bAddress.withoutPeerID()], configuration: configuration)
        #expect(outcome.connection.path == .direct)
        #expect(outcome.connection.remotePeerID == a.peerID)
        var results = dials.makeAsyncIterator()
        let fromA = try #require(await results.next()).get()
        #expect(fromA.path == .direct && fromA.remotePeerID == b.peerID)
        // Streams work both ways on it: the yamux roles agree too.
        #expect(try await outcome.connection.ping(count: 1).count == 1)
        #expect(try await fromA.ping(count: 1).count == 1)
    }
}
