// swift-tools-version: 6.1
//
// Punch: direct, encrypted connections between programs behind NATs.
// The module layering follows ARCHITECTURE.md: PunchWire <- PunchCrypto <- ... <- Punch <- punch.

import PackageDescription

let package = Package(
    name: "Punch",
    platforms: [.macOS(.v14)],
    products: [
        .library(name: "Punch", targets: ["Punch"]),
        .library(name: "PunchWire", targets: ["PunchWire"]),
        .library(name: "PunchCrypto", targets: ["PunchCrypto"]),
        .library(name: "PunchTransport", targets: ["PunchTransport"]),
        .library(name: "PunchDiscovery", targets: ["PunchDiscovery"]),
        .library(name: "PunchRelay", targets: ["PunchRelay"]),
        .library(name: "PunchHolePunch", targets: ["PunchHolePunch"]),
        .library(name: "PunchPortMapping", targets: ["PunchPortMapping"]),
        .library(name: "PunchLab", targets: ["PunchLab"]),
        .library(name: "PunchGRPC", targets: ["PunchGRPC"]),
        .executable(name: "punch", targets: ["punch"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-crypto.git", "3.12.3"..<"5.0.0"),
        .package(url: "https://github.com/apple/swift-protobuf.git", from: "1.39.0"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/swiftlang/swift-docc-plugin.git", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/grpc/grpc-swift-2.git", from: "2.4.3"),
        .package(url: "https://github.com/grpc/grpc-swift-nio-transport.git", from: "2.9.2"),
    ],
    targets: [
        // Pure codecs: varint, multiaddr, STUN, libp2p protobuf messages. No I/O.
        .target(
            name: "PunchWire",
            dependencies: [
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
            ]
        ),
        // The system's libcrypto (OpenSSL 3, Debian package libssl-dev): ChaCha20-Poly1305 in
        // caller-owned buffers for Noise transport messages. Linux only; elsewhere swift-crypto's
        // ChaChaPoly does the same work with copies.
        .systemLibrary(
            name: "CPunchLibcrypto",
            pkgConfig: "libcrypto",
            providers: [.apt(["libssl-dev"])]
        ),
        // Identity keys, PeerIDs, signed envelopes. No network I/O (the key file is its only file access).
        .target(
            name: "PunchCrypto",
            dependencies: [
                "PunchWire",
                .target(name: "CPunchLibcrypto", condition: .when(platforms: [.linux])),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
            ]
        ),
        // NIO: TCP with port reuse, multistream-select, Noise, yamux, Host, ping, identify.
        .target(
            name: "PunchTransport",
            dependencies: [
                "PunchWire",
                "PunchCrypto",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
            ]
        ),
        // STUN client and server (RFC 8489, RFC 5780), the NAT behaviour classifier, the
        // observed-address book, and AutoNAT v2 (client and server, over PunchTransport's Host).
        .target(
            name: "PunchDiscovery",
            dependencies: [
                "PunchWire",
                "PunchCrypto",
                "PunchTransport",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // Port mapping: NAT-PMP, PCP and UPnP-IGD clients, gateway discovery, and the PortMapper
        // that keeps a mapping alive. Linux gateway discovery reads /proc/net/route.
        .target(
            name: "PunchPortMapping",
            dependencies: [
                "PunchWire",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        // Circuit Relay v2: the relay (hop) service and the client (reserve, connect, stop).
        .target(
            name: "PunchRelay",
            dependencies: [
                "PunchWire",
                "PunchCrypto",
                "PunchTransport",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
            ]
        ),
        // DCUtR: direct connection upgrade through a relay, by TCP simultaneous open.
        .target(
            name: "PunchHolePunch",
            dependencies: [
                "PunchWire",
                "PunchCrypto",
                "PunchTransport",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // The umbrella library a user imports, and PunchNode: peer store, connect policy, one
        // connection per peer, reservations, confirmed addresses, events and metrics.
        .target(
            name: "Punch",
            dependencies: [
                "PunchWire", "PunchCrypto", "PunchTransport", "PunchDiscovery", "PunchRelay", "PunchHolePunch", "PunchPortMapping",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        // gRPC (grpc-swift 2) over Punch: a client transport that reaches a peer by PeerID through
        // PunchNode and a server transport that serves on one, HTTP/2 over one Punch stream per
        // connection. Separate so that a core user does not build gRPC.
        .target(
            name: "PunchGRPC",
            dependencies: [
                "Punch",
                .product(name: "GRPCCore", package: "grpc-swift-2"),
                .product(name: "GRPCNIOTransportHTTP2Posix", package: "grpc-swift-nio-transport"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
            ]
        ),
        // The example application: a key-value store served over gRPC on a PunchNode and reached
        // by PeerID (README, "gRPC over Punch"; Examples/PunchKV/README.md).
        .executableTarget(
            name: "punch-kv",
            dependencies: [
                "Punch",
                "PunchGRPC",
                .product(name: "GRPCCore", package: "grpc-swift-2"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "NIOCore", package: "swift-nio"),
            ],
            path: "Examples/PunchKV",
            exclude: ["README.md", "run-in-lab"]
        ),
        // The NAT lab: network namespaces with real kernel NATs, coturn and miniupnpd, for tests
        // and `punch lab`. Linux only, needs root. Shells out to iproute2, nftables, conntrack.
        .target(
            name: "PunchLab",
            dependencies: ["PunchWire"],
            resources: [.copy("Scripts")]
        ),
        .executableTarget(
            name: "punch",
            dependencies: [
                "Punch",
                "PunchLab",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .testTarget(
            name: "PunchWireTests",
            dependencies: [
                "PunchWire",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ]
        ),
        .testTarget(
            name: "PunchDiscoveryTests",
            dependencies: [
                "PunchDiscovery",
                "PunchWire",
                "PunchCrypto",
                "PunchTransport",
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .testTarget(
            name: "PunchCryptoTests",
            dependencies: ["PunchCrypto", "PunchWire"]
        ),
        // Self-tests of the NAT lab: every NAT personality measured, the punch matrices, impairment,
        // port mapping, teardown. Needs root.
        .testTarget(
            name: "PunchLabTests",
            dependencies: ["PunchLab"]
        ),
        .testTarget(
            name: "PunchTransportTests",
            dependencies: [
                "PunchTransport",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ]
        ),
        .testTarget(
            name: "PunchPortMappingTests",
            dependencies: [
                "PunchPortMapping",
                "PunchWire",
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ]
        ),
        .testTarget(
            name: "PunchHolePunchTests",
            dependencies: [
                "PunchHolePunch",
                "PunchRelay",
                "PunchTransport",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
            ]
        ),
        .testTarget(
            name: "PunchRelayTests",
            dependencies: [
                "PunchRelay",
                "PunchTransport",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ]
        ),
        // PunchNode: the connect policy, the peer store and the event fan-out as values; nodes on
        // loopback (concurrent connects, crossed dials, slow subscribers).
        .testTarget(
            name: "PunchTests",
            dependencies: [
                "Punch",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "MetricsTestKit", package: "swift-metrics"),
            ]
        ),
        // PunchGRPC on loopback: every RPC kind, deadlines, cancellation, status codes, the peer's
        // PeerID in metadata, a connection lost mid-RPC.
        .testTarget(
            name: "PunchGRPCTests",
            dependencies: [
                "Punch",
                "PunchGRPC",
                .product(name: "GRPCCore", package: "grpc-swift-2"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ]
        ),
        // Tests against real third-party programs (coturn, py-libp2p) and the built `punch` binary.
        .testTarget(
            name: "PunchInteropTests",
            dependencies: [
                "Punch",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ]
        ),
    ]
)
