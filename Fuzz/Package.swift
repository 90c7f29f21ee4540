// swift-tools-version: 6.1
//
// libFuzzer targets for Punch's decoders. Not part of the main package: each target defines
// LLVMFuzzerTestOneInput and is linked with -sanitize=fuzzer, which a normal build cannot do.
// Build and run them with scripts/fuzz.

import PackageDescription

let fuzzTargets = ["FuzzVarint", "FuzzMultiaddr", "FuzzSTUN", "FuzzProtobuf", "FuzzPortMapping"]

let package = Package(
    name: "PunchFuzz",
    dependencies: [
        .package(name: "Punch", path: ".."),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
    ],
    targets: fuzzTargets.map { name in
        .executableTarget(
            name: name,
            dependencies: [
                .product(name: "Punch", package: "Punch"),
                .product(name: "NIOCore", package: "swift-nio"),
            ]
        )
    }
)
