import NIOCore
import Punch
import Testing

/// The README's PunchNode example, on loopback: a relay, a listener reserving on it, and the
/// example's node reaching the listener by PeerID alone. Keep it in step with README.md.
@Suite struct ReadmeExampleTests {
    @Test func theReadmeExampleRuns() async throws {
        let relayHost = PunchHost(configuration: HostConfiguration(identity: .generate()))
        let relayAddress = try await relayHost.listen(Multiaddr("/ip4/127.0.0.1/tcp/0"))[0]
        let server = RelayServer(host: relayHost, addresses: [relayAddress.withoutPeerID()])
        defer { _ = server }
        var listenerConfiguration = NodeConfiguration(identity: .generate())
        listenerConfiguration.listenAddresses = [try Multiaddr("/ip4/127.0.0.1/tcp/0")]
        listenerConfiguration.relays = [relayAddress]
        let listener = try PunchNode(configuration: listenerConfiguration)
        listener.setStreamHandler(for: "/my/echo/1.0.0") { stream in
            try await stream.channel.executeThenClose { inbound, outbound in
                for try await chunk in inbound { try await outbound.write(chunk) }
            }
        }
        let listenerEvents = listener.events
        try await listener.start()
        for await event in listenerEvents {
            if case .reserved = event { break }
        }
        listenerEvents.cancel()

        // The README's lines, with loopback addresses.
        var configuration = NodeConfiguration(identity: .generate())
        configuration.listenAddresses = [try Multiaddr("/ip4/127.0.0.1/tcp/0")]
        configuration.relays = [relayAddress]
        let node = try PunchNode(configuration: configuration)
        node.setStreamHandler(for: "/my/echo/1.0.0") { stream in
            try await stream.channel.executeThenClose { inbound, outbound in
                for try await chunk in inbound { try await outbound.write(chunk) }
            }
        }
        let events = node.events
        try await node.start()

        let peer = try PeerID("\(listener.peerID)")
        let stream = try await node.openStream(to: peer, protocol: "/my/echo/1.0.0")
        let reply = try await stream.channel.executeThenClose { inbound, outbound in
            try await outbound.write(ByteBuffer(string: "hello"))
            outbound.finish()
            var received = ByteBuffer()
            for try await var chunk in inbound { received.writeBuffer(&chunk) }
            return received
        }
        #expect(String(buffer: reply) == "hello")
        #expect(stream.connection.path == .relayed)
        // On loopback no punch can work: the wait ends with the reason, not a direct connection.
        await #expect(throws: (any Error).self) {
            _ = try await node.waitForDirectConnection(to: peer, timeout: .seconds(20))
        }
        var sawConnected = false
        for await event in events {
            if case .connected(let connection) = event, connection.remotePeerID == peer { sawConnected = true; break }
        }
        #expect(sawConnected)
        await node.shutdown()
        await listener.shutdown()
        await relayHost.close()
    }
}
