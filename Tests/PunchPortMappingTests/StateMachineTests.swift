import Testing

@testable import PunchPortMapping
@testable import PunchWire

@Suite struct DefaultGatewayTests {
    @Test func readsTheLowestMetricIPv4DefaultRoute() throws {
        let table = """
            Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT
            eth1\t00000000\t0102000A\t0003\t0\t0\t200\t00000000\t0\t0\t0
            eth0\t00000000\t0101000A\t0003\t0\t0\t100\t00000000\t0\t0\t0
            eth0\t0001000A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0
            eth2\t00000000\t0103000A\t0001\t0\t0\t1\t00000000\t0\t0\t0
            """
        #expect(DefaultGateway.parseIPv4(table) == (try IPAddress("10.0.1.1")))
        #expect(DefaultGateway.parseIPv4("Iface\tDestination\n") == nil)
        #expect(DefaultGateway.parseIPv4("garbage\nmore garbage with fields a b c d e f g h") == nil)
    }

    @Test func readsTheIPv6DefaultRoute() throws {
        let table = """
            fe800000000000000000000000000000 40 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000001 00000000 00000001 eth0
            00000000000000000000000000000000 00 00000000000000000000000000000000 00 fe800000000000000000000000000001 00000400 00000001 00000000 00000003 eth0
            00000000000000000000000000000000 00 00000000000000000000000000000000 00 00000000000000000000000000000000 ffffffff 00000001 00000000 00200200 lo
            """
        #expect(DefaultGateway.parseIPv6(table) == (try IPAddress("fe80::1")))
    }

    @Test func missingFileIsNoGateway() {
        #expect(throws: PortMappingError(.noGateway, "")) { try DefaultGateway.ipv4(routeFile: "/nonexistent/route") }
    }
}

@Suite struct RetransmissionPolicyTests {
    @Test func rfc6886DoublesFrom250MillisecondsForNineTries() {
        let policy = RetransmissionPolicy.rfc6886
        #expect(policy.maximumAttempts == 9)
        #expect((0..<9).map { policy.timeout(attempt: $0) } == [250, 500, 1000, 2000, 4000, 8000, 16000, 32000, 64000].map { Duration.milliseconds($0) })
        #expect(RetransmissionPolicy(maximumAttempts: 0).maximumAttempts == 1)
        #expect(RetransmissionPolicy(maximumTimeout: .seconds(1)).timeout(attempt: 8) == .seconds(1))
    }
}

@Suite struct GatewayEpochTests {
    @Test func natpmpDetectsAnEpochThatFellBehindTheLocalClock() {
        var epoch = GatewayEpoch(rule: .natpmp)
        do { let restarted = epoch.observe(serverEpoch: 1000, at: .seconds(0)); #expect(!restarted) }
        do { let restarted = epoch.observe(serverEpoch: 1060, at: .seconds(60)); #expect(!restarted) }
        // 7/8 of 80 s is 70 s: 1060 + 70 - 2 = 1128 is the lowest acceptable.
        do { let restarted = epoch.observe(serverEpoch: 1128, at: .seconds(140)); #expect(!restarted) }
        do { let restarted = epoch.observe(serverEpoch: 1130, at: .seconds(300)); #expect(restarted) }
        // After the restart the new epoch is the reference.
        do { let restarted = epoch.observe(serverEpoch: 1140, at: .seconds(310)); #expect(!restarted) }
        do { let restarted = epoch.observe(serverEpoch: 3, at: .seconds(312)); #expect(restarted) }
    }

    @Test func pcpDetectsBackwardsAndDriftingEpochs() {
        var epoch = GatewayEpoch(rule: .pcp)
        do { let restarted = epoch.observe(serverEpoch: 500, at: .seconds(0)); #expect(!restarted) }
        do { let restarted = epoch.observe(serverEpoch: 502, at: .seconds(2)); #expect(!restarted) }
        do { let restarted = epoch.observe(serverEpoch: 1, at: .seconds(4)); #expect(restarted) }
        do { let restarted = epoch.observe(serverEpoch: 3, at: .seconds(6)); #expect(!restarted) }
        // The server clock ran far ahead of ours: also a lost state (RFC 6887 §8.5).
        do { let restarted = epoch.observe(serverEpoch: 100, at: .seconds(8)); #expect(restarted) }
        epoch.reset()
        do { let restarted = epoch.observe(serverEpoch: 0, at: .seconds(100)); #expect(!restarted) }
    }
}

@Suite struct MappingLifecycleTests {
    static func mapping(port: UInt16 = 4001, lifetime: UInt32 = 120, address: String = "203.0.113.1") -> GatewayMapping {
        GatewayMapping(mappingProtocol: .natpmp, transport: .udp, internalPort: 4001, external: IPEndpoint(address: try! IPAddress(address), port: port), lifetime: lifetime)
    }

    @Test func firstGrantReportsMappedAndRenewsAtHalfTheLifetime() {
        var lifecycle = MappingLifecycle(configuration: .init())
        #expect(lifecycle.step == .create)
        let action = lifecycle.mapped(Self.mapping(), at: .seconds(10))
        #expect(action.reports == [.mapped(Self.mapping())])
        #expect(action.nextWakeUp == .seconds(70))
        #expect(lifecycle.step == .renew(Self.mapping()))
    }

    @Test func renewalReportsRenewedOrAChangedAddress() {
        var lifecycle = MappingLifecycle(configuration: .init())
        _ = lifecycle.mapped(Self.mapping(), at: .zero)
        do { let action = lifecycle.mapped(Self.mapping(), at: .seconds(60)); #expect(action.reports == [.renewed(Self.mapping())]) }
        let moved = Self.mapping(port: 5000, address: "203.0.113.2")
        do { let action = lifecycle.mapped(moved, at: .seconds(120)); #expect(action.reports == [.externalAddressChanged(old: Self.mapping(), new: moved)]) }
    }

    @Test func shortLifetimesStillWaitTheMinimum() {
        var lifecycle = MappingLifecycle(configuration: .init())
        do { let action = lifecycle.mapped(Self.mapping(lifetime: 1), at: .zero); #expect(action.nextWakeUp == .seconds(1)) }
        do { let action = lifecycle.mapped(Self.mapping(lifetime: 4), at: .zero); #expect(action.nextWakeUp == .seconds(2)) }
    }

    @Test func failedRenewalsRetryUntilExpiryThenReportLost() {
        var lifecycle = MappingLifecycle(configuration: .init())
        _ = lifecycle.mapped(Self.mapping(lifetime: 10), at: .zero)
        let retry = lifecycle.failed("timeout", at: .seconds(5))
        #expect(retry.reports.isEmpty)
        #expect(retry.nextWakeUp == .seconds(6))
        let lost = lifecycle.failed("timeout", at: .seconds(9.5))
        guard case .lost = lost.reports.first else { Issue.record("expected lost, got \(lost.reports)"); return }
        #expect(lifecycle.step == .create)
        // Creating it again backs off: 1, 2, 4 ... up to the maximum.
        do { let action = lifecycle.failed("timeout", at: .seconds(20)); #expect(action.nextWakeUp == .seconds(21)) }
        do { let action = lifecycle.failed("timeout", at: .seconds(30)); #expect(action.nextWakeUp == .seconds(32)) }
        do { let action = lifecycle.failed("timeout", at: .seconds(40)); #expect(action.nextWakeUp == .seconds(44)) }
        let back = lifecycle.mapped(Self.mapping(), at: .seconds(50))
        #expect(back.reports == [.mapped(Self.mapping())])
    }

    @Test func gatewayRestartReportsLostAndRemapsAtOnce() {
        var lifecycle = MappingLifecycle(configuration: .init())
        _ = lifecycle.mapped(Self.mapping(), at: .zero)
        let action = lifecycle.gatewayLostState("epoch", at: .seconds(3))
        #expect(action.reports == [.lost(reason: "epoch")])
        #expect(action.nextWakeUp == .seconds(3))
        do { let action = lifecycle.mapped(Self.mapping(), at: .seconds(3)); #expect(action.reports == [.mapped(Self.mapping())]) }
    }

    @Test func permanentLeasesAreCheckedPeriodically() {
        var lifecycle = MappingLifecycle(configuration: .init())
        do { let action = lifecycle.mapped(Self.mapping(lifetime: 0), at: .zero); #expect(action.nextWakeUp == .seconds(60)) }
        do { let action = lifecycle.failed("x", at: .seconds(60)); #expect(action.reports.isEmpty) }
    }

    @Test func stopEndsTimersAndReturnsTheMapping() {
        var lifecycle = MappingLifecycle(configuration: .init())
        _ = lifecycle.mapped(Self.mapping(), at: .zero)
        do { let stopped = lifecycle.stop(); #expect(stopped == Self.mapping()) }
        #expect(lifecycle.step == .none)
        do { let action = lifecycle.mapped(Self.mapping(), at: .seconds(1)); #expect(action.nextWakeUp == nil) }
        do { let action = lifecycle.failed("x", at: .seconds(1)); #expect(action.nextWakeUp == nil) }
    }
}
