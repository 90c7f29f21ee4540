import Foundation
import NIOCore
import NIOPosix
import PunchCrypto
import PunchRelay
import PunchTransport
import PunchWire

/// One stream from a dialer B to a listener A over loopback, three ways: direct, through a
/// Punch relay circuit, and direct but through a socat TCP forwarder (so that only the
/// forwarding differs from the circuit). The relay, A and B are PunchHosts of this process, each
/// on its own single-threaded event loop group; socat is its own process.
///
/// A circuit carries A and B's own Noise + yamux inside the yamux streams of their Noise
/// connections to the relay: the relay decrypts and re-encrypts every byte once more than socat,
/// which copies it.
actor RelayBench {
    let relayGroup = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    let listenerGroup = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    let dialerGroup = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    let chunk = makeChunk()
    private var hosts: [PunchHost] = []
    private var socat: Process?
    private var direct: Connection?
    private var relayed: Connection?
    private var forwarded: Connection?

    enum Path { case direct, relayed, forwarded }

    /// Starts the relay, A (with a reservation and the discard protocol) and B, socat in front
    /// of A, and B's three connections to A.
    func start(window: Int?) async throws {
        func configuration() -> HostConfiguration {
            var configuration = HostConfiguration(identity: .generate())
            configuration.identifyOnConnect = false
            // Keep the relayed connection although a direct one to the same peer exists.
            configuration.relayedConnectionGrace = nil
            if let window { configuration.yamux.streamReceiveWindow = UInt32(window) }
            return configuration
        }
        let relayHost = PunchHost(configuration: configuration(), group: relayGroup)
        hosts.append(relayHost)
        let relayAddress = try await relayHost.listen(Multiaddr("/ip4/127.0.0.1/tcp/0"))[0]
        _ = RelayServer(host: relayHost, addresses: [relayAddress.withoutPeerID()], configuration: .unlimited)

        let listener = PunchHost(configuration: configuration(), group: listenerGroup)
        hosts.append(listener)
        LoopbackBench.serveDiscard(on: listener)
        RelayClient.acceptCircuits(on: listener, configuration: .unlimited)
        let listenerAddress = try await listener.listen(Multiaddr("/ip4/127.0.0.1/tcp/0"))[0]
        let listenerToRelay = try await listener.dial(relayAddress)
        _ = try await RelayClient.reserve(on: listenerToRelay, host: listener, relayAddress: relayAddress, configuration: .unlimited)

        let dialer = PunchHost(configuration: configuration(), group: dialerGroup)
        hosts.append(dialer)
        let dialerToRelay = try await dialer.dial(relayAddress)
        relayed = try await RelayClient.connect(to: listener.peerID, via: dialerToRelay, host: dialer, configuration: .unlimited)
        direct = try await dialer.dial(listenerAddress)

        guard let port = listenerAddress.transport?.port else { throw BenchmarkError("the listener has no TCP port: \(listenerAddress)") }
        let socatPort = try await Self.freePort()
        socat = try Self.startSocat(listen: socatPort, to: Int(port))
        let socatAddress = try Multiaddr("/ip4/127.0.0.1/tcp/\(socatPort)").appendingPeerID(listener.peerID.multihash)
        // socat needs a moment to listen.
        var lastError: (any Error)?
        for _ in 0..<50 {
            do {
                forwarded = try await dialer.dial(socatAddress)
                break
            } catch {
                lastError = error
                try await Task.sleep(for: .milliseconds(100))
            }
        }
        if forwarded == nil { throw BenchmarkError("cannot connect through socat on port \(socatPort): \(lastError.map { "\($0)" } ?? "?")") }
        guard relayed?.path == .relayed, direct?.path == .direct, forwarded?.path == .direct else {
            throw BenchmarkError("unexpected connection paths")
        }
    }

    /// One handler-written transfer of `bytes` on a new discard stream; returns seconds.
    func transfer(bytes: Int, over path: Path) async throws -> Double {
        let connection: Connection?
        switch path {
        case .direct: connection = direct
        case .relayed: connection = relayed
        case .forwarded: connection = forwarded
        }
        guard let connection, connection.isActive else { throw BenchmarkError("the \(path) connection is not open") }
        return try await LoopbackBench.handlerWriterTransfer(bytes: bytes, chunk: chunk, on: connection)
    }

    func shutdown() async {
        for host in hosts.reversed() { await host.close() }
        if let socat, socat.isRunning {
            // SIGKILL: the child starts with this process's blocked signals, SIGTERM among them.
            kill(socat.processIdentifier, SIGKILL)
            socat.waitUntilExit()
        }
        try? await dialerGroup.shutdownGracefully()
        try? await listenerGroup.shutdownGracefully()
        try? await relayGroup.shutdownGracefully()
    }

    /// A port on 127.0.0.1 that was free a moment ago.
    private static func freePort() async throws -> Int {
        let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .bind(host: "127.0.0.1", port: 0).get()
        let port = channel.localAddress?.port ?? 0
        try await channel.close()
        guard port > 0 else { throw BenchmarkError("no free port") }
        return port
    }

    private static func startSocat(listen: Int, to port: Int) throws -> Process {
        guard let socat = ProcessInfo.processInfo.environment["PATH"]?.split(separator: ":")
            .map({ "\($0)/socat" }).first(where: { FileManager.default.isExecutableFile(atPath: $0) })
        else {
            throw BenchmarkError("socat is not installed (apt-get install socat; scripts/bench-relay installs it when run as root)")
        }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: socat)
        process.arguments = ["TCP-LISTEN:\(listen),bind=127.0.0.1,fork,reuseaddr,nodelay", "TCP:127.0.0.1:\(port),nodelay"]
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        return process
    }
}
