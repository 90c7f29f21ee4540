import Logging
import Metrics
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import PunchCrypto
import PunchDiscovery
import PunchHolePunch
import PunchPortMapping
import PunchRelay
import PunchTransport
import PunchWire
import ServiceLifecycle

/// A Punch node: what an application holds. Ask for a peer by its PeerID and get one healthy
/// connection, over whatever path works: a known direct address, or a circuit through a relay
/// that is then upgraded to a direct connection by a hole punch (DCUtR).
///
/// ```swift
/// var configuration = NodeConfiguration(identity: try IdentityKeyFile.loadOrCreate(at: "node.key").key)
/// configuration.listenAddresses = [try Multiaddr("/ip4/0.0.0.0/tcp/4001")]
/// configuration.relays = [try Multiaddr("/ip4/203.0.113.10/tcp/4001/p2p/12D3KooWRelay…")]
/// let node = try PunchNode(configuration: configuration)
/// node.setStreamHandler(for: "/my/echo/1.0.0") { stream in
///     try await stream.channel.executeThenClose { inbound, outbound in
///         for try await chunk in inbound { try await outbound.write(chunk) }
///     }
/// }
/// try await node.start()
/// let peer = try PeerID("12D3KooWPeer…")
/// let stream = try await node.openStream(to: peer, protocol: "/my/echo/1.0.0")
/// ```
///
/// Inside, each concern has one owner: the ``PeerStore`` (addresses by PeerID, with source and
/// time to live), a ``ConnectPolicy`` per peer (dial order, one attempt and one upgrade loop per
/// peer), the one-connection rule (``ConnectionSelection``), reservations on the configured
/// relays (``ReservationKeeper``), confirmed observed addresses from listening ports only, and
/// optional port mapping. Everything is reported on ``events``.
///
/// The node is a ServiceLifecycle `Service`: ``run()`` starts it and runs until graceful
/// shutdown or cancellation, then closes every connection.
public actor PunchNode: Service {
    /// The configuration the node was created with.
    public nonisolated let configuration: NodeConfiguration
    /// The host underneath: listeners, connections, stream handlers.
    public nonisolated let host: PunchHost
    /// This node's PeerID.
    public nonisolated let peerID: PeerID

    private nonisolated let broadcaster: EventBroadcaster<NodeEvent>
    private nonisolated let tracker: ObservedAddressTracker
    private nonisolated let mapped = NIOLockedValueBox<Multiaddr?>(nil)
    /// DCUtR exchanges in flight per peer, ours and served. A served exchange is counted the
    /// moment it starts (on the serving task), and uncounted by the node once it has booked the
    /// outcome, so an `upgraded` event never goes out before the outcome that explains it.
    private nonisolated let exchangesInFlight = NIOLockedValueBox<[PeerID: Int]>([:])
    private nonisolated let logger: Logger
    private nonisolated let metrics: NodeMetrics

    private enum RunState { case idle, running, shutDown }

    private struct PeerState {
        var policy: ConnectPolicy
        var waiters: [CheckedContinuation<Connection, any Error>] = []
        var directWaiters: [Int: CheckedContinuation<HolePunchOutcome, any Error>] = [:]
        var dials: [Multiaddr: Task<Void, Never>] = [:]
        var connections: [ObjectIdentifier: (connection: Connection, order: Int)] = [:]
        var retiring: Set<ObjectIdentifier> = []
        /// A direct connection came while an exchange ran: `upgraded` waits for its outcome.
        var upgradePending = false
        /// The latest successful exchange, kept until the direct connection registers.
        var outcome: HolePunchOutcome?
        /// Since when the peer has been reachable only through a relay.
        var relayedSince: ContinuousClock.Instant?
        /// Why the upgrade loop stopped, for those waiting for a direct connection.
        var stopError: (any Error)?

        var isIdle: Bool { connections.isEmpty && waiters.isEmpty && directWaiters.isEmpty && dials.isEmpty }
    }

    private var runState = RunState.idle
    private var peerStates: [PeerID: PeerState] = [:]
    private var store: PeerStore
    private var registrations = 0
    private var waiterIDs = 0
    private var identified: Set<ObjectIdentifier> = []
    private var byteTotals: [ObjectIdentifier: (received: Int, sent: Int)] = [:]
    private var publicAddresses: [Multiaddr] = []
    private var reservationsByRelay: [Multiaddr: RelayReservation] = [:]
    private var background: [Task<Void, Never>] = []
    private var portMapper: PortMapper?
    private var autoNAT: AutoNATClient?
    /// When each server was last asked, and about what (bounded by
    /// ``NodeConfiguration/maximumAutoNATServers``).
    private var autoNATAsked: [PeerID: (addresses: Set<Multiaddr>, at: ContinuousClock.Instant)] = [:]
    private var listening: [Multiaddr] = []

    /// Creates a node. Nothing listens or dials until ``start()`` or ``run()``.
    ///
    /// - Throws: ``NodeError`` `.invalidConfiguration`.
    public init(configuration: NodeConfiguration, group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton) throws {
        try configuration.validate()
        self.configuration = configuration
        self.logger = configuration.logger
        self.host = PunchHost(configuration: configuration.host, group: group, logger: configuration.logger)
        self.peerID = host.peerID
        self.broadcaster = EventBroadcaster(bufferLimit: configuration.limits.eventBufferLimit)
        self.tracker = try ObservedAddressTracker(configuration: configuration.observedAddresses)
        self.metrics = NodeMetrics(factory: configuration.metricsFactory ?? MetricsSystem.factory)
        var store = PeerStore(limits: configuration.peerStore)
        let now = NIODeadline.now()
        for (peer, addresses) in configuration.knownPeers {
            store.add(addresses, for: peer, source: .user, now: now)
        }
        for relay in configuration.relays {
            if let hash = relay.peerID, let relayPeer = try? PeerID(multihash: hash) {
                store.add([relay], for: relayPeer, source: .user, now: now)
            }
        }
        self.store = store
    }

    // MARK: Events

    /// A new subscription to the node's events, from now on. Each subscription has its own
    /// bounded buffer (``NodeConfiguration/Limits/eventBufferLimit``); one that falls behind gets
    /// ``NodeEvent/eventsDropped(_:)`` where it missed events. Cancel a subscription you stop
    /// reading (``NodeEvents/cancel()``), or it keeps its buffer full until the node shuts down.
    public nonisolated var events: NodeEvents {
        NodeEvents(broadcaster: broadcaster, id: broadcaster.subscribe())
    }

    private nonisolated func publish(_ event: NodeEvent) {
        broadcaster.publish(event)
    }

    // MARK: Protocols

    /// Serves `protocolID` on streams peers open (see ``PunchHost/setStreamHandler(for:_:)``).
    public nonisolated func setStreamHandler(for protocolID: String, _ handler: @escaping StreamHandler) {
        host.setStreamHandler(for: protocolID, handler)
    }

    /// Serves `protocolID` at the NIO level (see ``PunchHost/setChannelHandler(for:_:)``).
    public nonisolated func setChannelHandler(for protocolID: String, _ handler: @escaping ChannelStreamHandler) {
        host.setChannelHandler(for: protocolID, handler)
    }

    // MARK: Lifecycle

    /// Starts the node: listens, reserves on the relays, serves DCUtR and circuits, and starts
    /// reporting events. Returns the listening addresses. Calling it again returns them again.
    ///
    /// - Throws: ``NodeError`` `.notRunning` after shutdown; the host's listen errors
    ///   (``TransportError`` `.hostListenFailed`, `.hostListenPortInUse`).
    @discardableResult
    public func start() async throws -> [Multiaddr] {
        switch runState {
        case .running: return listening
        case .shutDown: throw NodeError(.notRunning, "the node was shut down; create a new one")
        case .idle: break
        }
        runState = .running
        let hostEvents = host.events
        background.append(Task { [weak self] in
            for await event in hostEvents {
                guard let self else { return }
                await self.handle(event)
            }
        })
        RelayClient.acceptCircuits(on: host)
        let tracker = self.tracker
        let mapped = self.mapped
        HolePuncher.serve(
            on: host, configuration: configuration.holePunch,
            localAddresses: { _ in Self.publicTCPAddresses(tracker: tracker, mapped: mapped) },
            onStart: { [weak self] relayed in
                guard let self else { return }
                self.exchangesInFlight.withLockedValue { $0[relayed.remotePeerID, default: 0] += 1 }
                self.metrics.upgradeAttempt(initiator: false)
            },
            onOutcome: { [weak self] relayed, result in
                guard let self else { return }
                Task { await self.servedExchangeFinished(relayed, result) }
            })
        do {
            var addresses = configuration.listenAddresses
            if addresses.isEmpty, let fallback = configuration.fallbackListenAddress { addresses = [fallback] }
            for address in addresses {
                listening += try await host.listen(address)
            }
        } catch {
            await shutdown()
            throw error
        }
        publish(.listening(listening))
        if let autoNATConfiguration = configuration.autoNAT {
            let client = try AutoNATClient(host: host, configuration: autoNATConfiguration, logger: logger)
            autoNAT = client
            background.append(Task { [weak self] in
                for await update in client.reachabilityUpdates {
                    self?.publish(.reachabilityChanged(address: update.address, reachability: update.reachability))
                }
            })
        }
        for relay in configuration.relays {
            let keeper = ReservationKeeper(
                host: host, relay: relay, configuration: configuration.reservations, relayConfiguration: configuration.relayClient
            ) { [weak self] event in
                guard let self else { return }
                Task { await self.reservationEvent(relay, event) }
            }
            background.append(Task { await keeper.run() })
        }
        background.append(Task { [weak self] in
            while !Task.isCancelled {
                guard let interval = self?.configuration.addressCheckInterval else { return }
                try? await Task.sleep(for: interval)
                await self?.tick()
            }
        })
        if case .automatic(let protocols) = configuration.portMapping, let port = host.listenEndpoints.first(where: { $0.address.isIPv4 })?.port {
            startPortMapping(port: port, protocols: protocols)
        }
        return listening
    }

    /// Starts the node (``start()``) and runs until the service group shuts down gracefully or
    /// the task is cancelled; then closes everything (``shutdown()``).
    public func run() async throws {
        try await start()
        await withGracefulShutdownHandler {
            await withTaskCancellationHandler {
                await self.waitUntilShutDown()
            } onCancel: {
                Task { await self.shutdown() }
            }
        } onGracefulShutdown: {
            Task { await self.shutdown() }
        }
    }

    private var shutdownWaiters: [CheckedContinuation<Void, Never>] = []

    private func waitUntilShutDown() async {
        guard runState != .shutDown else { return }
        await withCheckedContinuation { shutdownWaiters.append($0) }
    }

    /// Stops the node: reservations and port mapping end, every connection closes, waiters fail
    /// with `node.notRunning`, and ``events`` end. Safe to call more than once.
    public func shutdown() async {
        guard runState != .shutDown else { return }
        runState = .shutDown
        for task in background { task.cancel() }
        background.removeAll()
        autoNAT?.stop()
        let error = NodeError(.notRunning, "the node shut down")
        for (peer, var state) in peerStates {
            for waiter in state.waiters { waiter.resume(throwing: error) }
            for waiter in state.directWaiters.values { waiter.resume(throwing: error) }
            for dial in state.dials.values { dial.cancel() }
            state.waiters.removeAll()
            state.directWaiters.removeAll()
            peerStates[peer] = state
        }
        if let portMapper { await portMapper.shutdown() }
        await host.close()
        broadcaster.finish()
        for waiter in shutdownWaiters { waiter.resume() }
        shutdownWaiters.removeAll()
    }

    // MARK: Connecting

    /// A connection to `peer`: the one the node keeps (direct before relayed), or a new one by
    /// the ``ConnectPolicy``: its known direct addresses first, then circuits through its relays.
    /// Concurrent calls for one peer share one attempt and get the same connection. Through a
    /// relay it returns the relayed connection at once; the upgrade to a direct one goes on
    /// (``waitForDirectConnection(to:timeout:)``, ``NodeEvent/upgraded(peer:outcome:relayedToDirect:)``).
    ///
    /// Hold on to the PeerID rather than the connection: when two connections to a peer cross,
    /// the one not kept closes once idle. ``openStream(to:protocol:)`` always takes the kept one.
    ///
    /// - Throws: ``NodeError``: `.noAddresses`, `.unreachable` (with the last dial's error),
    ///   `.dialLimit`, `.notRunning`, `.selfDial`.
    public func connect(to peer: PeerID) async throws -> Connection {
        guard runState == .running else { throw NodeError(.notRunning, "start the node (run() or start()) before connecting") }
        guard peer != peerID else { throw NodeError(.selfDial, "\(peer) is this node") }
        if let connection = keptConnection(to: peer) { return connection }
        // A connection that closed a moment ago may not have reached `handle(.disconnected)` yet;
        // the policy would still count it and answer "connected" with nothing to return.
        for entry in peerStates[peer]?.connections.values ?? [:].values where !entry.connection.isActive {
            unregister(entry.connection)
        }
        var state = peerStates[peer] ?? PeerState(policy: ConnectPolicy(configuration: configuration.connectPolicy, holePunch: configuration.holePunch))
        let joining = state.policy.isConnecting
        if !joining {
            let pending = peerStates.values.filter { $0.policy.isConnecting }.count
            guard pending < configuration.limits.maximumPendingDials else {
                throw NodeError(.dialLimit, "\(pending) peers are being dialed already (limits.maximumPendingDials); try again when one is done")
            }
        }
        peerStates[peer] = state
        return try await withCheckedThrowingContinuation { continuation in
            state = peerStates[peer]!
            state.waiters.append(continuation)
            peerStates[peer] = state
            guard !joining else { return }
            let (direct, circuits) = candidateAddresses(for: peer)
            update(peer) { $0.connect(direct: direct, circuits: circuits) }
        }
    }

    /// Opens a stream to `peer` on its kept connection, connecting first if needed, and
    /// negotiates `protocolID`.
    ///
    /// - Throws: as ``connect(to:)``, then as ``Connection/openStream(protocol:)``.
    public func openStream(to peer: PeerID, protocol protocolID: String) async throws -> HostStream {
        try await connect(to: peer).openStream(protocol: protocolID)
    }

    /// Opens a stream to `peer` (connecting if needed), negotiates `protocolID`, and lets
    /// `initializer` set up a NIO pipeline on it (HTTP/2, gRPC).
    public func openChannel<Output: Sendable>(
        to peer: PeerID, protocol protocolID: String, initializer: @escaping @Sendable (Channel) -> EventLoopFuture<Output>
    ) async throws -> Output {
        try await connect(to: peer).openChannel(protocol: protocolID, initializer: initializer)
    }

    /// The direct connection to `peer`, once there is one: at once if it exists (as an outcome
    /// with `attempt` 0), else when an upgrade (ours, the peer's, or a dial) makes one, with the
    /// DCUtR outcome that made it.
    ///
    /// - Throws: ``NodeError`` `.upgradeTimeout` when `timeout` passes first; the last round's
    ///   error (usually a ``HolePunchError``) when the upgrade loop stopped without a direct
    ///   connection (``HolePunchRetry/verdict(after:)``); `.notRunning`.
    public func waitForDirectConnection(to peer: PeerID, timeout: Duration) async throws -> HolePunchOutcome {
        if let direct = keptConnection(to: peer), direct.path == .direct {
            return HolePunchOutcome(connection: direct, attempt: 0, roundTrip: nil, elapsed: .zero, dialed: [])
        }
        guard runState == .running else { throw NodeError(.notRunning, "the node is not running") }
        if let state = peerStates[peer], state.policy.upgradeHasStopped, exchanges(with: peer) == 0 {
            throw state.stopError ?? NodeError(.upgradeTimeout, "the upgrade with \(peer) stopped without a direct connection")
        }
        waiterIDs += 1
        let id = waiterIDs
        let timer = Task { [weak self] in
            try? await Task.sleep(for: timeout)
            await self?.directWaitTimedOut(peer, id: id, timeout: timeout)
        }
        defer { timer.cancel() }
        return try await withCheckedThrowingContinuation { continuation in
            var state = peerStates[peer] ?? PeerState(policy: ConnectPolicy(configuration: configuration.connectPolicy, holePunch: configuration.holePunch))
            state.directWaiters[id] = continuation
            peerStates[peer] = state
        }
    }

    private func directWaitTimedOut(_ peer: PeerID, id: Int, timeout: Duration) {
        guard let waiter = peerStates[peer]?.directWaiters.removeValue(forKey: id) else { return }
        waiter.resume(throwing: NodeError(.upgradeTimeout, "no direct connection to \(peer) within \(timeout)"))
        forgetIfIdle(peer)
    }

    // MARK: Looking

    /// The kept connection to each connected peer.
    public var connections: [Connection] {
        peerStates.keys.compactMap { keptConnection(to: $0) }
    }

    /// The connection new streams to `peer` use (``ConnectionSelection``); `nil` when not connected.
    public func connection(to peer: PeerID) -> Connection? { keptConnection(to: peer) }

    /// The peers with a connection now.
    public var connectedPeers: [PeerID] {
        peerStates.compactMap { keptConnection(to: $0.key) == nil ? nil : $0.key }
    }

    /// The peers the peer store has addresses for.
    public var knownPeers: [PeerID] { store.peers }

    /// What the peer store knows of `peer`, best first.
    public func addresses(of peer: PeerID) -> [PeerStore.Record] {
        store.addresses(for: peer, now: .now())
    }

    /// Adds addresses of `peer` to the peer store (direct, or circuits `…/p2p/RELAY/p2p-circuit`).
    public func addAddresses(_ addresses: [Multiaddr], for peer: PeerID, source: AddressSource = .user, ttl: TimeAmount? = nil) {
        store.add(addresses, for: peer, source: source, ttl: ttl, now: .now())
    }

    /// Our confirmed public addresses now: observed addresses from listening ports confirmed by
    /// enough peers, and a mapped port's address. DCUtR offers these.
    public var confirmedPublicAddresses: [Multiaddr] { publicAddresses }

    /// The reservations held now, one per relay.
    public var reservations: [RelayReservation] { Array(reservationsByRelay.values) }

    /// The addresses the node listens on.
    public var listenAddresses: [Multiaddr] { listening }

    // MARK: Host events

    private func handle(_ event: HostEvent) {
        switch event {
        case .listening:
            break  // published once, with every address, by start()
        case .connected(let connection):
            register(connection)
        case .identified(let connection, let info):
            identifiedConnection(connection, info)
        case .disconnected(let connection, let error):
            unregister(connection)
            publish(.disconnected(connection, error: error))
        case .connectionFailed(let direction, let remote, let error):
            publish(.connectionFailed(direction: direction, remote: remote, error: error))
        }
    }

    /// Books a connection once (from the host's event or the dial that made it, whichever comes
    /// first) and tells the peer's policy.
    private func register(_ connection: Connection) {
        let peer = connection.remotePeerID
        let key = ObjectIdentifier(connection)
        guard peerStates[peer]?.connections[key] == nil, connection.isActive else { return }
        // Over the per-IP limit the connection is closed before anything counts it (the policy
        // never hears of it, so its close changes no count).
        if connection.path == .direct, let ip = connection.remoteAddress?.transportEndpoint?.address {
            let sameIP = peerStates.values.flatMap(\.connections.values).filter {
                $0.connection.path == .direct && $0.connection.remoteAddress?.transportEndpoint?.address == ip
            }
            if sameIP.count >= configuration.limits.maximumConnectionsPerIP {
                logger.debug("closing a connection over the per-IP limit", metadata: ["ip": "\(ip)"])
                connection.channel.close(promise: nil)
                return
            }
        }
        var state = peerStates[peer] ?? PeerState(policy: ConnectPolicy(configuration: configuration.connectPolicy, holePunch: configuration.holePunch))
        registrations += 1
        state.connections[key] = (connection, registrations)
        if connection.path == .relayed, state.relayedSince == nil { state.relayedSince = .now }
        peerStates[peer] = state
        byteTotals[key] = (0, 0)
        publish(.connected(connection))
        updateConnectionGauges()
        update(peer) { $0.connectionOpened(path: connection.path, direction: connection.direction) }
        enforceOneConnection(to: peer)
        Task { [weak self] in
            guard let info = try? await connection.identify() else { return }
            await self?.identifiedConnection(connection, info)
        }
    }

    private func unregister(_ connection: Connection) {
        let peer = connection.remotePeerID
        let key = ObjectIdentifier(connection)
        identified.remove(key)
        sampleBytes(connection, final: true)
        guard var state = peerStates[peer], state.connections.removeValue(forKey: key) != nil else { return }
        // A retiring connection left the policy's count when it started retiring.
        let wasRetiring = state.retiring.remove(key) != nil
        if !state.connections.values.contains(where: { $0.connection.path == .relayed }) { state.relayedSince = nil }
        peerStates[peer] = state
        updateConnectionGauges()
        if !wasRetiring { update(peer) { $0.connectionClosed(path: connection.path) } }
        enforceOneConnection(to: peer)
        forgetIfIdle(peer)
    }

    private func identifiedConnection(_ connection: Connection, _ info: IdentifyInfo) {
        guard identified.insert(ObjectIdentifier(connection)).inserted else { return }
        publish(.identified(connection, info))
        let peer = connection.remotePeerID
        let now = NIODeadline.now()
        let direct = info.listenAddresses.filter { !$0.isCircuit }
        let circuits = info.listenAddresses.filter(\.isCircuit).map { $0.withoutPeerID() }
        store.add(direct, for: peer, source: .identify, now: now)
        store.add(circuits, for: peer, source: .circuit, now: now)
        // Observed addresses count only from connections on a listening port (issue 16): a
        // connection from an ephemeral port says nothing about the listening port's mapping.
        if connection.path == .direct, let local = connection.localAddress?.transportEndpoint?.port,
            host.listenEndpoints.contains(where: { $0.port == local })
        {
            tracker.record(info, on: connection)
            checkPublicAddresses()
        }
        if connection.path == .direct, info.protocols.contains(AutoNATProtocol.dialRequest) {
            askReachability(of: connection)
        }
    }

    /// Asks the AutoNAT v2 server at the other end of `connection` about our public addresses,
    /// unless it was asked about the same ones within ``NodeConfiguration/autoNATRecheckInterval``.
    private func askReachability(of connection: Connection) {
        guard let client = autoNAT, runState == .running, connection.isActive else { return }
        let addresses = Array(publicAddresses.prefix(client.configuration.maximumAddressesPerRequest))
        guard !addresses.isEmpty else { return }
        let server = connection.remotePeerID
        if let last = autoNATAsked[server], last.addresses == Set(addresses), ContinuousClock.now - last.at < configuration.autoNATRecheckInterval {
            return
        }
        if autoNATAsked[server] == nil, autoNATAsked.count >= configuration.maximumAutoNATServers,
            let oldest = autoNATAsked.min(by: { $0.value.at < $1.value.at })?.key
        {
            autoNATAsked[oldest] = nil
        }
        autoNATAsked[server] = (Set(addresses), .now)
        let logger = self.logger
        Task {
            do {
                let results = try await client.check(addresses: addresses, via: connection)
                logger.debug("AutoNAT v2", metadata: ["server": "\(server)", "results": "\(results.map { "\($0.address) \($0.status)" })"])
            } catch {
                logger.debug("AutoNAT v2 check failed", metadata: ["server": "\(server)", "error": "\(error)"])
            }
        }
    }

    // MARK: The one-connection rule

    private func isReservedRelay(_ peer: PeerID) -> Bool {
        configuration.relays.contains { $0.peerID == peer.multihash } || reservationsByRelay.values.contains { $0.relay == peer }
    }

    private func keptConnection(to peer: PeerID) -> Connection? {
        guard let state = peerStates[peer] else { return nil }
        let live = state.connections.values.filter { $0.connection.isActive && !state.retiring.contains(ObjectIdentifier($0.connection)) }
        let candidates = live.map { ConnectionSelection.Candidate(path: $0.connection.path, initiator: $0.connection.initiator(local: peerID), order: $0.order) }
        guard let decision = ConnectionSelection.decide(candidates, local: peerID) else { return nil }
        return live[decision.keep].connection
    }

    private func enforceOneConnection(to peer: PeerID) {
        // A relay we reserve on keeps every connection: the reservation lives and dies with the
        // connection it was made on, which the rule could otherwise pick to close (a relay's
        // AutoNAT dial-back, for one, arrives as a second connection).
        guard !isReservedRelay(peer), var state = peerStates[peer] else { return }
        let live = state.connections.values.filter { $0.connection.isActive && !state.retiring.contains(ObjectIdentifier($0.connection)) }
        guard live.count > 1 else { return }
        let candidates = live.map { ConnectionSelection.Candidate(path: $0.connection.path, initiator: $0.connection.initiator(local: peerID), order: $0.order) }
        guard let decision = ConnectionSelection.decide(candidates, local: peerID) else { return }
        let kept = live[decision.keep].connection
        for index in decision.close {
            let duplicate = live[index].connection
            state.retiring.insert(ObjectIdentifier(duplicate))
            // For the policy it is gone now: it carries no new streams.
            _ = state.policy.connectionClosed(path: duplicate.path)
            publish(.duplicateConnection(duplicate, kept: kept))
            logger.debug("closing a duplicate connection once idle", metadata: ["peer": "\(peer)", "connection": "\(duplicate)"])
            let interval = configuration.duplicateCheckInterval
            let grace = TimeAmount(configuration.duplicateIdleGrace)
            Task {
                // An open stream is never cut: close once it has had none for the grace.
                while duplicate.isActive {
                    try? await Task.sleep(for: interval)
                    if let idle = duplicate.idleSince, NIODeadline.now() - idle >= grace {
                        await duplicate.close()
                        return
                    }
                }
            }
        }
        peerStates[peer] = state
    }

    // MARK: The policy

    /// Runs `body` on the peer's policy and performs the actions it returns.
    private func update(_ peer: PeerID, _ body: (inout ConnectPolicy) -> [ConnectPolicy.Action]) {
        var state = peerStates[peer] ?? PeerState(policy: ConnectPolicy(configuration: configuration.connectPolicy, holePunch: configuration.holePunch))
        let actions = body(&state.policy)
        peerStates[peer] = state
        for action in actions { perform(action, for: peer) }
    }

    private func perform(_ action: ConnectPolicy.Action, for peer: PeerID) {
        logger.trace("connect policy", metadata: ["peer": "\(peer)", "action": "\(action)"])
        switch action {
        case .dialDirect(let address):
            startDial(address, to: peer) { node in
                try await node.host.dial(address.appendingPeerID(peer.multihash))
            }
        case .dialViaRelay(let circuit):
            startDial(circuit, to: peer) { node in try await node.dialCircuit(circuit, to: peer) }
        case .schedule(let timer, let after):
            Task { [weak self] in
                try? await Task.sleep(for: after)
                await self?.update(peer) { $0.timerFired(timer) }
            }
        case .cancelDials:
            for dial in peerStates[peer].map({ Array($0.dials.values) }) ?? [] { dial.cancel() }
        case .connected:
            guard var state = peerStates[peer] else { return }
            let waiters = state.waiters
            state.waiters.removeAll()
            peerStates[peer] = state
            if let connection = keptConnection(to: peer) {
                for waiter in waiters { waiter.resume(returning: connection) }
            } else {
                let error = NodeError(.unreachable, "the connection to \(peer) closed as it opened")
                for waiter in waiters { waiter.resume(throwing: error) }
            }
        case .giveUp(let error):
            guard var state = peerStates[peer] else { return }
            let waiters = state.waiters
            state.waiters.removeAll()
            peerStates[peer] = state
            for waiter in waiters { waiter.resume(throwing: error) }
            forgetIfIdle(peer)
        case .startUpgrade(let round):
            startUpgradeRound(round, with: peer)
        case .waitForPeerUpgrade:
            logger.debug("relayed; the peer starts DCUtR", metadata: ["peer": "\(peer)"])
        case .upgradeStopped(let verdict, _):
            guard var state = peerStates[peer] else { return }
            let waiters = state.directWaiters
            state.directWaiters.removeAll()
            let error = state.stopError
            peerStates[peer] = state
            publish(.upgradeStopped(peer: peer, reason: verdict, error: error))
            let failure = error ?? NodeError(.upgradeTimeout, "the upgrade with \(peer) stopped")
            for waiter in waiters.values { waiter.resume(throwing: failure) }
        case .upgraded:
            guard var state = peerStates[peer] else { return }
            if exchanges(with: peer) > 0, state.outcome == nil {
                state.upgradePending = true
                peerStates[peer] = state
            } else {
                publishUpgraded(peer)
            }
        }
    }

    private func startDial(_ address: Multiaddr, to peer: PeerID, _ dial: @escaping @Sendable (PunchNode) async throws -> Connection) {
        let task = Task { [weak self] in
            guard let self else { return }
            do {
                let connection = try await dial(self)
                await self.dialFinished(address, to: peer, .success(connection))
            } catch {
                await self.dialFinished(address, to: peer, .failure(error))
            }
        }
        peerStates[peer]?.dials[address] = task
    }

    private func dialFinished(_ address: Multiaddr, to peer: PeerID, _ result: Result<Connection, any Error>) {
        peerStates[peer]?.dials[address] = nil
        switch result {
        case .success(let connection):
            register(connection)
            guard peerStates[peer]?.connections[ObjectIdentifier(connection)] != nil else {
                // Closed before it could be booked (the peer hung up at once, or it was over a
                // limit): for the attempt that is a failed dial, or its waiters would wait forever.
                metrics.dial(connection.path, success: false)
                let reason = connection.closeError.map { ": \($0.message)" } ?? ""
                update(peer) {
                    $0.dialFailed(address, error: NodeError(.unreachable, "\(address): the connection closed as soon as it opened\(reason)", underlying: connection.closeError))
                }
                break
            }
            metrics.dial(connection.path, success: true)
            update(peer) { $0.dialSucceeded(address) }
        case .failure(let error):
            metrics.dial(address.isCircuit ? .relayed : .direct, success: false)
            logger.debug("dial failed", metadata: ["peer": "\(peer)", "address": "\(address)", "error": "\(error)"])
            let message = (error as? TransportError)?.message ?? (error as? RelayError)?.message ?? "\(error)"
            update(peer) {
                $0.dialFailed(address, error: NodeError(.unreachable, "\(address): \(message)", underlying: error))
            }
        }
        forgetIfIdle(peer)
    }

    /// Through the relay of `circuit` (`…/p2p/RELAY/p2p-circuit`) to `peer`: over our connection
    /// to the relay (dialed if needed, and identified first, so that our public address is
    /// confirmed before DCUtR asks for it).
    private func dialCircuit(_ circuit: Multiaddr, to peer: PeerID) async throws -> Connection {
        guard let relayAddress = circuit.relayAddress, let relayHash = relayAddress.peerID else {
            throw NodeError(.noAddresses, "a circuit reads /…/p2p/RELAY/p2p-circuit, not \(circuit)")
        }
        let relayPeer = try PeerID(multihash: relayHash)
        let relayConnection: Connection
        if let existing = host.connections(to: relayPeer).first(where: { $0.path == .direct && $0.isActive }) {
            relayConnection = existing
        } else {
            do {
                relayConnection = try await host.dial(relayAddress)
                metrics.dial(.direct, success: true)
            } catch {
                metrics.dial(.direct, success: false)
                throw error
            }
            register(relayConnection)
        }
        if let info = try? await relayConnection.identify() { identifiedConnection(relayConnection, info) }
        return try await RelayClient.connect(to: peer, via: relayConnection, host: host, configuration: configuration.relayClient)
    }

    /// The peer's direct addresses and the circuits to try, from the peer store and the
    /// configured relays.
    private func candidateAddresses(for peer: PeerID) -> (direct: [Multiaddr], circuits: [Multiaddr]) {
        let records = store.addresses(for: peer, now: .now())
        let direct = records.filter { !$0.isCircuit }.map(\.address)
        var circuits = records.filter(\.isCircuit).map(\.address)
        if configuration.dialThroughConfiguredRelays {
            for relay in configuration.relays {
                let named = relay.peerID != nil ? relay : reservationsByRelay[relay]?.relayAddresses.first
                guard let named, named.peerID != peer.multihash else { continue }
                circuits.append(named.appendingCircuit())
            }
        }
        return (direct, circuits)
    }

    // MARK: Upgrading

    private func startUpgradeRound(_ round: Int, with peer: PeerID) {
        guard let relayed = relayedConnection(to: peer) else {
            update(peer) { $0.upgradeRoundFinished(round: round, error: NodeError(.unreachable, "no relayed connection left")) }
            return
        }
        exchangesInFlight.withLockedValue { $0[peer, default: 0] += 1 }
        metrics.upgradeAttempt(initiator: true)
        let host = self.host
        let holePunch = configuration.holePunch
        let (tracker, mapped) = (self.tracker, self.mapped)
        Task { [weak self] in
            let result: Result<HolePunchOutcome, any Error>
            if round == 1, holePunch.dialAdvertisedAddressesFirst,
                let direct = await HolePuncher.dialAdvertisedAddresses(of: relayed, host: host, configuration: holePunch)
            {
                result = .success(direct)
            } else {
                do {
                    result = .success(try await HolePuncher.initiate(
                        over: relayed, host: host, localAddresses: Self.publicTCPAddresses(tracker: tracker, mapped: mapped),
                        configuration: holePunch))
                } catch {
                    result = .failure(error)
                }
            }
            await self?.ourExchangeFinished(with: peer, round: round, result)
        }
    }

    private func relayedConnection(to peer: PeerID) -> Connection? {
        let relayed = peerStates[peer]?.connections.values.map(\.connection).filter { $0.path == .relayed && $0.isActive } ?? []
        return relayed.first { $0.direction == .inbound } ?? relayed.first
    }

    private func ourExchangeFinished(with peer: PeerID, round: Int, _ result: Result<HolePunchOutcome, any Error>) {
        exchangeFinished(with: peer, result)
        var retryIn: Duration?
        let error: (any Error)?
        if case .failure(let failure) = result { error = failure } else { error = nil }
        if let error {
            peerStates[peer]?.stopError = error
            var policy = peerStates[peer]?.policy
            let actions = policy?.upgradeRoundFinished(round: round, error: error) ?? []
            if let policy { peerStates[peer]?.policy = policy }
            for action in actions {
                if case .schedule(.upgradeRetry, let after) = action { retryIn = after }
            }
            publish(.upgradeRoundFailed(peer: peer, error: error, retryIn: retryIn))
            for action in actions { perform(action, for: peer) }
        } else {
            update(peer) { $0.upgradeRoundFinished(round: round, error: nil) }
        }
        forgetIfIdle(peer)
    }

    private func exchanges(with peer: PeerID) -> Int {
        exchangesInFlight.withLockedValue { $0[peer] ?? 0 }
    }

    private func servedExchangeFinished(_ relayed: Connection, _ result: Result<HolePunchOutcome, any Error>) {
        let peer = relayed.remotePeerID
        exchangeFinished(with: peer, result)
        if case .failure(let error) = result {
            peerStates[peer]?.stopError = error
            publish(.upgradeRoundFailed(peer: peer, error: error, retryIn: nil))
            update(peer) { $0.servedRoundFinished(error: error) }
        }
        forgetIfIdle(peer)
    }

    /// Books the end of an exchange; a success registers its connection, and an `upgraded` that
    /// waited for an outcome is published now.
    private func exchangeFinished(with peer: PeerID, _ result: Result<HolePunchOutcome, any Error>) {
        exchangesInFlight.withLockedValue { counts in
            let left = (counts[peer] ?? 1) - 1
            counts[peer] = left > 0 ? left : nil
        }
        guard peerStates[peer] != nil else { return }
        switch result {
        case .success(let outcome):
            let key = ObjectIdentifier(outcome.connection)
            let known = peerStates[peer]?.connections[key] != nil
            peerStates[peer]?.outcome = outcome
            // Registering tells the policy, whose `upgraded` publishes with this outcome.
            if !known { register(outcome.connection) }
            guard let current = peerStates[peer], current.outcome != nil else { return }
            if current.upgradePending || current.connections[key] == nil {
                // It waited for this outcome, or the connection closed before it could be
                // registered: the upgrade happened all the same.
                publishUpgraded(peer)
            } else {
                // Its connection was reported as an upgrade already.
                peerStates[peer]?.outcome = nil
            }
        case .failure:
            if let current = peerStates[peer], current.upgradePending, exchanges(with: peer) == 0 { publishUpgraded(peer) }
        }
    }

    /// Reports the upgrade of `peer`: with the exchange's outcome when there is one (also when
    /// its connection has closed meanwhile: the upgrade happened), else with the kept direct
    /// connection as a direct dial (`attempt` 0).
    private func publishUpgraded(_ peer: PeerID) {
        guard var state = peerStates[peer] else { return }
        let since = state.relayedSince
        let kept = keptConnection(to: peer).flatMap { $0.path == .direct ? $0 : nil }
        guard let outcome = state.outcome ?? kept.map({
            HolePunchOutcome(connection: $0, attempt: 0, roundTrip: nil, elapsed: since.map { .now - $0 } ?? .zero, dialed: [])
        }) else {
            state.upgradePending = false
            peerStates[peer] = state
            return
        }
        state.outcome = nil
        state.upgradePending = false
        state.stopError = nil
        let waiters = state.directWaiters
        state.directWaiters.removeAll()
        peerStates[peer] = state
        let relayedToDirect = since.map { ContinuousClock.now - $0 }
        metrics.upgraded(after: relayedToDirect)
        if let address = outcome.connection.remoteAddress, outcome.attempt > 0 {
            store.add([address], for: peer, source: .dcutr, now: .now())
        }
        publish(.upgraded(peer: peer, outcome: outcome, relayedToDirect: relayedToDirect))
        for waiter in waiters.values { waiter.resume(returning: outcome) }
    }

    // MARK: Reachability

    private func reservationEvent(_ relay: Multiaddr, _ event: ReservationKeeper.Event) {
        switch event {
        case .reserved(let reservation):
            reservationsByRelay[relay] = reservation
            store.add(reservation.relayAddresses, for: reservation.relay, source: .user, now: .now())
            publish(.reserved(reservation))
        case .failed(let error, let retryIn):
            reservationsByRelay[relay] = nil
            publish(.reservationFailed(relay: relay, error: error, retryIn: retryIn))
        case .lost:
            reservationsByRelay[relay] = nil
            publish(.relayLost(relay: relay))
        }
    }

    /// Our public TCP addresses for DCUtR: confirmed observed addresses and a mapped port.
    nonisolated static func publicTCPAddresses(tracker: ObservedAddressTracker, mapped: NIOLockedValueBox<Multiaddr?>) -> [Multiaddr] {
        var addresses = tracker.confirmed.filter { $0.transport?.kind == .tcp }
        if let mapped = mapped.withLockedValue({ $0 }), !addresses.contains(mapped) { addresses.insert(mapped, at: 0) }
        return addresses
    }

    private func checkPublicAddresses() {
        let now = Self.publicTCPAddresses(tracker: tracker, mapped: mapped)
        guard Set(now) != Set(publicAddresses) else { return }
        publicAddresses = now
        publish(.publicAddressesChanged(now))
        guard !now.isEmpty else { return }
        for server in Array(autoNATAsked.keys) {
            if let connection = host.connections(to: server).first(where: { $0.path == .direct && $0.isActive }) {
                askReachability(of: connection)
            }
        }
        for peer in Array(peerStates.keys) {
            update(peer) { $0.localAddressesChanged() }
        }
    }

    /// Every ``NodeConfiguration/addressCheckInterval``: addresses that expired or became
    /// confirmed, the peer store's expired entries, and the byte counters.
    private func tick() {
        guard runState == .running else { return }
        checkPublicAddresses()
        store.removeExpired(now: .now())
        for state in peerStates.values {
            for entry in state.connections.values { sampleBytes(entry.connection, final: false) }
        }
        let dropped = broadcaster.takeDroppedCount()
        if dropped > 0 { metrics.eventsDropped.increment(by: dropped) }
    }

    private func sampleBytes(_ connection: Connection, final: Bool) {
        let key = ObjectIdentifier(connection)
        guard let last = byteTotals[key] else { return }
        let received = connection.bytes.bytesReceived
        let sent = connection.bytes.bytesSent
        metrics.bytes(connection.path, received: received - last.received, sent: sent - last.sent)
        byteTotals[key] = final ? nil : (received, sent)
    }

    private func updateConnectionGauges() {
        let all = peerStates.values.flatMap(\.connections.values).map(\.connection)
        metrics.connections(.direct, all.filter { $0.path == .direct }.count)
        metrics.connections(.relayed, all.filter { $0.path == .relayed }.count)
    }

    private func startPortMapping(port: UInt16, protocols: [PortMappingProtocol]) {
        var mapperConfiguration = PortMapper.Configuration(transport: .tcp, internalPort: port)
        mapperConfiguration.protocols = protocols
        mapperConfiguration.suggestedExternalPort = port
        let mapper = PortMapper(configuration: mapperConfiguration, logger: logger)
        portMapper = mapper
        background.append(Task { [weak self] in
            do {
                _ = try await mapper.start()
            } catch {
                await self?.portMappingChanged(nil, error: error)
                return
            }
            for await event in mapper.events {
                switch event {
                case .mapped(let mapping), .externalAddressChanged(_, let mapping): await self?.portMappingChanged(mapping, error: nil)
                case .lost(let error): await self?.portMappingChanged(nil, error: error)
                case .renewed, .removed, .removalFailed: await self?.portMappingEvent(event)
                }
            }
        })
    }

    private func portMappingChanged(_ mapping: GatewayMapping?, error: (any Error)?) {
        mapped.withLockedValue { $0 = mapping.map { Multiaddr.tcp($0.external) } }
        if let mapping { publish(.portMapped(mapping)) }
        if let error { publish(.portMappingFailed(error)) }
        checkPublicAddresses()
    }

    private func portMappingEvent(_ event: PortMappingEvent) {
        logger.debug("port mapping", metadata: ["event": "\(event)"])
    }

    private func forgetIfIdle(_ peer: PeerID) {
        guard let state = peerStates[peer], state.isIdle, !state.policy.isConnecting, exchanges(with: peer) == 0 else { return }
        peerStates[peer] = nil
    }
}
