import Punch
import Testing

/// The connect policy event by event: every action for each input.
@Suite struct ConnectPolicyTests {
    let a = try! Multiaddr("/ip4/198.51.100.1/tcp/4001")
    let b = try! Multiaddr("/ip4/198.51.100.2/tcp/4001")
    let circuit = try! Multiaddr("/ip4/203.0.113.10/tcp/4001/p2p/12D3KooWHenWgCeY43vL4SX3hAfHZaZsmxdbsKsUUTzoChwY66Mk/p2p-circuit")
    let failure = NodeError(.unreachable, "refused")

    @Test func withoutAddressOrRelayItGivesUpAtOnce() {
        var policy = ConnectPolicy()
        let actions = policy.connect(direct: [], circuits: [])
        #expect(actions.count == 1)
        guard case .giveUp(let error) = actions.first else { Issue.record("expected giveUp, got \(actions)"); return }
        #expect(error.code == .noAddresses)
        #expect(policy.phase == .idle)
    }

    @Test func directAddressesAreDialedFirstWithAStaggerAndTheRelayFallbackIsScheduled() {
        var policy = ConnectPolicy()
        let actions = policy.connect(direct: [a, b], circuits: [circuit])
        #expect(actions == [
            .dialDirect(a),
            .schedule(.nextDirectDial(generation: 1), after: ConnectPolicy.Configuration.defaultDirectDialStagger),
            .schedule(.relayFallback(generation: 1), after: ConnectPolicy.Configuration.defaultRelayFallbackDelay),
        ])
        #expect(policy.timerFired(.nextDirectDial(generation: 1)) == [.dialDirect(b)])
        #expect(policy.phase == .connecting)
    }

    @Test func aSecondConnectJoinsTheRunningAttempt() {
        var policy = ConnectPolicy()
        _ = policy.connect(direct: [a], circuits: [])
        #expect(policy.connect(direct: [a, b], circuits: [circuit]) == [])
    }

    @Test func circuitsStartWhenEveryDirectDialFailed() {
        var policy = ConnectPolicy()
        _ = policy.connect(direct: [a], circuits: [circuit])
        #expect(policy.dialFailed(a, error: failure) == [.dialViaRelay(circuit)])
    }

    @Test func circuitsStartAfterTheFallbackDelayWhileDirectDialsHang() {
        var policy = ConnectPolicy()
        _ = policy.connect(direct: [a], circuits: [circuit])
        #expect(policy.timerFired(.relayFallback(generation: 1)) == [.dialViaRelay(circuit)])
        // The direct dial failing later starts nothing new.
        #expect(policy.dialFailed(a, error: failure) == [])
    }

    @Test func whenEverythingFailedItGivesUpWithTheLastError() {
        var policy = ConnectPolicy()
        _ = policy.connect(direct: [a], circuits: [circuit])
        _ = policy.dialFailed(a, error: failure)
        let actions = policy.dialFailed(circuit, error: NodeError(.unreachable, "NO_RESERVATION"))
        guard case .giveUp(let error)? = actions.last else { Issue.record("expected giveUp, got \(actions)"); return }
        #expect(error.code == .unreachable)
        #expect(error.message.contains("NO_RESERVATION"))
        #expect(policy.phase == .idle)
    }

    @Test func aDirectConnectionCancelsTheOtherDialsAndAnswersTheWaiters() {
        var policy = ConnectPolicy()
        _ = policy.connect(direct: [a, b], circuits: [circuit])
        #expect(policy.connectionOpened(path: .direct, direction: .outbound) == [.cancelDials, .connected(.direct)])
        #expect(policy.dialSucceeded(a) == [])
        #expect(policy.phase == .direct)
        // Stale timers of the finished attempt do nothing.
        #expect(policy.timerFired(.nextDirectDial(generation: 1)) == [])
        #expect(policy.timerFired(.relayFallback(generation: 1)) == [])
        #expect(policy.connect(direct: [a], circuits: []) == [.connected(.direct)])
    }

    @Test func aRelayedConnectionWeAcceptedStartsOurUpgradeLoop() {
        var policy = ConnectPolicy()
        #expect(policy.connectionOpened(path: .relayed, direction: .inbound) == [.startUpgrade(round: 1)])
        #expect(policy.phase == .relayed(upgrading: true))
        // A second relayed connection does not start a second loop.
        #expect(policy.connectionOpened(path: .relayed, direction: .inbound) == [])
    }

    @Test func aRelayedConnectionWeDialedWaitsForThePeersRounds() {
        var policy = ConnectPolicy()
        _ = policy.connect(direct: [], circuits: [circuit])
        #expect(policy.connectionOpened(path: .relayed, direction: .outbound) == [.connected(.relayed), .waitForPeerUpgrade])
        #expect(policy.dialSucceeded(circuit) == [])
        #expect(policy.phase == .relayed(upgrading: false))
        #expect(!policy.isConnecting)
    }

    @Test func aDirectDialStillRunningAfterTheRelayedConnectionDoesNotGiveUpWhenItFails() {
        var policy = ConnectPolicy()
        _ = policy.connect(direct: [a], circuits: [circuit])
        _ = policy.timerFired(.relayFallback(generation: 1))
        _ = policy.connectionOpened(path: .relayed, direction: .outbound)
        _ = policy.dialSucceeded(circuit)
        #expect(policy.dialFailed(a, error: failure) == [])
        #expect(policy.phase == .relayed(upgrading: false))
    }

    @Test func failedRoundsAreRetriedWithGrowingWaitsThenTheLoopStops() {
        var policy = ConnectPolicy()
        _ = policy.connectionOpened(path: .relayed, direction: .inbound)
        let failed = HolePunchError(.failed, "no direct connection")
        #expect(policy.upgradeRoundFinished(round: 1, error: failed) == [.schedule(.upgradeRetry(generation: 0), after: .seconds(5))])
        #expect(policy.timerFired(.upgradeRetry(generation: 0)) == [.startUpgrade(round: 2)])
        #expect(policy.upgradeRoundFinished(round: 2, error: failed) == [.schedule(.upgradeRetry(generation: 0), after: .seconds(15))])
        _ = policy.timerFired(.upgradeRetry(generation: 0))
        #expect(policy.upgradeRoundFinished(round: 3, error: failed) == [.schedule(.upgradeRetry(generation: 0), after: .seconds(45))])
        _ = policy.timerFired(.upgradeRetry(generation: 0))
        #expect(policy.upgradeRoundFinished(round: 4, error: failed) == [.upgradeStopped(.retry, round: 4)])
        #expect(policy.upgradeHasStopped)
    }

    @Test func noAddressesWaitsForNewOnesAndTheyStartTheNextRound() {
        var policy = ConnectPolicy()
        _ = policy.connectionOpened(path: .relayed, direction: .inbound)
        let actions = policy.upgradeRoundFinished(round: 1, error: HolePunchError(.noAddresses, "none"))
        #expect(actions == [.upgradeStopped(.waitForNewAddresses, round: 1)])
        #expect(policy.upgradeHasStopped)
        #expect(policy.localAddressesChanged() == [.startUpgrade(round: 2)])
        #expect(!policy.upgradeHasStopped)
    }

    @Test func aScheduledRoundStartsAtOnceWhenOurAddressesChange() {
        var policy = ConnectPolicy()
        _ = policy.connectionOpened(path: .relayed, direction: .inbound)
        _ = policy.upgradeRoundFinished(round: 1, error: HolePunchError(.timeout, "slow"))
        #expect(policy.localAddressesChanged() == [.startUpgrade(round: 2)])
        // The timer of the replaced schedule is stale.
        #expect(policy.timerFired(.upgradeRetry(generation: 0)) == [])
    }

    @Test func aPeerWithoutDCUtRStopsTheLoop() {
        var policy = ConnectPolicy()
        _ = policy.connectionOpened(path: .relayed, direction: .inbound)
        let actions = policy.upgradeRoundFinished(round: 1, error: TransportError(.multistreamNoProtocol, "na"))
        #expect(actions == [.upgradeStopped(.stop, round: 1)])
        #expect(policy.localAddressesChanged() == [])
    }

    @Test func servedRoundsStopTheWaitOnlyWhenNoRoundCanWorkNow() {
        var policy = ConnectPolicy()
        _ = policy.connectionOpened(path: .relayed, direction: .outbound)
        #expect(policy.servedRoundFinished(error: HolePunchError(.failed, "dials failed")) == [])
        #expect(policy.servedRoundFinished(error: HolePunchError(.timeout, "slow")) == [])
        #expect(!policy.upgradeHasStopped)
        #expect(policy.servedRoundFinished(error: HolePunchError(.streamClosed, "ended")) == [.upgradeStopped(.waitForNewAddresses, round: 0)])
        #expect(policy.upgradeHasStopped)
    }

    @Test func aDirectConnectionWhileRelayedIsTheUpgrade() {
        var policy = ConnectPolicy()
        _ = policy.connectionOpened(path: .relayed, direction: .inbound)
        #expect(policy.connectionOpened(path: .direct, direction: .inbound) == [.upgraded])
        #expect(policy.phase == .direct)
        // Our round's late success or failure changes nothing.
        #expect(policy.upgradeRoundFinished(round: 1, error: HolePunchError(.failed, "late")) == [])
    }

    @Test func whenTheDirectConnectionGoesTheRelayedOneRemains() {
        var policy = ConnectPolicy()
        _ = policy.connectionOpened(path: .relayed, direction: .outbound)
        _ = policy.connectionOpened(path: .direct, direction: .outbound)
        #expect(policy.connectionClosed(path: .direct) == [])
        #expect(policy.phase == .relayed(upgrading: false))
        #expect(policy.connect(direct: [a], circuits: []) == [.connected(.relayed)])
        _ = policy.connectionClosed(path: .relayed)
        #expect(policy.phase == .idle)
    }

    @Test func theRetryVerdictIsOneRuleForBothRoles() {
        #expect(HolePunchRetry.verdict(after: HolePunchError(.failed, "")) == .retry)
        #expect(HolePunchRetry.verdict(after: HolePunchError(.timeout, "")) == .retry)
        #expect(HolePunchRetry.verdict(after: HolePunchError(.busy, "")) == .retry)
        #expect(HolePunchRetry.verdict(after: HolePunchError(.noAddresses, "")) == .waitForNewAddresses)
        #expect(HolePunchRetry.verdict(after: HolePunchError(.streamClosed, "")) == .waitForNewAddresses)
        #expect(HolePunchRetry.verdict(after: HolePunchError(.malformedMessage, "")) == .stop)
        #expect(HolePunchRetry.verdict(after: HolePunchError(.notRelayed, "")) == .stop)
        #expect(HolePunchRetry.verdict(after: TransportError(.multistreamNoProtocol, "")) == .stop)
        #expect(HolePunchRetry.verdict(after: TransportError(.connectionClosed, "")) == .retry)
    }

    @Test func eachAttemptDialsAtMostTheConfiguredNumberOfAddresses() {
        var configuration = ConnectPolicy.Configuration()
        configuration.maximumDialsPerAttempt = 1
        var policy = ConnectPolicy(configuration: configuration)
        let actions = policy.connect(direct: [a, b], circuits: [circuit])
        #expect(actions == [.dialDirect(a)])
        let last = policy.dialFailed(a, error: failure)
        guard case .giveUp? = last.last else { Issue.record("expected giveUp, got \(last)"); return }
    }
}
