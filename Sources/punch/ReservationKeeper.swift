import Foundation
import Synchronization
import Punch

/// Keeps a reservation on one relay: connects, reserves, refreshes before expiry, and after a
/// failure or a lost connection tries again with exponential backoff (1 s doubling to 60 s).
struct ReservationKeeper: Sendable {
    let host: PunchHost
    let relay: Multiaddr
    let output: EventPrinter

    /// Refresh this long before the reservation expires (py-libp2p refreshes 30 s before).
    static let refreshMargin: Double = 60
    static let maximumBackoff: Double = 60

    func run() async {
        var backoff: Double = 1
        while !Task.isCancelled {
            do {
                let connection = try await host.dial(relay)
                while !Task.isCancelled, connection.isActive {
                    let reservation = try await RelayClient.reserve(on: connection, host: host, relayAddress: relay.withoutPeerID())
                    backoff = 1
                    let remaining = reservation.expiration.timeIntervalSinceNow
                    output.emitLine(
                        ["event": "reserved", "relay": "\(reservation.relay)", "circuit_addrs": reservation.circuitAddresses.map { "\($0)" },
                         "expires_in_s": Int(remaining), "limit_duration_s": reservation.limitDuration.map { Int($0) } ?? 0,
                         "limit_bytes": reservation.limitBytes ?? 0],
                        "reserved on \(reservation.relay) for \(Int(remaining)) s; reachable at "
                            + reservation.circuitAddresses.map { "\($0)" }.joined(separator: " "))
                    // Refresh before expiry, or at once when the connection drops.
                    let wait = max(1, remaining - Self.refreshMargin)
                    try await waitUntil(seconds: wait, orClosed: connection)
                }
                if !Task.isCancelled {
                    output.emitLine(["event": "relay_lost", "relay": "\(relay)"], "lost the relay \(relay); reserving again")
                }
            } catch {
                if Task.isCancelled { return }
                let coded = error as? CodedError
                output.emitLine(
                    ["event": "reservation_failed", "relay": "\(relay)", "code": coded?.codeName ?? "error",
                     "message": coded?.message ?? "\(error)", "retry_in_s": backoff],
                    "reservation on \(relay) failed: \(coded?.message ?? "\(error)"); retrying in \(Int(backoff)) s")
                try? await Task.sleep(for: .seconds(backoff))
                backoff = min(Self.maximumBackoff, backoff * 2)
            }
        }
    }

    /// Sleeps `seconds`, or less when `connection` closes first. The close ends the wait through
    /// a ``Wake`` that the end of the sleep (or cancellation) also fires: a child task awaiting
    /// `closeFuture.get()` cannot be cancelled, so a task group would wait for the close after
    /// the sleep, and the refresh would never come while the connection stays up.
    private func waitUntil(seconds: Double, orClosed connection: Connection) async throws {
        let wake = Wake()
        connection.closeFuture.whenComplete { _ in wake.fire() }
        try await withThrowingTaskGroup(of: Void.self) { group in
            defer { wake.fire() }
            group.addTask { try await Task.sleep(for: .seconds(seconds)) }
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
