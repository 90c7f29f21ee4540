import Testing

@testable import PunchWire

@Suite struct MultiaddrHelpersTests {
    static let relayID = MultiaddrTests.relayID
    static let targetID = MultiaddrTests.targetID
    static let circuit = "/ip4/1.2.3.4/udp/4001/quic-v1/p2p/\(relayID)/p2p-circuit/p2p/\(targetID)"

    @Test func buildsFromEndpoints() throws {
        #expect(Multiaddr.tcp(try IPEndpoint("127.0.0.1:4001")).description == "/ip4/127.0.0.1/tcp/4001")
        #expect(Multiaddr.udp(try IPEndpoint("[::1]:53")).description == "/ip6/::1/udp/53")
        #expect(Multiaddr.quicV1(try IPEndpoint("10.0.0.1:4001")).description == "/ip4/10.0.0.1/udp/4001/quic-v1")
    }

    @Test func appendingCircuitAddsTheCircuitComponent() throws {
        let relay = try Multiaddr("/ip4/203.0.113.10/tcp/4001")
        #expect(relay.appendingCircuit().description == "/ip4/203.0.113.10/tcp/4001/p2p-circuit")
        #expect(relay.appendingCircuit().isCircuit)
        #expect(relay.appendingCircuit().relayAddress == relay)
    }

    @Test func encapsulateAppends() throws {
        let base = try Multiaddr("/ip4/1.2.3.4/tcp/80")
        let joined = base.encapsulate(try Multiaddr("/p2p/\(Self.relayID)/p2p-circuit"))
        #expect(joined.description == "/ip4/1.2.3.4/tcp/80/p2p/\(Self.relayID)/p2p-circuit")
        let peer = try Multihash(bytes: Base58.decode(Self.targetID))
        #expect(joined.appendingPeerID(peer).description == joined.description + "/p2p/\(Self.targetID)")
    }

    @Test func decapsulateRemovesLastOccurrenceAndAfter() throws {
        let address = try Multiaddr(Self.circuit)
        #expect(address.decapsulate(try Multiaddr("/p2p-circuit")).description
            == "/ip4/1.2.3.4/udp/4001/quic-v1/p2p/\(Self.relayID)")
        #expect(address.decapsulate(try Multiaddr("/udp/4001")).description == "/ip4/1.2.3.4")
        #expect(address.decapsulate(try Multiaddr("/ip4/1.2.3.4")).components.isEmpty)
        // The last /p2p/TARGET, not the first /p2p/RELAY.
        #expect(address.decapsulate(try Multiaddr("/p2p/\(Self.targetID)")).description
            == "/ip4/1.2.3.4/udp/4001/quic-v1/p2p/\(Self.relayID)/p2p-circuit")
        // The whole run of components must match.
        #expect(address.decapsulate(try Multiaddr("/udp/4001/quic-v1")).description == "/ip4/1.2.3.4")
        #expect(address.decapsulate(try Multiaddr("/udp/4001/tcp/1")) == address)
        #expect(address.decapsulate(try Multiaddr("/udp/4002")) == address)
        #expect(address.decapsulate(try Multiaddr(components: [])) == address)
        let repeated = try Multiaddr("/p2p-circuit/p2p/\(Self.relayID)/p2p-circuit/p2p/\(Self.targetID)")
        #expect(repeated.decapsulate(try Multiaddr("/p2p-circuit")).description == "/p2p-circuit/p2p/\(Self.relayID)")
    }

    @Test func decapsulateByProtocol() throws {
        let address = try Multiaddr(Self.circuit)
        #expect(address.decapsulate(.p2p).description == "/ip4/1.2.3.4/udp/4001/quic-v1/p2p/\(Self.relayID)/p2p-circuit")
        #expect(address.decapsulate(.quicV1).description == "/ip4/1.2.3.4/udp/4001")
        #expect(address.decapsulate(.tcp) == address)
    }

    @Test func peerIDIsTheLastP2PComponent() throws {
        let target = try Multihash(bytes: Base58.decode(Self.targetID))
        let relay = try Multihash(bytes: Base58.decode(Self.relayID))
        #expect(try Multiaddr(Self.circuit).peerID == target)
        #expect(try Multiaddr("/ip4/1.2.3.4/tcp/80/p2p/\(Self.relayID)").peerID == relay)
        #expect(try Multiaddr("/ip4/1.2.3.4/tcp/80").peerID == nil)
    }

    @Test func withoutPeerIDDropsOnlyATrailingP2P() throws {
        #expect(try Multiaddr(Self.circuit).withoutPeerID().description
            == "/ip4/1.2.3.4/udp/4001/quic-v1/p2p/\(Self.relayID)/p2p-circuit")
        #expect(try Multiaddr("/ip4/1.2.3.4/tcp/80/p2p/\(Self.relayID)").withoutPeerID().description == "/ip4/1.2.3.4/tcp/80")
        let plain = try Multiaddr("/ip4/1.2.3.4/tcp/80")
        #expect(plain.withoutPeerID() == plain)
    }

    @Test func circuitHelpers() throws {
        let address = try Multiaddr(Self.circuit)
        #expect(address.isCircuit)
        #expect(address.relayAddress?.description == "/ip4/1.2.3.4/udp/4001/quic-v1/p2p/\(Self.relayID)")
        #expect(address.relayAddress?.peerID == (try Multihash(bytes: Base58.decode(Self.relayID))))
        let direct = try Multiaddr("/ip4/1.2.3.4/tcp/80/p2p/\(Self.relayID)")
        #expect(!direct.isCircuit)
        #expect(direct.relayAddress == nil)
        #expect(try Multiaddr("/p2p-circuit/p2p/\(Self.targetID)").relayAddress == nil)
    }

    @Test func transportOfIPAddresses() throws {
        let quic = try Multiaddr(Self.circuit)
        #expect(quic.transport == Multiaddr.Transport(host: .ip(try IPAddress("1.2.3.4")), port: 4001, kind: .udp))
        #expect(quic.transportEndpoint == (try IPEndpoint("1.2.3.4:4001")))
        let tcp6 = try Multiaddr("/ip6/2001:db8::1/tcp/443")
        #expect(tcp6.transport?.kind == .tcp)
        #expect(tcp6.transportEndpoint == (try IPEndpoint("[2001:db8::1]:443")))
        #expect(tcp6.transport?.description == "tcp [2001:db8::1]:443")
    }

    @Test func transportOfDNSNames() throws {
        let address = try Multiaddr("/dns4/relay.example.com/tcp/443/p2p/\(Self.relayID)")
        #expect(address.transport == Multiaddr.Transport(host: .dns4("relay.example.com"), port: 443, kind: .tcp))
        #expect(address.transportEndpoint == nil)
        #expect(address.transport?.description == "tcp relay.example.com:443")
        #expect(try Multiaddr("/dns/a.example/udp/1").transport?.host == .dns("a.example"))
        #expect(try Multiaddr("/dns6/a.example/udp/1").transport?.host == .dns6("a.example"))
    }

    @Test func noTransportWithoutLeadingHostAndPort() throws {
        for text in ["/dnsaddr/bootstrap.libp2p.io", "/p2p-circuit/p2p/\(Self.targetID)", "/ip4/1.2.3.4",
                     "/ip4/1.2.3.4/quic-v1", "/tcp/80", "/p2p/\(Self.relayID)/ip4/1.2.3.4/tcp/1"] {
            #expect(try Multiaddr(text).transport == nil, "\(text)")
            #expect(try Multiaddr(text).transportEndpoint == nil)
        }
    }
}
