import Foundation
import Synchronization
import PunchCrypto
import PunchTransport
import PunchWire

/// Keeps a reservation on one relay (circuit-v2.md, "Reservation"): connects, reserves, refreshes
/// ``Configuration/refreshMargin`` before the reservation expires, and after a failure or a lost
/// connection tries again with exponential backoff and jitter, capped at
/// ``Configuration/maximumBackoff``. ``run()`` goes on until its task is cancelled.
///
/// ```swift
/// let keeper = ReservationKeeper(host: host, relay: try Multiaddr("/ip4/203.0.113.10/tcp/4001/p2p/12D3KooW…")) { event in
///     if case .reserved(let reservation) = event { print(reservation.circuitAddresses) }
/// }
/// let task = Task { await keeper.run() }
/// ```
public struct ReservationKeeper: Sendable {
    /// Timing of the keeper; every value has a named default.
    public struct Configuration: Sendable, Hashable {
        /// The default ``refreshMargin``: 60 seconds (py-libp2p refreshes 30 s before).
        public static let defaultRefreshMargin = Duration.seconds(60)
        /// The default ``initialBackoff``: 1 second.
        public static let defaultInitialBackoff = Duration.seconds(1)
        /// The default ``maximumBackoff``: 60 seconds.
        public static let defaultMaximumBackoff = Duration.seconds(60)
        /// The default ``jitter``: 0.2 (each wait is 80 % to 100 % of its nominal value).
        public static let defaultJitter = 0.2

        /// Refresh this long before the reservation expires (at least 1 s after it was made).
        public var refreshMargin = Self.defaultRefreshMargin
        /// The wait after the first failure; it doubles after each further failure.
        public var initialBackoff = Self.defaultInitialBackoff
        /// The longest wait between two tries.
        public var maximumBackoff = Self.defaultMaximumBackoff
        /// The share of each wait taken off at random, so that many clients of a relay that
        /// restarted do not come back at the same instant (0 turns it off; at most 1).
        public var jitter = Self.defaultJitter

        public init() {}
    }

    /// What the keeper reports.
    public enum Event: Sendable {
        /// A reservation was made or refreshed.
        case reserved(RelayReservation)
        /// Connecting or reserving failed; the next try is in `retryIn`.
        case failed(any Error, retryIn: Duration)
        /// The connection to the relay closed; the keeper reserves again at once.
        case lost
    }

    /// The host that dials the relay.
    public let host: PunchHost
    /// The relay's address (ending in its `/p2p/` to check its identity, or without it to take
    /// whichever identity answers).
    public let relay: Multiaddr
    /// Timing.
    public let configuration: Configuration
    /// The relay protocol's limits and timeouts.
    public let relayConfiguration: RelayConfiguration
    private let onEvent: @Sendable (Event) -> Void

    /// A keeper; nothing happens until ``run()``.
    public init(
        host: PunchHost, relay: Multiaddr, configuration: Configuration = Configuration(),
        relayConfiguration: RelayConfiguration = RelayConfiguration(), onEvent: @escaping @Sendable (Event) -> Void = { _ in }
    ) {
        self.host = host
        self.relay = relay
        self.configuration = configuration
        self.relayConfiguration = relayConfiguration
        self.onEvent = onEvent
    }

    /// Keeps the reservation until the task is cancelled.
    public func run() async {
        var backoff = configuration.initialBackoff
        while !Task.isCancelled {
            do {
                let connection = try await host.dial(relay)
                while !Task.isCancelled, connection.isActive {
                    let reservation = try await RelayClient.reserve(
                        on: connection, host: host, relayAddress: relay.withoutPeerID(), configuration: relayConfiguration)
                    backoff = configuration.initialBackoff
                    onEvent(.reserved(reservation))
                    // Refresh before expiry, or at once when the connection drops.
                    let remaining = Duration.seconds(reservation.expiration.timeIntervalSinceNow)
                    let wait = max(.seconds(1), remaining - configuration.refreshMargin)
                    try await Self.wait(wait, orUntilClosed: connection)
                }
                if !Task.isCancelled { onEvent(.lost) }
            } catch {
                if Task.isCancelled { return }
                let wait = jittered(backoff)
                onEvent(.failed(error, retryIn: wait))
                try? await Task.sleep(for: wait)
                backoff = min(configuration.maximumBackoff, backoff * 2)
            }
        }
    }

    /// `duration` less a random share of up to ``Configuration/jitter``.
    func jittered(_ duration: Duration) -> Duration {
        let jitter = min(1, max(0, configuration.jitter))
        guard jitter > 0 else { return duration }
        return duration * (1 - Double.random(in: 0...jitter))
    }

    /// Sleeps `duration`, or less when `connection` closes first. The close ends the wait through
    /// a ``Wake`` that the end of the sleep (or cancellation) also fires: a child task awaiting
    /// `closeFuture.get()` cannot be cancelled, so a task group would wait for the close after
    /// the sleep, and the refresh would never come while the connection stays up.
    static func wait(_ duration: Duration, orUntilClosed connection: Connection) async throws {
        let wake = Wake()
        connection.closeFuture.whenComplete { _ in wake.fire() }
        try await withThrowingTaskGroup(of: Void.self) { group in
            defer { wake.fire() }
            group.addTask { try await Task.sleep(for: duration) }
            group.addTask { await wake.wait() }
            _ = try await group.next()
            group.cancelAll()
        }
    }
}

/// A one-shot signal: ``wait()`` returns once ``fire()`` has been called, before or after.
final class Wake: Sendable {
    private let state = Mutex<(fired: Bool, waiter: CheckedContinuation<Void, Never>?)>((false, nil))

    func fire() {
        let waiter = state.withLock { state -> CheckedContinuation<Void, Never>? in
            state.fired = true
            defer { state.waiter = nil }
            return state.waiter
        }
        waiter?.resume()
    }

    func wait() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let fired = state.withLock { state -> Bool in
                if !state.fired { state.waiter = continuation }
                return state.fired
            }
            if fired { continuation.resume() }
        }
    }
}
