extension Multiaddr {
    /// The host, port and transport protocol at the start of a multiaddr, e.g. the
    /// `/dns4/example.com/tcp/443` of `/dns4/example.com/tcp/443/p2p/12D3KooW...`.
    public struct Transport: Hashable, Sendable, CustomStringConvertible {
        /// Where to connect: an address, or a name still to be resolved.
        public enum Host: Hashable, Sendable, CustomStringConvertible {
            /// An IPv4 or IPv6 address.
            case ip(IPAddress)
            /// A name to resolve to IPv4 or IPv6 addresses (`/dns/`).
            case dns(String)
            /// A name to resolve to IPv4 addresses only (`/dns4/`).
            case dns4(String)
            /// A name to resolve to IPv6 addresses only (`/dns6/`).
            case dns6(String)

            /// The address or name as text.
            public var description: String {
                switch self {
                case .ip(let address): address.description
                case .dns(let name), .dns4(let name), .dns6(let name): name
                }
            }
        }

        /// The transport protocol that the port belongs to.
        public enum Kind: Hashable, Sendable {
            /// TCP.
            case tcp
            /// UDP (also under QUIC).
            case udp
        }

        /// Where to connect.
        public var host: Host
        /// The TCP or UDP port.
        public var port: UInt16
        /// Whether ``port`` is a TCP or UDP port.
        public var kind: Kind

        /// Creates a transport description.
        public init(host: Host, port: UInt16, kind: Kind) {
            self.host = host
            self.port = port
            self.kind = kind
        }

        /// The endpoint, when ``host`` is an IP address rather than a name.
        public var endpoint: IPEndpoint? {
            guard case .ip(let address) = host else { return nil }
            return IPEndpoint(address: address, port: port)
        }

        /// E.g. `tcp 203.0.113.10:4001`, `udp [::1]:4001`, `tcp example.com:443`.
        public var description: String {
            let protocolName = kind == .tcp ? "tcp" : "udp"
            if let endpoint { return "\(protocolName) \(endpoint)" }
            return "\(protocolName) \(host):\(port)"
        }
    }
}
