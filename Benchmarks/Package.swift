// swift-tools-version: 6.1
//
// Punch's throughput benchmark: `punch-bench`, a plain release executable that measures, in one
// run, the ChaChaPoly baseline, raw TCP over loopback, a Noise + yamux stream over loopback
// between two PunchHosts, and Noise XX handshakes, and prints the ratios between them; with
// `--only relay`, a stream through a relay circuit against a direct one and one through socat;
// with `--only reservations`, a `punch relay` process's memory per idle reservation.
// Not part of the main package, so that `swift build` and `swift test` there stay unaffected.
// Build and run it with scripts/bench (always `-c release`).

import PackageDescription

let package = Package(
    name: "PunchBenchmarks",
    platforms: [.macOS(.v14)],
    dependencies: [
        .package(name: "Punch", path: ".."),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-crypto.git", "3.12.3"..<"5.0.0"),
        .package(url: "https://github.com/grpc/grpc-swift-2.git", from: "2.4.3"),
        .package(url: "https://github.com/grpc/grpc-swift-nio-transport.git", from: "2.9.2"),
    ],
    targets: [
        .executableTarget(
            name: "punch-bench",
            dependencies: [
                .product(name: "PunchTransport", package: "Punch"),
                .product(name: "PunchCrypto", package: "Punch"),
                .product(name: "PunchWire", package: "Punch"),
                .product(name: "PunchRelay", package: "Punch"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "Crypto", package: "swift-crypto"),
            ]
        ),
        // `punch-bench-grpc` (scripts/bench-grpc): unary RPCs per second and streaming MiB/s over
        // a Punch connection against grpc-swift-nio-transport over plain TCP, both on loopback.
        .executableTarget(
            name: "punch-bench-grpc",
            dependencies: [
                .product(name: "Punch", package: "Punch"),
                .product(name: "PunchGRPC", package: "Punch"),
                .product(name: "GRPCCore", package: "grpc-swift-2"),
                .product(name: "GRPCNIOTransportHTTP2Posix", package: "grpc-swift-nio-transport"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ]
        ),
    ]
)
