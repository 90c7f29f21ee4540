import PunchHolePunch
import PunchTransport
import PunchWire

/// How ``PunchNode`` reaches one peer, as a state machine with no I/O: it takes events (a dial
/// finished, a timer fired, a connection came or went, a DCUtR round ended) and returns the
/// actions to perform. The node keeps one per peer, so concurrent `connect(to:)` calls share one
/// attempt, and one upgrade loop runs per peer however many relayed connections it has.
///
/// The order (issue 16, "Connect policy"):
/// 1. The peer's known direct addresses, dialed in parallel with a short stagger between starts
///    (happy eyeballs, RFC 8305 section 5: ``Configuration/directDialStagger``).
/// 2. A circuit through each known relay of the peer, once every direct dial has failed or
///    ``Configuration/relayFallbackDelay`` after the first direct dial, whichever comes first.
/// 3. Once relayed, one upgrade loop: the side that accepted the relayed connection starts DCUtR
///    (DCUtR.md: "B" initiates), up to ``HolePunchConfiguration/rounds`` rounds, waiting
///    ``HolePunchConfiguration/retryDelay`` (times ``HolePunchConfiguration/retryMultiplier`` each
///    time) between them. What a failure means is ``HolePunchRetry/verdict(after:)``, for both
///    roles. The other side waits for the peer's rounds.
public struct ConnectPolicy: Sendable {
    /// Timing and bounds of the policy; every value has a named default.
    public struct Configuration: Sendable, Hashable {
        /// The default ``directDialStagger``: 250 ms (RFC 8305's recommended connection attempt
        /// delay).
        public static let defaultDirectDialStagger = Duration.milliseconds(250)
        /// The default ``relayFallbackDelay``: 2 seconds.
        public static let defaultRelayFallbackDelay = Duration.seconds(2)
        /// The default ``maximumDialsPerAttempt``: 8.
        public static let defaultMaximumDialsPerAttempt = 8

        /// The wait between the starts of two direct dials.
        public var directDialStagger = Self.defaultDirectDialStagger
        /// How long after the first direct dial the circuits start even though direct dials are
        /// still pending (a SYN to a NATed address is often dropped, and the dial would otherwise
        /// hold the relay back for its whole timeout).
        public var relayFallbackDelay = Self.defaultRelayFallbackDelay
        /// The most addresses (direct and circuit) one attempt dials.
        public var maximumDialsPerAttempt = Self.defaultMaximumDialsPerAttempt

        public init() {}
    }

    /// What the node does next.
    public enum Action: Sendable, Hashable {
        /// Dial this direct address of the peer.
        case dialDirect(Multiaddr)
        /// Dial the peer through this relay (a `…/p2p/RELAY/p2p-circuit` address).
        case dialViaRelay(Multiaddr)
        /// Call ``ConnectPolicy/timerFired(_:)`` with this timer after the duration.
        case schedule(Timer, after: Duration)
        /// Cancel the dials still running: a direct connection exists.
        case cancelDials
        /// Resume everyone waiting for a connection: one exists, on this path.
        case connected(ConnectionPath)
        /// Run DCUtR round `round` as its initiator (round 1 first dials the peer's advertised
        /// public addresses when configured to).
        case startUpgrade(round: Int)
        /// Serve DCUtR and wait: the peer starts the rounds.
        case waitForPeerUpgrade
        /// The upgrade loop is over without a direct connection (the error says why); the peer
        /// stays relayed.
        case upgradeStopped(HolePunchRetry.Verdict, round: Int)
        /// Resume the waiters for a direct connection: one exists.
        case upgraded
        /// Fail everyone waiting for a connection.
        case giveUp(NodeError)
    }

    /// The policy's timers. Each carries the generation it was scheduled in: a timer from an
    /// earlier attempt or round is ignored.
    public enum Timer: Sendable, Hashable {
        /// Start the next staggered direct dial.
        case nextDirectDial(generation: Int)
        /// Start the circuits although direct dials are pending.
        case relayFallback(generation: Int)
        /// Start the next upgrade round.
        case upgradeRetry(generation: Int)
    }

    /// Where the policy stands.
    public enum Phase: Sendable, Hashable {
        /// Nothing running, no connection.
        case idle
        /// An attempt is dialing.
        case connecting
        /// Connected through a relay only; `upgrading` while a round runs or is scheduled.
        case relayed(upgrading: Bool)
        /// A direct connection exists.
        case direct
    }

    private struct Attempt {
        var directQueue: [Multiaddr]
        var circuitQueue: [Multiaddr]
        var pending: Set<Multiaddr> = []
        var circuitsStarted = false
        var lastError: NodeError?
    }

    private enum UpgradeState: Hashable {
        /// No loop yet (or the relayed connections went away).
        case none
        /// The peer drives the rounds.
        case waitingForPeer
        /// Our round `round` runs.
        case running(round: Int)
        /// Round `nextRound` is scheduled.
        case scheduled(nextRound: Int)
        /// Waiting for our public addresses to change before round `nextRound`.
        case waitingForAddresses(nextRound: Int)
        /// Over.
        case stopped
    }

    /// The configuration.
    public let configuration: Configuration
    /// The upgrade loop's schedule, from the ``HolePunchConfiguration`` (its one home, which
    /// `keepUpgrading` reads too): rounds, the first retry's delay, and the growth per retry.
    private let rounds: Int
    private let retryDelay: Duration
    private let retryMultiplier: Int
    private var attempt: Attempt?
    private var generation = 0
    private var relayedConnections = 0
    private var directConnections = 0
    private var upgrade = UpgradeState.none

    /// A policy for one peer, idle.
    ///
    /// - Parameters:
    ///   - configuration: dial order and bounds.
    ///   - holePunch: the upgrade loop's rounds and retry delays
    ///     (``HolePunchConfiguration/rounds``, ``HolePunchConfiguration/retryDelay``,
    ///     ``HolePunchConfiguration/retryMultiplier``: 4 rounds, 5 s, 15 s, 45 s apart).
    public init(configuration: Configuration = Configuration(), holePunch: HolePunchConfiguration = HolePunchConfiguration()) {
        self.configuration = configuration
        self.rounds = max(1, holePunch.rounds)
        self.retryDelay = holePunch.retryDelay
        self.retryMultiplier = holePunch.retryMultiplier
    }

    /// Where the policy stands now.
    public var phase: Phase {
        if directConnections > 0 { return .direct }
        if relayedConnections > 0 {
            switch upgrade {
            case .running, .scheduled: return .relayed(upgrading: true)
            default: return .relayed(upgrading: false)
            }
        }
        return attempt == nil ? .idle : .connecting
    }

    /// Whether an attempt is dialing.
    public var isConnecting: Bool { attempt != nil }

    /// Whether the upgrade loop has ended (or never started) while the peer is only relayed:
    /// waiting for a direct connection is pointless until something changes.
    public var upgradeHasStopped: Bool {
        switch upgrade {
        case .stopped, .waitingForAddresses: return directConnections == 0
        default: return false
        }
    }

    // MARK: Connecting

    /// A `connect(to:)` with no usable connection: starts an attempt (or joins the running one).
    ///
    /// - Parameters:
    ///   - direct: the peer's direct addresses, best first.
    ///   - circuits: circuit addresses to reach it through relays (`…/p2p/RELAY/p2p-circuit`).
    public mutating func connect(direct: [Multiaddr], circuits: [Multiaddr]) -> [Action] {
        if directConnections > 0 { return [.connected(.direct)] }
        if relayedConnections > 0 { return [.connected(.relayed)] }
        guard attempt == nil else { return [] }
        var direct = Self.unique(direct)
        var circuits = Self.unique(circuits)
        direct = Array(direct.prefix(configuration.maximumDialsPerAttempt))
        circuits = Array(circuits.prefix(max(0, configuration.maximumDialsPerAttempt - direct.count)))
        guard !direct.isEmpty || !circuits.isEmpty else {
            return [.giveUp(NodeError(.noAddresses, "no address and no relay known for the peer: add its addresses or a relay to the node's configuration"))]
        }
        generation += 1
        attempt = Attempt(directQueue: direct, circuitQueue: circuits)
        var actions: [Action] = []
        if direct.isEmpty {
            actions += startCircuits()
        } else {
            actions += startNextDirect()
            if !circuits.isEmpty {
                actions.append(.schedule(.relayFallback(generation: generation), after: configuration.relayFallbackDelay))
            }
        }
        return actions
    }

    /// A dial of the attempt succeeded. Call it after ``connectionOpened(path:direction:)`` for
    /// the connection it made (the node registers each connection once, whichever of the dial
    /// and the host's event comes first).
    public mutating func dialSucceeded(_ address: Multiaddr) -> [Action] {
        attempt?.pending.remove(address)
        if let current = attempt, current.pending.isEmpty, directConnections + relayedConnections > 0 { attempt = nil }
        return []
    }

    /// A dial of the attempt failed.
    public mutating func dialFailed(_ address: Multiaddr, error: NodeError) -> [Action] {
        guard var current = attempt, current.pending.remove(address) != nil else { return [] }
        current.lastError = error
        attempt = current
        var actions: [Action] = []
        if current.pending.isEmpty {
            // Nothing in flight: the next direct address at once, then the circuits.
            if !current.directQueue.isEmpty {
                actions += startNextDirect()
            } else if !current.circuitsStarted, !current.circuitQueue.isEmpty {
                actions += startCircuits()
            }
        }
        if let after = attempt, after.pending.isEmpty, after.directQueue.isEmpty, after.circuitsStarted || after.circuitQueue.isEmpty {
            attempt = nil
            // Connected meanwhile (a relayed connection, or the peer dialed us): nothing failed.
            guard directConnections + relayedConnections == 0 else { return actions }
            let detail = after.lastError.map { ": \($0.message)" } ?? ""
            actions.append(.giveUp(NodeError(.unreachable, "every address of the peer failed\(detail); check its addresses (PunchNode.addresses(of:)) and that it holds a reservation on a relay we know", underlying: after.lastError?.underlying)))
        }
        return actions
    }

    /// A timer the policy scheduled fired.
    public mutating func timerFired(_ timer: Timer) -> [Action] {
        switch timer {
        case .nextDirectDial(let scheduled):
            guard scheduled == generation, attempt != nil, directConnections == 0 else { return [] }
            return startNextDirect()
        case .relayFallback(let scheduled):
            guard scheduled == generation, attempt != nil, directConnections == 0, relayedConnections == 0 else { return [] }
            return startCircuits()
        case .upgradeRetry(let scheduled):
            guard scheduled == generation, case .scheduled(let round) = upgrade, directConnections == 0, relayedConnections > 0
            else { return [] }
            upgrade = .running(round: round)
            return [.startUpgrade(round: round)]
        }
    }

    // MARK: Connections

    /// A connection to the peer joined the node's table (ours, the peer's, or a punch).
    ///
    /// - Parameter direction: for a relayed connection, whether we dialed it (`.outbound`: the
    ///   peer starts DCUtR) or accepted it (`.inbound`: we do).
    public mutating func connectionOpened(path: ConnectionPath, direction: ConnectionDirection) -> [Action] {
        var actions: [Action] = []
        switch path {
        case .direct:
            directConnections += 1
            guard directConnections == 1 else { return [] }
            let upgrading: Bool
            switch upgrade {
            case .none: upgrading = false
            default: upgrading = true
            }
            upgrade = .none
            generation += 1
            if attempt != nil {
                attempt = nil
                actions += [.cancelDials, .connected(.direct)]
            }
            if upgrading || relayedConnections > 0 { actions.append(.upgraded) }
        case .relayed:
            relayedConnections += 1
            if attempt != nil {
                // A relayed connection is enough to answer; direct dials still running may win.
                attempt?.circuitQueue.removeAll()
                attempt?.directQueue.removeAll()
                if attempt?.pending.isEmpty ?? true { attempt = nil }
                actions.append(.connected(.relayed))
            }
            guard directConnections == 0, upgrade == .none else { return actions }
            if direction == .inbound {
                upgrade = .running(round: 1)
                actions.append(.startUpgrade(round: 1))
            } else {
                upgrade = .waitingForPeer
                actions.append(.waitForPeerUpgrade)
            }
        }
        return actions
    }

    /// A connection to the peer closed.
    public mutating func connectionClosed(path: ConnectionPath) -> [Action] {
        switch path {
        case .direct: directConnections = max(0, directConnections - 1)
        case .relayed: relayedConnections = max(0, relayedConnections - 1)
        }
        if relayedConnections == 0 {
            // No relayed connection left to upgrade; the next one starts a new loop.
            upgrade = .none
            generation += 1
        }
        return []
    }

    // MARK: Upgrading

    /// Our DCUtR round `round` ended.
    public mutating func upgradeRoundFinished(round: Int, error: (any Error)?) -> [Action] {
        guard case .running(let running) = upgrade, running == round else { return [] }
        guard let error else {
            // The punched connection arrives through ``connectionOpened(path:direction:)``.
            upgrade = .none
            return []
        }
        guard directConnections == 0, relayedConnections > 0 else {
            upgrade = .none
            return []
        }
        let verdict = HolePunchRetry.verdict(after: error)
        if round >= rounds || verdict == .stop {
            upgrade = .stopped
            return [.upgradeStopped(verdict, round: round)]
        }
        if verdict == .waitForNewAddresses {
            upgrade = .waitingForAddresses(nextRound: round + 1)
            return [.upgradeStopped(verdict, round: round)]
        }
        upgrade = .scheduled(nextRound: round + 1)
        return [.schedule(.upgradeRetry(generation: generation), after: retryDelay(afterRound: round))]
    }

    /// An exchange the peer started (we serve) ended with `error` (`nil`: it punched, and the
    /// connection arrives through ``connectionOpened(path:direction:)``).
    public mutating func servedRoundFinished(error: (any Error)?) -> [Action] {
        guard let error, upgrade == .waitingForPeer, directConnections == 0 else { return [] }
        let verdict = HolePunchRetry.verdict(after: error)
        guard verdict != .retry else { return [] }
        // The peer's next round, if any, comes only when its addresses change: waiting stops.
        upgrade = .stopped
        return [.upgradeStopped(verdict, round: 0)]
    }

    /// Our public addresses changed: a wait for them, or a scheduled round, starts now.
    public mutating func localAddressesChanged() -> [Action] {
        guard directConnections == 0, relayedConnections > 0 else { return [] }
        switch upgrade {
        case .waitingForAddresses(let round), .scheduled(let round):
            generation += 1
            upgrade = .running(round: round)
            return [.startUpgrade(round: round)]
        default:
            return []
        }
    }

    /// The wait after round `round` fails: the retry delay times the multiplier per earlier retry.
    public func retryDelay(afterRound round: Int) -> Duration {
        var delay = retryDelay
        for _ in 1..<max(1, round) { delay *= retryMultiplier }
        return delay
    }

    // MARK: Helpers

    private mutating func startNextDirect() -> [Action] {
        guard var current = attempt, !current.directQueue.isEmpty else { return [] }
        let address = current.directQueue.removeFirst()
        current.pending.insert(address)
        attempt = current
        var actions: [Action] = [.dialDirect(address)]
        if !current.directQueue.isEmpty {
            actions.append(.schedule(.nextDirectDial(generation: generation), after: configuration.directDialStagger))
        }
        return actions
    }

    private mutating func startCircuits() -> [Action] {
        guard var current = attempt, !current.circuitsStarted else { return [] }
        current.circuitsStarted = true
        let circuits = current.circuitQueue
        current.circuitQueue.removeAll()
        current.pending.formUnion(circuits)
        attempt = current
        return circuits.map { .dialViaRelay($0) }
    }

    private static func unique(_ addresses: [Multiaddr]) -> [Multiaddr] {
        var seen = Set<Multiaddr>()
        return addresses.filter { seen.insert($0).inserted }
    }
}
