// Building, splitting and inspecting multiaddrs: what dialing and circuit relaying need.

extension Multiaddr {
    /// `/ip4/A/tcp/P` or `/ip6/A/tcp/P`.
    public static func tcp(_ endpoint: IPEndpoint) -> Multiaddr {
        Multiaddr(validated: [ipComponent(endpoint.address), .tcp(endpoint.port)])
    }

    /// `/ip4/A/udp/P` or `/ip6/A/udp/P`.
    public static func udp(_ endpoint: IPEndpoint) -> Multiaddr {
        Multiaddr(validated: [ipComponent(endpoint.address), .udp(endpoint.port)])
    }

    /// `/ip4/A/udp/P/quic-v1` or `/ip6/A/udp/P/quic-v1`.
    public static func quicV1(_ endpoint: IPEndpoint) -> Multiaddr {
        Multiaddr(validated: [ipComponent(endpoint.address), .udp(endpoint.port), .quicV1])
    }

    private static func ipComponent(_ address: IPAddress) -> MultiaddrComponent {
        address.isIPv4 ? .ip4(address) : .ip6(address)
    }

    /// This multiaddr followed by `other`, e.g. a relay address followed by `/p2p-circuit/p2p/X`.
    ///
    /// The result may exceed the decoding limits if both parts are long; see ``init(components:)``.
    public func encapsulate(_ other: Multiaddr) -> Multiaddr {
        Multiaddr(validated: components + other.components)
    }

    /// This multiaddr followed by `/p2p-circuit`: for a relay's address (`…/p2p/RELAY`), the
    /// circuit through that relay to whichever peer is appended next.
    public func appendingCircuit() -> Multiaddr {
        Multiaddr(validated: components + [.p2pCircuit])
    }

    /// This multiaddr followed by `/p2p/peerID`.
    public func appendingPeerID(_ peerID: Multihash) -> Multiaddr {
        Multiaddr(validated: components + [.p2p(peerID)])
    }

    /// This multiaddr up to the last occurrence of `other`'s components as a contiguous run,
    /// leaving out that run and everything after it.
    ///
    /// As go-multiaddr does: returns `self` when `other` does not occur (or is empty), and the
    /// empty multiaddr when it occurs at the start.
    /// ```swift
    /// try Multiaddr("/ip4/1.2.3.4/tcp/80/p2p/QmX").decapsulate(Multiaddr("/tcp/80"))   // /ip4/1.2.3.4
    /// ```
    public func decapsulate(_ other: Multiaddr) -> Multiaddr {
        let needle = other.components
        guard !needle.isEmpty, needle.count <= components.count else { return self }
        for start in stride(from: components.count - needle.count, through: 0, by: -1)
        where components[start..<(start + needle.count)].elementsEqual(needle) {
            return Multiaddr(validated: components[..<start])
        }
        return self
    }

    /// This multiaddr up to its last component of protocol `proto`, leaving out that component
    /// and everything after it; `self` if there is no such component.
    public func decapsulate(_ proto: MultiaddrProtocol) -> Multiaddr {
        guard let last = components.lastIndex(where: { $0.protocol == proto }) else { return self }
        return Multiaddr(validated: components[..<last])
    }

    /// The PeerID of the last `/p2p/` component: the peer this address reaches. For a circuit
    /// address (`.../p2p/RELAY/p2p-circuit/p2p/TARGET`) that is the target, not the relay.
    public var peerID: Multihash? {
        for component in components.reversed() {
            if case .p2p(let multihash) = component { return multihash }
        }
        return nil
    }

    /// This multiaddr without a final `/p2p/` component; `self` if it does not end in one.
    ///
    /// For a circuit address this removes the target and keeps `/p2p-circuit`.
    public func withoutPeerID() -> Multiaddr {
        guard case .p2p = components.last else { return self }
        return Multiaddr(validated: components.dropLast())
    }

    /// Whether the address goes through a circuit relay (contains `/p2p-circuit`).
    public var isCircuit: Bool {
        components.contains(.p2pCircuit)
    }

    /// For a circuit address, everything before the last `/p2p-circuit`: how to reach the relay,
    /// usually ending in the relay's `/p2p/` PeerID. `nil` if the address is not a circuit address
    /// or names no relay before `/p2p-circuit`.
    public var relayAddress: Multiaddr? {
        guard let circuit = components.lastIndex(of: .p2pCircuit), circuit > 0 else { return nil }
        return Multiaddr(validated: components[..<circuit])
    }

    /// The leading host and port: an `ip4`, `ip6`, `dns`, `dns4` or `dns6` component followed by
    /// `tcp` or `udp`. `nil` if the address does not start that way (e.g. `/dnsaddr/...`,
    /// `/p2p-circuit/...`).
    ///
    /// Only the first two components are looked at: for a circuit address this is how to reach
    /// the relay.
    public var transport: Transport? {
        guard components.count >= 2 else { return nil }
        let host: Transport.Host
        switch components[0] {
        case .ip4(let address), .ip6(let address): host = .ip(address)
        case .dns(let name): host = .dns(name)
        case .dns4(let name): host = .dns4(name)
        case .dns6(let name): host = .dns6(name)
        default: return nil
        }
        switch components[1] {
        case .tcp(let port): return Transport(host: host, port: port, kind: .tcp)
        case .udp(let port): return Transport(host: host, port: port, kind: .udp)
        default: return nil
        }
    }

    /// The leading IP address and port, when the address starts `/ip4|ip6/A/tcp|udp/P`.
    public var transportEndpoint: IPEndpoint? {
        transport?.endpoint
    }
}
