#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import PunchCrypto
import PunchWire

/// A libp2p node: listens and dials over TCP, upgrades every connection to Noise and yamux, and
/// serves the protocols registered with it. Ping (`/ipfs/ping/1.0.0`) and identify
/// (`/ipfs/id/1.0.0`) are served from the start.
///
/// ```swift
/// let host = PunchHost(configuration: HostConfiguration(identity: .generate()))
/// host.setStreamHandler(for: "/punch/echo/1.0.0") { stream in
///     try await stream.channel.executeThenClose { inbound, outbound in
///         for try await chunk in inbound { try await outbound.write(chunk) }
///     }
/// }
/// let addresses = try await host.listen(Multiaddr("/ip4/0.0.0.0/tcp/4001"))
/// let connection = try await host.dial(Multiaddr("/ip4/198.51.100.7/tcp/4001/p2p/12D3Koo…"))
/// let rtt = try await connection.ping()
/// ```
///
/// Listeners use `SO_REUSEADDR` and `SO_REUSEPORT`, and dials leave from the listening port (see
/// ``HostConfiguration/bindDialsToListenPort``), so that NATs map our outbound connections to the
/// port peers know, and TCP simultaneous open can work.
public final class PunchHost: Sendable {
    /// The configuration the host was created with.
    public let configuration: HostConfiguration
    /// This node's PeerID.
    public let peerID: PeerID
    /// Connection events. One reader; at most ``HostConfiguration/eventBufferLimit`` are buffered.
    public let events: AsyncStream<HostEvent>

    private let eventContinuation: AsyncStream<HostEvent>.Continuation
    private let group: any EventLoopGroup
    private let router: StreamRouter
    private let logger: Logger

    private struct Listener {
        let channel: Channel
        let bound: IPEndpoint
        let addresses: [Multiaddr]
    }

    private struct State {
        var listeners: [Listener] = []
        var connections: [ObjectIdentifier: Connection] = [:]
        var pendingUpgrades = 0
        var closed = false
        /// Hole punches in progress, by the peer's address: a SYN of the peer that reaches our
        /// listener before our own connect() (through a full-cone NAT, or without NAT) is the
        /// punched connection, with the punch's Noise role. Bounded by maximumPendingUpgrades.
        var punches: [IPEndpoint: PunchExpectation] = [:]
    }

    private let state = NIOLockedValueBox(State())

    /// Creates a host. It does nothing until it listens or dials.
    ///
    /// - Parameters:
    ///   - configuration: identity, limits and timeouts.
    ///   - group: the event loops for its channels; the shared singleton by default.
    ///   - logger: where connection-level events are logged at `.debug`.
    public init(
        configuration: HostConfiguration,
        group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        logger: Logger = Logger(label: "punch.host", factory: { _ in SwiftLogNoOpLogHandler() })
    ) {
        self.configuration = configuration
        self.peerID = configuration.identity.peerID
        self.group = group
        self.logger = logger
        (self.events, self.eventContinuation) = AsyncStream.makeStream(
            of: HostEvent.self, bufferingPolicy: .bufferingNewest(configuration.eventBufferLimit))
        self.router = StreamRouter(
            multistream: configuration.multistream, negotiationTimeout: configuration.streamNegotiationTimeout,
            maximumIdentifyMessageLength: configuration.maximumIdentifyMessageLength, logger: logger)
        Ping.register(on: self)
        Identify.register(on: self)
    }

    // MARK: Protocols

    /// Serves `protocolID` on streams peers open: `handler` runs in its own task per stream.
    /// Replaces an earlier handler for the same protocol.
    public func setStreamHandler(for protocolID: String, _ handler: @escaping StreamHandler) {
        router.register(protocolID, handler)
    }

    /// Serves `protocolID` at the NIO level: `handler` sets up each inbound stream's pipeline on its
    /// event loop (see ``ChannelStreamHandler``). Replaces any handler for the protocol.
    public func setChannelHandler(for protocolID: String, _ handler: @escaping ChannelStreamHandler) {
        router.register(protocolID, channelHandler: handler)
    }

    /// Stops serving `protocolID`; peers proposing it get `na`.
    public func removeStreamHandler(for protocolID: String) {
        router.unregister(protocolID)
    }

    /// The protocols this host serves, sorted.
    public var protocols: [String] { router.protocols }

    /// The event loops the host's channels run on.
    public var eventLoopGroup: any EventLoopGroup { group }

    // MARK: Listening

    /// The addresses peers can dial, each ending in `/p2p/<our PeerID>`. A wildcard listener
    /// (`0.0.0.0` or `::`) is listed once per local interface address.
    public var listenAddresses: [Multiaddr] {
        state.withLockedValue { $0.listeners.flatMap(\.addresses) }
    }

    /// The actual socket endpoints of the listeners (with the port the kernel chose for port 0).
    public var listenEndpoints: [IPEndpoint] {
        state.withLockedValue { $0.listeners.map(\.bound) }
    }

    /// Listens on a TCP address (`/ip4/A/tcp/P` or `/ip6/A/tcp/P`; port 0 picks one).
    ///
    /// - Returns: the addresses peers can use, as ``listenAddresses`` lists them.
    /// - Throws: ``TransportError`` `.hostUnsupportedAddress`, `.hostListenFailed`, `.hostClosed`.
    @discardableResult
    public func listen(_ address: Multiaddr) async throws -> [Multiaddr] {
        guard case .tcp = address.transport?.kind, let endpoint = address.transportEndpoint,
            address.components.count == 2
        else {
            throw TransportError(.hostUnsupportedAddress, "can only listen on /ip4/A/tcp/P or /ip6/A/tcp/P, not \(address)")
        }
        try checkOpen()
        let socketAddress = try endpoint.socketAddress()
        // SO_REUSEPORT lets a second process bind the same port, and the kernel would then share
        // incoming connections between the two. Refuse that (issue 16): a probe socket without
        // SO_REUSEPORT cannot bind where another process listens. Our own listeners on the port
        // are not asked about (the probe would find them).
        let ownPort = state.withLockedValue { state in state.listeners.contains { $0.bound.port == endpoint.port } }
        if endpoint.port != 0, !ownPort, let holder = Self.portInUse(socketAddress) {
            throw TransportError(
                .hostListenPortInUse,
                "cannot listen on \(address): another process listens on TCP port \(endpoint.port) (\(holder)); stop it or choose another port")
        }
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 256)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .serverChannelOption(Self.reusePort, value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelOption(.recvAllocator, value: NoiseHandler.recommendedReceiveAllocator)
            .childChannelOption(.writeBufferWaterMark, value: configuration.writeBufferWaterMark)
            .childChannelInitializer { [self] channel in
                self.accept(channel)
            }
        let channel: Channel
        do {
            channel = try await bootstrap.bind(to: socketAddress).get()
        } catch {
            throw TransportError(.hostListenFailed, "cannot listen on \(address): \(error)")
        }
        guard let local = channel.localAddress, let bound = IPEndpoint(local) else {
            try? await channel.close()
            throw TransportError(.hostListenFailed, "the listener on \(address) has no local address")
        }
        let addresses = Self.expand(bound).map { Multiaddr.tcp($0).appendingPeerID(peerID.multihash) }
        let listener = Listener(channel: channel, bound: bound, addresses: addresses)
        let closed = state.withLockedValue { state -> Bool in
            guard !state.closed else { return true }
            state.listeners.append(listener)
            return false
        }
        if closed {
            try? await channel.close()
            throw TransportError(.hostClosed, "the host is closed")
        }
        eventContinuation.yield(.listening(addresses))
        logger.debug("listening", metadata: ["addresses": "\(addresses)"])
        return addresses
    }

    /// Whether a TCP socket with `SO_REUSEADDR` but without `SO_REUSEPORT` fails to bind to
    /// `address`: then another socket listens there (connections in TIME_WAIT do not stop
    /// such a bind). Returns the error text, or `nil` when the port is free.
    static func portInUse(_ address: SocketAddress) -> String? {
        #if canImport(Glibc)
        let family = address.protocol.rawValue
        let fd = socket(family, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return nil }
        defer { _ = Glibc.close(fd) }
        var one: Int32 = 1
        _ = setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        let result = address.withSockAddr { pointer, size in bind(fd, pointer, socklen_t(size)) }
        guard result != 0 else { return nil }
        let code = errno
        guard code == EADDRINUSE else { return nil }
        return String(cString: strerror(code))
        #else
        return nil
        #endif
    }

    static var reusePort: ChannelOptions.Types.SocketOption {
        ChannelOptions.socketOption(NIOBSDSocket.Option(rawValue: SO_REUSEPORT))
    }

    /// The endpoints a wildcard address stands for: every local interface address of its family.
    static func expand(_ bound: IPEndpoint) -> [IPEndpoint] {
        let wildcard = bound.address.isIPv4 ? try! IPAddress("0.0.0.0") : try! IPAddress("::")
        guard bound.address == wildcard else { return [bound] }
        var seen = Set<IPAddress>()
        var result: [IPEndpoint] = []
        for device in (try? System.enumerateDevices()) ?? [] {
            guard let address = device.address, let endpoint = IPEndpoint(address),
                endpoint.address.isIPv4 == bound.address.isIPv4
            else { continue }
            // Link-local IPv6 needs a zone to be dialable; leave it out.
            if !endpoint.address.isIPv4, endpoint.address.bytes.prefix(2) == [0xfe, 0x80] { continue }
            if seen.insert(endpoint.address).inserted {
                result.append(IPEndpoint(address: endpoint.address, port: bound.port))
            }
        }
        return result.isEmpty ? [bound] : result
    }

    private func accept(_ channel: Channel) -> EventLoopFuture<Void> {
        let admitted = state.withLockedValue { state -> Bool in
            guard !state.closed, state.pendingUpgrades < configuration.maximumPendingUpgrades,
                state.connections.count < configuration.maximumConnections
            else { return false }
            state.pendingUpgrades += 1
            return true
        }
        guard admitted else {
            let error = TransportError(.hostConnectionLimit, "refused an inbound connection: connection or upgrade limit reached")
            eventContinuation.yield(
                .connectionFailed(direction: .inbound, remote: channel.remoteAddress.flatMap(Multiaddr.init(tcp:)), error: error))
            return channel.eventLoop.makeFailedFuture(error)
        }
        let punch = channel.remoteAddress.flatMap(IPEndpoint.init).flatMap { endpoint in
            state.withLockedValue { state -> PunchExpectation? in
                guard var expectation = state.punches[endpoint], !expectation.claimed else { return nil }
                expectation.claimed = true
                state.punches[endpoint] = expectation
                return expectation
            }
        }
        let connection = Connection(channel: channel, direction: .inbound, router: router, securityInitiator: punch?.noiseInitiator)
        let upgraded = startUpgrade(connection, expectedPeer: punch?.peer)
        upgraded.whenComplete { [self] result in
            self.finishUpgrade(connection, result: result)
            guard let punch else { return }
            if case .success = result, self.state.withLockedValue({ $0.connections.keys.contains(ObjectIdentifier(connection)) }) {
                punch.accepted.succeed(connection)
            } else {
                punch.accepted.fail(TransportError(.hostDialFailed, "the punched inbound connection failed its upgrade"))
            }
        }
        return channel.eventLoop.makeSucceededVoidFuture()
    }

    private func startUpgrade(_ connection: Connection, expectedPeer: PeerID?) -> EventLoopFuture<Void> {
        let router = self.router
        return ConnectionUpgrader.upgrade(
            channel: connection.channel, connection: connection, configuration: configuration,
            expectedPeer: expectedPeer
        ) { [weak connection] stream in
            guard let connection else { return stream.eventLoop.makeFailedFuture(ChannelError.ioOnClosedChannel) }
            connection.streamOpened(stream)
            return router.acceptInbound(stream, connection: connection)
        }
    }

    /// Books an upgrade's outcome: the connection joins the table (or is refused over the limit).
    private func finishUpgrade(_ connection: Connection, result: Result<Void, any Error>) {
        let outcome = state.withLockedValue { state -> Result<Void, TransportError> in
            state.pendingUpgrades -= 1
            if case .failure(let error) = result { return .failure(TransportError(upgrade: error)) }
            if state.closed { return .failure(TransportError(.hostClosed, "the host is closed")) }
            guard state.connections.count < configuration.maximumConnections else {
                return .failure(TransportError(.hostConnectionLimit, "the host has \(configuration.maximumConnections) connections"))
            }
            state.connections[ObjectIdentifier(connection)] = connection
            return .success(())
        }
        switch outcome {
        case .failure(let error):
            connection.channel.close(promise: nil)
            eventContinuation.yield(.connectionFailed(direction: connection.direction, remote: connection.remoteAddress, error: error))
            logger.debug("connection failed", metadata: ["remote": "\(connection.remoteAddress.map { "\($0)" } ?? "?")", "error": "\(error)"])
        case .success:
            eventContinuation.yield(.connected(connection))
            connection.closeFuture.whenComplete { [self] _ in
                self.state.withLockedValue { _ = $0.connections.removeValue(forKey: ObjectIdentifier(connection)) }
                self.eventContinuation.yield(.disconnected(connection, error: connection.closeError))
            }
            watchRelayedConnections(to: connection.remotePeerID)
            if configuration.identifyOnConnect {
                Task { [self] in
                    if let info = try? await connection.identify() {
                        self.eventContinuation.yield(.identified(connection, info))
                    }
                }
            }
        }
    }

    // MARK: Dialing

    /// Dials a peer: `/ip4|ip6|dns|dns4|dns6/…/tcp/P`, optionally ending in `/p2p/<PeerID>`, which
    /// the peer must then prove in the Noise handshake.
    ///
    /// - Returns: the connection once Noise and yamux are up.
    /// - Throws: ``TransportError``: `.hostUnsupportedAddress`, `.hostDialFailed`,
    ///   `.hostConnectionLimit`, `.noisePeerIDMismatch`, `.hostUpgradeFailed`, `.hostClosed`, and
    ///   the negotiation, Noise and yamux errors of the upgrade.
    public func dial(_ address: Multiaddr) async throws -> Connection {
        try await dial(address, holePunch: nil, fromListenPort: configuration.bindDialsToListenPort)
    }

    /// Dials as ``dial(_:)``, choosing for this dial alone whether the connection leaves from the
    /// listening port (``HostConfiguration/bindDialsToListenPort`` sets it for the others).
    ///
    /// AutoNAT v2 servers dial back with `fromListenPort: false`: a dial-back from the port the
    /// client already talks to could pass the client's NAT as an accidental hole punch
    /// (libp2p/specs autonat/autonat-v2.md, "Implementation Suggestions").
    ///
    /// - Throws: as ``dial(_:)``.
    public func dial(_ address: Multiaddr, fromListenPort: Bool) async throws -> Connection {
        try await dial(address, holePunch: nil, fromListenPort: fromListenPort)
    }

    /// Dials for a hole punch (DCUtR over TCP): as ``dial(_:)``, but always from the listening
    /// port (no ephemeral fallback: a punch from another port cannot work), within `timeout`,
    /// and with the Noise and yamux roles given. In a TCP simultaneous open both peers dial, so
    /// the roles come from DCUtR: the side that answered the exchange is the Noise initiator, as
    /// py-libp2p and rust-libp2p have it (see `HolePuncher`).
    ///
    /// - Throws: as ``dial(_:)``; `.hostDialFailed` also when the host has no listener of the
    ///   address's family.
    public func dial(_ address: Multiaddr, noiseInitiator: Bool, timeout: TimeAmount) async throws -> Connection {
        try await dial(address, holePunch: HolePunchDial(noiseInitiator: noiseInitiator, timeout: timeout), fromListenPort: true)
    }

    private struct HolePunchDial {
        let noiseInitiator: Bool
        let timeout: TimeAmount
    }

    private struct PunchExpectation {
        let noiseInitiator: Bool
        let peer: PeerID?
        /// Completed with the accepted connection once its upgrade is done.
        let accepted: EventLoopPromise<Connection>
        /// An inbound connection took this expectation. It stays in the table until it expires,
        /// so that our own dial, whose connect() then finds the 4-tuple taken, still finds the
        /// accepted connection (the peer's SYN may win by a whole round trip under loss).
        var claimed = false
    }

    private func dial(_ address: Multiaddr, holePunch: HolePunchDial?, fromListenPort: Bool) async throws -> Connection {
        guard !address.isCircuit, let transport = address.transport, transport.kind == .tcp else {
            throw TransportError(.hostUnsupportedAddress, "can only dial /ip4|ip6|dns/…/tcp/P[/p2p/PEER] here, not \(address)")
        }
        let rest = address.components.dropFirst(2)
        guard rest.isEmpty || (rest.count == 1 && address.peerID != nil) else {
            throw TransportError(.hostUnsupportedAddress, "unexpected components after the TCP port in \(address)")
        }
        var expectedPeer: PeerID?
        if let multihash = address.peerID {
            do {
                expectedPeer = try PeerID(multihash: multihash)
            } catch {
                throw TransportError(.hostUnsupportedAddress, "the /p2p/ component of \(address) is not a PeerID: \(error)")
            }
        }
        try checkOpen()
        let admitted = state.withLockedValue { state -> Bool in
            guard state.connections.count + state.pendingUpgrades < configuration.maximumConnections,
                state.pendingUpgrades < configuration.maximumPendingUpgrades
            else { return false }
            state.pendingUpgrades += 1
            return true
        }
        guard admitted else {
            throw TransportError(.hostConnectionLimit, "the host is at its connection limit (\(configuration.maximumConnections))")
        }

        // For a punch, an inbound connection from the peer's address counts as this dial.
        var acceptedPunch: EventLoopFuture<Connection>?
        if let holePunch, case .ip(let ip) = transport.host {
            acceptedPunch = expectPunch(
                from: IPEndpoint(address: ip, port: transport.port), peer: expectedPeer,
                noiseInitiator: holePunch.noiseInitiator, for: holePunch.timeout)
        }

        let channel: Channel
        do {
            channel = try await connect(transport, holePunch: holePunch, fromListenPort: fromListenPort)
        } catch {
            state.withLockedValue { $0.pendingUpgrades -= 1 }
            // The peer's SYN reached our listener first: our connect() found the 4-tuple taken (or
            // timed out), and the accepted connection is the punch.
            if let acceptedPunch, let connection = try? await acceptedPunch.get() {
                return connection
            }
            let dialError = TransportError(.hostDialFailed, "cannot connect to \(address): \(error)")
            eventContinuation.yield(.connectionFailed(direction: .outbound, remote: address, error: dialError))
            throw dialError
        }
        let connection = Connection(
            channel: channel, direction: .outbound, router: router, securityInitiator: holePunch?.noiseInitiator ?? true)
        let upgraded = channel.eventLoop.flatSubmit { [self, expectedPeer] in
            // ConnectionUpgrader turns reading on once its first handler is installed.
            self.startUpgrade(connection, expectedPeer: expectedPeer)
        }
        let result: Result<Void, any Error>
        do {
            try await upgraded.get()
            result = .success(())
        } catch {
            result = .failure(error)
        }
        finishUpgrade(connection, result: result)
        if case .failure(let error) = result { throw TransportError(upgrade: error) }
        if !state.withLockedValue({ $0.connections.keys.contains(ObjectIdentifier(connection)) }), !connection.isActive {
            throw connection.closeError ?? TransportError(.connectionClosed, "the connection closed right after the upgrade")
        }
        return connection
    }

    /// Announces a hole punch before it starts: for `duration`, a connection that arrives from one
    /// of `addresses` (the peer's SYN reached our listener before our own dial, as through a
    /// full-cone NAT) is upgraded with the punch's Noise role and counts as the punch's dial.
    /// DCUtR calls this before the SYNC that makes the peer dial.
    public func expectHolePunch(from addresses: [Multiaddr], peer: PeerID, noiseInitiator: Bool, for duration: TimeAmount) {
        for address in addresses {
            guard let transport = address.transport, transport.kind == .tcp, case .ip(let ip) = transport.host else { continue }
            _ = expectPunch(
                from: IPEndpoint(address: ip, port: transport.port), peer: peer, noiseInitiator: noiseInitiator, for: duration,
                replacingClaimed: true)
        }
    }

    /// Registers (or finds) the expectation for `endpoint`; returns the future of the connection
    /// accepted from it. The entry stays for `duration`, also after an inbound connection claimed
    /// it, so a dial that comes later still finds that connection; a new punch attempt
    /// (`replacingClaimed`) replaces a claimed entry of an earlier attempt.
    private func expectPunch(
        from endpoint: IPEndpoint, peer: PeerID?, noiseInitiator: Bool, for duration: TimeAmount, replacingClaimed: Bool = false
    ) -> EventLoopFuture<Connection> {
        enum Registration {
            case joined(EventLoopFuture<Connection>)
            case registered(replacing: EventLoopPromise<Connection>?)
            case full
        }
        let promise = group.any().makePromise(of: Connection.self)
        let registration = state.withLockedValue { state -> Registration in
            let existing = state.punches[endpoint]
            if let existing, existing.noiseInitiator == noiseInitiator, !(replacingClaimed && existing.claimed) {
                return .joined(existing.accepted.futureResult)
            }
            guard existing != nil || state.punches.count < configuration.maximumPendingUpgrades else { return .full }
            state.punches[endpoint] = PunchExpectation(noiseInitiator: noiseInitiator, peer: peer, accepted: promise)
            // A claimed entry is completed by its connection's upgrade; an unclaimed one only by us.
            return .registered(replacing: existing.flatMap { $0.claimed ? nil : $0.accepted })
        }
        switch registration {
        case .joined(let existing):
            promise.fail(TransportError(.hostDialFailed, "superseded"))
            return existing
        case .full:
            promise.fail(TransportError(.hostConnectionLimit, "too many hole punches expected at once (\(configuration.maximumPendingUpgrades))"))
            return promise.futureResult
        case .registered(let replaced):
            replaced?.fail(TransportError(.hostDialFailed, "superseded by a punch with the other Noise role"))
        }
        promise.futureResult.eventLoop.scheduleTask(in: duration) { [self] in
            let unclaimed = self.state.withLockedValue { state -> Bool in
                guard let entry = state.punches[endpoint], entry.accepted.futureResult === promise.futureResult else {
                    return false
                }
                state.punches[endpoint] = nil
                return !entry.claimed
            }
            // A claimed entry is completed by the accepted connection's upgrade, not here.
            if unclaimed {
                promise.fail(TransportError(.hostDialFailed, "no connection from \(endpoint) within \(duration)"))
            }
        }
        return promise.futureResult
    }

    /// Upgrades a relay circuit (a stream channel on the connection to the relay, after the relay
    /// protocol said OK) to a connection to the peer at its other end: Noise and yamux run end to
    /// end inside the circuit, so the relay sees only ciphertext. The connection joins the host's
    /// table and events like any other, with ``Connection/path`` `.relayed`.
    ///
    /// Call it on the circuit's event loop, with no handler left in the circuit's pipeline that
    /// would consume bytes; bytes that arrived early must be passed on with `fireChannelRead`
    /// after this returns.
    ///
    /// - Parameters:
    ///   - circuit: the stream channel carrying the circuit.
    ///   - direction: `.outbound` on the side that asked the relay to connect (it is the Noise
    ///     initiator), `.inbound` on the side the relay's STOP reached.
    ///   - remotePeer: the peer the relay says is at the other end; Noise must prove it.
    ///   - remoteAddress: the circuit address of the peer.
    /// - Returns: a future of the connection, once Noise and yamux are up.
    public func upgradeCircuit(
        _ circuit: Channel, direction: ConnectionDirection, remotePeer: PeerID, remoteAddress: Multiaddr?
    ) -> EventLoopFuture<Connection> {
        circuit.eventLoop.preconditionInEventLoop()
        let admitted = state.withLockedValue { state -> Bool in
            guard !state.closed, state.connections.count + state.pendingUpgrades < configuration.maximumConnections,
                state.pendingUpgrades < configuration.maximumPendingUpgrades
            else { return false }
            state.pendingUpgrades += 1
            return true
        }
        guard admitted else {
            return circuit.eventLoop.makeFailedFuture(
                TransportError(.hostConnectionLimit, "the host is at its connection or upgrade limit; the circuit was refused"))
        }
        // The circuit is the connection now: the peer's FIN (or the relay's end of the circuit)
        // ends it, as a TCP connection without half-closure.
        try? circuit.syncOptions?.setOption(ChannelOptions.allowRemoteHalfClosure, value: false)
        let connection = Connection(circuit: circuit, direction: direction, remoteAddress: remoteAddress, router: router)
        let promise = circuit.eventLoop.makePromise(of: Connection.self)
        startUpgrade(connection, expectedPeer: remotePeer).whenComplete { [self] result in
            self.finishUpgrade(connection, result: result)
            if case .failure(let error) = result {
                promise.fail(TransportError(upgrade: error))
            } else if self.state.withLockedValue({ $0.connections.keys.contains(ObjectIdentifier(connection)) }) {
                promise.succeed(connection)
            } else {
                promise.fail(connection.closeError ?? TransportError(.connectionClosed, "the circuit closed right after the upgrade"))
            }
        }
        return promise.futureResult
    }

    /// Connects TCP, leaving from the port of a listener of the same family when configured to.
    private func connect(_ transport: Multiaddr.Transport, holePunch: HolePunchDial?, fromListenPort: Bool) async throws -> Channel {
        let target: SocketAddress
        switch transport.host {
        case .ip(let ip):
            target = try IPEndpoint(address: ip, port: transport.port).socketAddress()
        case .dns(let name), .dns4(let name), .dns6(let name):
            guard holePunch == nil else {
                throw TransportError(.hostUnsupportedAddress, "a hole punch dials IP addresses, not \(name)")
            }
            // NIO resolves the name and races the addresses (happy eyeballs); the family is not
            // known in advance, so this dial leaves from an ephemeral port.
            return try await bootstrap(bindingTo: nil).connect(host: name, port: Int(transport.port)).get()
        }
        let isIPv4: Bool
        if case .v4 = target { isIPv4 = true } else { isIPv4 = false }
        let localPort = state.withLockedValue { state in
            state.listeners.first { $0.bound.address.isIPv4 == isIPv4 }?.bound.port
        }
        if let holePunch {
            guard let localPort else {
                throw TransportError(.hostDialFailed, "a hole punch leaves from a listening port, and the host listens on no IPv\(isIPv4 ? 4 : 6) port")
            }
            let wildcard = try SocketAddress(ipAddress: isIPv4 ? "0.0.0.0" : "::", port: Int(localPort))
            return try await bootstrap(bindingTo: wildcard, timeout: holePunch.timeout).connect(to: target).get()
        }
        if fromListenPort, let localPort {
            let wildcard = try SocketAddress(ipAddress: isIPv4 ? "0.0.0.0" : "::", port: Int(localPort))
            do {
                return try await bootstrap(bindingTo: wildcard).connect(to: target).get()
            } catch let error as ChannelError where error == .connectTimeout(configuration.dialTimeout) {
                throw error
            } catch {
                // The 4-tuple is taken (a connection to this peer from our port exists or is in
                // TIME_WAIT): fall back to an ephemeral port, as go-libp2p does.
                logger.debug("dial from the listening port failed; retrying from an ephemeral port", metadata: ["error": "\(error)"])
            }
        }
        return try await bootstrap(bindingTo: nil).connect(to: target).get()
    }

    private func bootstrap(bindingTo local: SocketAddress?, timeout: TimeAmount? = nil) -> ClientBootstrap {
        var bootstrap = ClientBootstrap(group: group)
            .connectTimeout(timeout ?? configuration.dialTimeout)
            // Nothing is read until the upgrade's first handler is in place: a listener may send
            // its multistream header the moment it accepts, and those bytes must not reach an
            // empty pipeline. ConnectionUpgrader turns reading on.
            .channelOption(.autoRead, value: false)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .channelOption(.recvAllocator, value: NoiseHandler.recommendedReceiveAllocator)
            .channelOption(.writeBufferWaterMark, value: configuration.writeBufferWaterMark)
        if let local {
            bootstrap = bootstrap
                .channelOption(.socketOption(.so_reuseaddr), value: 1)
                .channelOption(Self.reusePort, value: 1)
                .bind(to: local)
        }
        return bootstrap
    }

    // MARK: Connections and shutdown

    /// The open, upgraded connections.
    public var connections: [Connection] {
        state.withLockedValue { Array($0.connections.values) }
    }

    /// The open connections to `peer`.
    public func connections(to peer: PeerID) -> [Connection] {
        connections.filter { $0.remotePeerID == peer }
    }

    /// The connection new streams to `peer` should use: a direct one if there is one (the most
    /// recent), else a relayed one; `nil` when there is none.
    public func connection(to peer: PeerID) -> Connection? {
        let candidates = connections(to: peer).filter(\.isActive)
        return candidates.first { $0.path == .direct } ?? candidates.first
    }

    /// Opens a stream to `peer` on ``connection(to:)``: direct when a direct connection exists.
    /// - Throws: ``TransportError`` `.connectionClosed` when there is no connection to `peer`;
    ///   otherwise as ``Connection/openStream(protocol:)``.
    public func openStream(to peer: PeerID, protocol protocolID: String) async throws -> HostStream {
        guard let connection = connection(to: peer) else {
            throw TransportError(.connectionClosed, "no connection to \(peer); dial it first")
        }
        return try await connection.openStream(protocol: protocolID)
    }

    /// The relayed connections to `peer` fall away once a direct one exists: each is closed when it
    /// has had no open stream for ``HostConfiguration/relayedConnectionGrace``. If the direct
    /// connection goes first, the relayed one stays (and is watched again at the next direct one).
    private func watchRelayedConnections(to peer: PeerID) {
        guard let grace = configuration.relayedConnectionGrace else { return }
        let relayed = state.withLockedValue { state -> [Connection] in
            let mine = state.connections.values.filter { $0.remotePeerID == peer }
            guard mine.contains(where: { $0.path == .direct }) else { return [] }
            return mine.filter { $0.path == .relayed }
        }
        let interval = TimeAmount.nanoseconds(max(grace.nanoseconds / 4, 10_000_000))
        for connection in relayed where connection.startReaping() {
            connection.channel.eventLoop.scheduleRepeatedTask(initialDelay: interval, delay: interval) { [self] task in
                guard connection.isActive else {
                    task.cancel()
                    return
                }
                guard self.connections(to: peer).contains(where: { $0.path == .direct && $0.isActive }) else {
                    connection.stopReaping()
                    task.cancel()
                    return
                }
                if let idle = connection.idleSince, NIODeadline.now() - idle >= grace {
                    task.cancel()
                    self.logger.debug("closing an idle relayed connection: a direct one exists", metadata: ["peer": "\(peer)"])
                    connection.channel.close(promise: nil)
                }
            }
        }
    }

    private func checkOpen() throws {
        if state.withLockedValue({ $0.closed }) {
            throw TransportError(.hostClosed, "the host is closed")
        }
    }

    /// Closes the listeners and every connection, and ends ``events``.
    public func close() async {
        let (listeners, connections, punches) = state.withLockedValue { state in
            state.closed = true
            let unclaimed = state.punches.values.filter { !$0.claimed }.map(\.accepted)
            state.punches.removeAll()
            return (state.listeners, Array(state.connections.values), unclaimed)
        }
        for punch in punches { punch.fail(TransportError(.hostClosed, "the host closed")) }
        for listener in listeners { try? await listener.channel.close() }
        for connection in connections { await connection.close() }
        eventContinuation.finish()
    }
}
