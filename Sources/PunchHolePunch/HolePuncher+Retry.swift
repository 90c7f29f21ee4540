import PunchCrypto
import PunchTransport
import PunchWire

extension HolePuncher {
    /// Keeps trying to upgrade a relayed connection while the peer is reachable only through the
    /// relay (issue 7, "Upgrade"): runs ``initiate(over:host:localAddresses:configuration:)``,
    /// and after a failure waits ``HolePunchConfiguration/retryDelay`` (growing by
    /// ``HolePunchConfiguration/retryMultiplier``) before the next round, up to
    /// ``HolePunchConfiguration/rounds`` rounds. A change of our public addresses ends the wait at
    /// once, since the new ones may punch where the old ones did not.
    ///
    /// It stops without another round when the relayed connection closes, when a direct
    /// connection to the peer exists (the peer's own punch, a dial), or when the failure cannot
    /// change by retrying (the peer does not speak DCUtR, or sent a malformed message).
    ///
    /// - Parameters:
    ///   - localAddresses: our public addresses, asked before each round and while waiting.
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
        var delay = configuration.retryDelay
        for round in 1...max(1, configuration.rounds) {
            let ours = HolePunchAddressFilter.usable(
                await localAddresses(), allowPrivate: configuration.allowPrivateAddresses, limit: configuration.maximumAddresses)
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
            let last = round == configuration.rounds || !isWorthRetrying(error) || Task.isCancelled
            onRound(result, last ? nil : delay)
            if last { return nil }
            // Wait, but start at once when our addresses change; stop when waiting is pointless.
            let clock = ContinuousClock()
            let deadline = clock.now + delay
            while clock.now < deadline {
                try? await Task.sleep(for: min(configuration.addressCheckInterval, deadline - clock.now))
                if Task.isCancelled || !relayed.isActive || hasDirectConnection(to: peer, on: host) { return nil }
                let now = HolePunchAddressFilter.usable(
                    await localAddresses(), allowPrivate: configuration.allowPrivateAddresses, limit: configuration.maximumAddresses)
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

    /// Failures a later round cannot fix: the peer lacks DCUtR, or speaks it wrongly.
    static func isWorthRetrying(_ error: any Error) -> Bool {
        if let error = error as? HolePunchError {
            return ![HolePunchError.Code.malformedMessage, .notRelayed].contains(error.code)
        }
        if let error = error as? TransportError {
            return error.code != .multistreamNoProtocol
        }
        return true
    }
}
