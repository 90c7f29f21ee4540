import Logging
import PunchCrypto
import PunchTransport
import PunchWire

extension HolePuncher {
    /// The spec's first step (DCUtR.md, "The Protocol"): the inbound peer checks the addresses the
    /// other side advertises in identify and, if some are public, dials them directly — no
    /// coordination is needed to reach a public peer. Only addresses that pass
    /// ``HolePunchAddressFilter`` are dialed (TCP, public unless private ones are allowed, at most
    /// ``HolePunchConfiguration/maximumAddresses``), each within
    /// ``HolePunchConfiguration/dialTimeout``, with the peer's PeerID checked by Noise.
    ///
    /// - Returns: the direct connection (as an outcome with `attempt` 0), or `nil` when the peer
    ///   advertises no usable address or none answered.
    public static func dialAdvertisedAddresses(
        of relayed: Connection, host: PunchHost, configuration: HolePunchConfiguration = HolePunchConfiguration()
    ) async -> HolePunchOutcome? {
        guard relayed.path == .relayed, let info = try? await relayed.identify() else { return nil }
        let advertised = HolePunchAddressFilter.usable(
            info.listenAddresses, allowPrivate: configuration.allowPrivateAddresses, allowLoopback: configuration.allowLoopbackAddresses,
            limit: configuration.maximumAddresses)
        guard !advertised.isEmpty else { return nil }
        let clock = ContinuousClock()
        let started = clock.now
        let peer = relayed.remotePeerID
        let connection = await withTaskGroup(of: Connection?.self) { group -> Connection? in
            for address in advertised {
                group.addTask {
                    try? await withThrowingTaskGroup(of: Connection?.self) { inner in
                        inner.addTask { try await host.dial(address.appendingPeerID(peer.multihash)) }
                        inner.addTask {
                            try await Task.sleep(for: .nanoseconds(configuration.dialTimeout.nanoseconds))
                            return nil
                        }
                        let first = try await inner.next() ?? nil
                        inner.cancelAll()
                        return first
                    }
                }
            }
            var winner: Connection?
            for await result in group {
                if let result {
                    if winner == nil { winner = result } else { await result.close() }
                }
            }
            return winner
        }
        guard let connection else { return nil }
        return HolePunchOutcome(connection: connection, attempt: 0, roundTrip: nil, elapsed: clock.now - started, dialed: advertised)
    }

    /// Keeps trying to upgrade a relayed connection while the peer is reachable only through the
    /// relay (issue 7, "Upgrade"): first dials the peer's advertised public addresses
    /// (``dialAdvertisedAddresses(of:host:configuration:)``, unless
    /// ``HolePunchConfiguration/dialAdvertisedAddressesFirst`` is off), then runs ``initiate(over:host:localAddresses:configuration:)``,
    /// and after a failure waits ``HolePunchConfiguration/retryDelay`` (growing by
    /// ``HolePunchConfiguration/retryMultiplier``) before the next round, up to
    /// ``HolePunchConfiguration/rounds`` rounds. A change of our public addresses ends the wait at
    /// once, since the new ones may punch where the old ones did not.
    ///
    /// It stops without another round when the relayed connection closes, when a direct
    /// connection to the peer exists (the peer's own punch, a dial), or when the failure cannot
    /// change by retrying (``HolePunchRetry/verdict(after:)`` says `.stop`: the peer does not
    /// speak DCUtR, or sent a malformed message). After `.waitForNewAddresses` (no usable
    /// address on one side) the next round starts only when our public addresses change.
    ///
    /// - Parameters:
    ///   - relayed: the relayed connection to upgrade.
    ///   - host: the host that dials (from its listening port) and accepts the punch.
    ///   - localAddresses: our public addresses, asked before each round and while waiting.
    ///   - configuration: limits, timing and the rounds.
    ///   - onRound: told of each round's outcome, with the wait before the next round (`nil`:
    ///     no further round).
    /// - Returns: the punched connection, or `nil` when every round failed or it stopped.
    @discardableResult
    public static func keepUpgrading(
        _ relayed: Connection, host: PunchHost, localAddresses: @escaping @Sendable () async -> [Multiaddr],
        configuration: HolePunchConfiguration = HolePunchConfiguration(),
        onRound: @escaping @Sendable (Result<HolePunchOutcome, any Error>, _ retryIn: Duration?) -> Void = { _, _ in }
    ) async -> HolePunchOutcome? {
        let peer = relayed.remotePeerID
        // A peer that advertises public addresses is dialed directly first (DCUtR.md).
        if configuration.dialAdvertisedAddressesFirst, let direct = await dialAdvertisedAddresses(of: relayed, host: host, configuration: configuration) {
            onRound(.success(direct), nil)
            return direct
        }
        var delay = configuration.retryDelay
        for round in 1...max(1, configuration.rounds) {
            let ours = HolePunchAddressFilter.usable(
                await localAddresses(), allowPrivate: configuration.allowPrivateAddresses, allowLoopback: configuration.allowLoopbackAddresses,
                limit: configuration.maximumAddresses)
            let result: Result<HolePunchOutcome, any Error>
            do {
                result = .success(try await initiate(over: relayed, host: host, localAddresses: ours, configuration: configuration))
            } catch {
                result = .failure(error)
            }
            guard case .failure(let error) = result else {
                onRound(result, nil)
                return try? result.get()
            }
            let verdict = HolePunchRetry.verdict(after: error)
            let last = round == configuration.rounds || verdict == .stop || Task.isCancelled
            configuration.logger.debug(
                "DCUtR round failed", metadata: ["peer": "\(peer)", "round": "\(round)", "error": "\(error)", "retry_in": "\(last ? "never" : "\(delay)")"])
            onRound(result, last ? nil : delay)
            if last { return nil }
            // Wait, but start at once when our addresses change; stop when waiting is pointless.
            let clock = ContinuousClock()
            let deadline = clock.now + delay
            // After a `waitForNewAddresses` verdict only new addresses start the next round.
            while verdict == .waitForNewAddresses || clock.now < deadline {
                let remaining = deadline - clock.now
                try? await Task.sleep(
                    for: verdict == .waitForNewAddresses || remaining > configuration.addressCheckInterval ? configuration.addressCheckInterval : remaining)
                if Task.isCancelled || !relayed.isActive || hasDirectConnection(to: peer, on: host) { return nil }
                let now = HolePunchAddressFilter.usable(
                    await localAddresses(), allowPrivate: configuration.allowPrivateAddresses, allowLoopback: configuration.allowLoopbackAddresses,
                limit: configuration.maximumAddresses)
                if !now.isEmpty, Set(now) != Set(ours) { break }
            }
            if !relayed.isActive || hasDirectConnection(to: peer, on: host) { return nil }
            delay *= configuration.retryMultiplier
        }
        return nil
    }

    static func hasDirectConnection(to peer: PeerID, on host: PunchHost) -> Bool {
        host.connections(to: peer).contains { $0.path == .direct && $0.isActive }
    }
}
