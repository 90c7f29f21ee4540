import Foundation
import Synchronization
import MetricsTestKit
import NIOCore
import Punch
import Testing

/// Nodes on loopback: one connection per peer however it is asked for, events to every
/// subscriber, reaching a peer by its PeerID through a relay.
@Suite struct PunchNodeLoopbackTests {
    static func node(_ configure: (inout NodeConfiguration) -> Void = { _ in }) async throws -> PunchNode {
        var configuration = NodeConfiguration(identity: .generate())
        configuration.listenAddresses = [try Multiaddr("/ip4/127.0.0.1/tcp/0")]
        configure(&configuration)
        let node = try PunchNode(configuration: configuration)
        Echo.register(on: node.host)
        try await node.start()
        return node
    }

    /// Waits (bounded) until `condition` holds; returns whether it did.
    static func eventually(within seconds: Double = 10, _ condition: () async -> Bool) async -> Bool {
        let deadline = ContinuousClock.now + .seconds(seconds)
        while ContinuousClock.now < deadline {
            if await condition() { return true }
            try? await Task.sleep(for: .milliseconds(50))
        }
        return await condition()
    }

    static func active(_ node: PunchNode, to peer: PeerID) -> [Connection] {
        node.host.connections(to: peer).filter(\.isActive)
    }

    @Test func twentyConcurrentConnectsEndWithOneConnection() async throws {
        let b = try await Self.node()
        let bAddress = await b.listenAddresses[0]
        let a = try await Self.node { $0.knownPeers[b.peerID] = [bAddress] }
        let connections = try await withThrowingTaskGroup(of: Connection.self) { group in
            // (One attempt for all twenty: nothing to sort out, whatever the grace.)
            for _ in 0..<20 { group.addTask { try await a.connect(to: b.peerID) } }
            return try await group.reduce(into: [Connection]()) { $0.append($1) }
        }
        #expect(Set(connections).count == 1, "every caller gets the same connection")
        #expect(Self.active(a, to: b.peerID).count == 1)
        #expect(await Self.eventually { Self.active(b, to: a.peerID).count == 1 })
        let echo = try await a.openStream(to: b.peerID, protocol: Echo.protocolID)
        try await echo.channel.executeThenClose { _, outbound in outbound.finish() }
        await a.shutdown()
        await b.shutdown()
    }

    /// Found by PunchGRPC's reconnect test: a connect right after the kept connection closed, before
    /// the node had processed the close, failed with "closed as it opened" instead of dialing.
    @Test func connectingRightAfterTheConnectionClosedDialsAgain() async throws {
        let b = try await Self.node()
        let bAddress = await b.listenAddresses[0]
        let a = try await Self.node { $0.knownPeers[b.peerID] = [bAddress] }
        for _ in 0..<5 {
            let first = try await a.connect(to: b.peerID)
            await first.close()
            let second = try await a.connect(to: b.peerID)
            #expect(second !== first)
            #expect(second.isActive)
        }
        await a.shutdown()
        await b.shutdown()
    }

    /// Counts a node's `connected` events.
    final class ConnectedCount: Sendable {
        let value = Mutex(0)
        init(_ node: PunchNode) {
            let events = node.events
            Task { [self] in
                for await event in events {
                    if case .connected = event { value.withLock { $0 += 1 } }
                }
            }
        }
        var count: Int { value.withLock { $0 } }
    }

    @Test func crossedDialsEndWithTheSameSingleConnectionOnBothSides() async throws {
        // Dials from ephemeral ports: two dials between the same listening ports at the same
        // instant are one TCP simultaneous open, which is DCUtR's business, not this rule's.
        for round in 0..<3 {
            let b = try await Self.node {
                $0.host.bindDialsToListenPort = false
                $0.duplicateIdleGrace = .zero
            }
            let a = try await Self.node {
                $0.host.bindDialsToListenPort = false
                $0.duplicateIdleGrace = .zero
            }
            await a.addAddresses(await b.listenAddresses, for: b.peerID)
            await b.addAddresses(await a.listenAddresses, for: a.peerID)
            let (countA, countB) = (ConnectedCount(a), ConnectedCount(b))
            async let fromA = a.connect(to: b.peerID)
            async let fromB = b.connect(to: a.peerID)
            _ = try await (fromA, fromB)
            // Settled: both sides saw the same connections come, and each keeps one, the same.
            let settled = await Self.eventually {
                let (onA, onB) = (Self.active(a, to: b.peerID), Self.active(b, to: a.peerID))
                guard countA.count == countB.count, onA.count == 1, onB.count == 1 else { return false }
                return onA[0].localAddress == onB[0].remoteAddress && onA[0].remoteAddress == onB[0].localAddress
            }
            #expect(settled, "round \(round): a: \(Self.active(a, to: b.peerID)), b: \(Self.active(b, to: a.peerID))")
            let onA = try #require(await a.connection(to: b.peerID))
            let onB = try #require(await b.connection(to: a.peerID))
            #expect(onA.localAddress == onB.remoteAddress && onA.remoteAddress == onB.localAddress, "\(onA) vs \(onB)")
            #expect(onA.isSecurityInitiator != onB.isSecurityInitiator)
            await a.shutdown()
            await b.shutdown()
        }
    }

    @Test func aSubscriberThatStopsReadingGetsEventsDroppedAndTheOthersMissNothing() async throws {
        let a = try await Self.node { $0.limits.eventBufferLimit = 4 }
        let slow = a.events
        let fast = a.events
        var peers: [PunchNode] = []
        for _ in 0..<4 {
            let peer = try await Self.node()
            peers.append(peer)
            await a.addAddresses(await peer.listenAddresses, for: peer.peerID)
        }
        let reader = Task {
            var connected = Set<PeerID>()
            var dropped = 0
            for await event in fast {
                if case .connected(let connection) = event { connected.insert(connection.remotePeerID) }
                if case .eventsDropped(let count) = event { dropped += count }
                if connected.count == 4 { break }
            }
            return (connected, dropped)
        }
        for peer in peers { _ = try await a.connect(to: peer.peerID) }
        let (connected, fastDropped) = await reader.value
        #expect(connected == Set(peers.map(\.peerID)))
        #expect(fastDropped == 0)
        var slowSaw: [String] = []
        var iterator = slow.makeAsyncIterator()
        while slowSaw.count < 5, let event = await iterator.next() {
            switch event {
            case .eventsDropped(let count): slowSaw.append("dropped \(count)")
            case .connected: slowSaw.append("connected")
            default: slowSaw.append("other")
            }
        }
        #expect(slowSaw.count == 5)
        #expect(slowSaw.contains { $0.hasPrefix("dropped") }, "\(slowSaw)")
        slow.cancel()
        for peer in peers { await peer.shutdown() }
        await a.shutdown()
    }

    @Test func aPeerIsReachedByItsPeerIDThroughARelayAndTheUpgradeEndsWithAReason() async throws {
        let relayHost = PunchHost(configuration: HostConfiguration(identity: .generate()))
        let relayAddress = try await relayHost.listen(Multiaddr("/ip4/127.0.0.1/tcp/0"))[0]
        let server = RelayServer(host: relayHost, addresses: [relayAddress.withoutPeerID()])
        defer { _ = server }
        let listener = try await Self.node { $0.relays = [relayAddress] }
        let events = listener.events
        for await event in events {
            if case .reserved = event { break }
        }
        events.cancel()
        let metrics = TestMetrics()
        let dialer = try await Self.node {
            $0.knownPeers[listener.peerID] = [relayAddress.appendingCircuit()]
            $0.metricsFactory = metrics
        }
        let connection = try await dialer.connect(to: listener.peerID)
        #expect(connection.path == .relayed)
        let result = try await connection.echo(bytes: 4096)
        #expect(result.bytes == 4096)
        // On loopback nobody has a public address: the listener's DCUtR ends without a dial, and
        // the wait ends with that reason rather than running into its timeout.
        await #expect {
            _ = try await dialer.waitForDirectConnection(to: listener.peerID, timeout: .seconds(30))
        } throws: { error in
            (error as? HolePunchError).map { HolePunchRetry.verdict(after: $0) != .retry } ?? false
        }
        #expect(metrics.counterTotal(label: "punch_node_dials_total", dimensions: [("path", "relayed"), ("outcome", "success")]) == 1)
        #expect(metrics.counterTotal(label: "punch_node_dials_total", dimensions: [("path", "direct"), ("outcome", "success")]) == 1)
        await dialer.shutdown()
        await listener.shutdown()
        await relayHost.close()
    }

    @Test func autoNATAsksAConnectedServerAndReportsReachability() async throws {
        let server = PunchHost(configuration: HostConfiguration(identity: .generate()))
        let serverAddress = try await server.listen(Multiaddr("/ip4/127.0.0.1/tcp/0"))[0]
        var serverConfiguration = AutoNATServerConfiguration()
        serverConfiguration.allowPrivateAddresses = true  // loopback
        let autoNATServer = try AutoNATServer.serve(on: server, configuration: serverConfiguration)
        let node = try await Self.node { $0.knownPeers[server.peerID] = [serverAddress] }
        let events = node.events
        _ = try await node.connect(to: server.peerID)
        let waiter = Task { () -> (Multiaddr, AddressReachability)? in
            for await event in events {
                if case .reachabilityChanged(let address, let reachability) = event { return (address, reachability) }
            }
            return nil
        }
        let timeout = Task {
            try? await Task.sleep(for: .seconds(30))
            events.cancel()
        }
        let verdict = await waiter.value
        timeout.cancel()
        let listening = await node.listenAddresses[0].withoutPeerID()
        #expect(verdict?.0 == listening)
        #expect(verdict?.1 == .reachable)
        autoNATServer.stop()
        await node.shutdown()
        await server.close()
    }

    @Test func aSecondHostOnAListeningPortIsRefused() async throws {
        let first = PunchHost(configuration: HostConfiguration(identity: .generate()))
        let address = try await first.listen(Multiaddr("/ip4/127.0.0.1/tcp/0"))[0].withoutPeerID()
        let second = PunchHost(configuration: HostConfiguration(identity: .generate()))
        await #expect {
            try await second.listen(address)
        } throws: { error in
            (error as? TransportError)?.code == .hostListenPortInUse
        }
        await second.close()
        await first.close()
        // Once the first has closed, the port is free again.
        let third = PunchHost(configuration: HostConfiguration(identity: .generate()))
        _ = try await third.listen(address)
        await third.close()
    }

    @Test func aConnectionOverThePerIPLimitIsClosedAndCountsNowhere() async throws {
        let a = try await Self.node { $0.limits.maximumConnectionsPerIP = 1 }
        let b = try await Self.node()
        let c = try await Self.node()
        for peer in [b, c] { await peer.addAddresses(await a.listenAddresses, for: a.peerID) }
        _ = try await b.connect(to: a.peerID)
        // c's connection reaches a from 127.0.0.1 too: a closes it at once.
        _ = try? await c.connect(to: a.peerID)
        #expect(await Self.eventually { Self.active(c, to: a.peerID).isEmpty })
        #expect(Self.active(a, to: b.peerID).count == 1)
        #expect(await a.connectedPeers == [b.peerID])
        for node in [a, b, c] { await node.shutdown() }
    }

    @Test func connectingWithoutAnyAddressIsATypedError() async throws {
        let a = try await Self.node()
        await #expect(throws: NodeError(.noAddresses, "")) { try await a.connect(to: PrivateKey.generate().peerID) }
        await #expect(throws: NodeError(.selfDial, "")) { try await a.connect(to: a.peerID) }
        await a.shutdown()
        await #expect(throws: NodeError(.notRunning, "")) { try await a.connect(to: PrivateKey.generate().peerID) }
    }
}
