import Foundation
import PunchLab
import Testing

extension NATLabSelfTests {
    /// Loss, delay, jitter and mapping timeouts have the configured effect.
    @Suite struct Impairment {
        /// 20 % loss each way on r1's WAN link: of 400 echoes from h1 to srv about 64 % come back
        /// (0.8 x 0.8). The band is wide (over six standard deviations each side), so only a
        /// broken loss rule fails it. Without loss, all of them come back.
        @Test func lossDropsTheConfiguredShareEachWay() throws {
            let lab = try NATLab.build()
            defer { lab.tearDown() }
            try lab.startProbeServer()
            let echoes = ["rtt", "--count", "400", "--interval", "0.003", "--wait", "1"]

            let clean = try lab.probe(.h1, echoes)
            #expect(clean["received"] as? Int == 400, "no loss configured: \(clean)")

            try lab.setMode(.r1, .portRestricted, options: NATOptions(lossPercent: 20))
            let lossy = try lab.probe(.h1, echoes)
            let delivered = Double(lossy["received"] as? Int ?? -1) / 400
            #expect((0.49...0.79).contains(delivered), "20 % loss each way should deliver about 64 % of round trips, delivered \(delivered): \(lossy)")
        }

        /// 50 ms delay with 10 ms jitter in r1: the median round trip from h1 to srv is about
        /// 2 x 50 ms (one delay each way) and varies; back to no delay, it is fast again and the
        /// delay program is gone.
        @Test func delayAndJitterHaveTheConfiguredEffect() throws {
            let lab = try NATLab.build()
            defer { lab.tearDown() }
            try lab.startProbeServer()
            let echoes = ["rtt", "--count", "40", "--interval", "0.02", "--wait", "1"]

            try lab.setMode(.r1, .portRestricted, options: NATOptions(delayMilliseconds: 50, jitterMilliseconds: 10))
            #expect(lab.services.contains { $0.name == "delay-r1" && $0.isRunning })
            let delayed = try lab.probe(.h1, echoes)
            let rtt = try #require(delayed["rtt_ms"] as? [String: Double], "\(delayed)")
            let median = try #require(rtt["median"])
            #expect(delayed["received"] as? Int == 40, "delay must not lose packets: \(delayed)")
            #expect((60.0...140.0).contains(median), "50 ms each way should give a median round trip near 100 ms (± 40 %), got \(median) ms: \(delayed)")
            let spread = (rtt["max"] ?? 0) - (rtt["min"] ?? 0)
            #expect(spread >= 10, "10 ms jitter each way should spread the round trips by more than 10 ms, spread \(spread) ms: \(delayed)")

            try lab.setMode(.r1, .portRestricted)
            #expect(!lab.services.contains { $0.name == "delay-r1" && $0.isRunning }, "the delay program stops when the delay is removed")
            let fast = try lab.probe(.h1, echoes)
            let fastMedian = try #require((fast["rtt_ms"] as? [String: Double])?["median"], "\(fast)")
            #expect(fastMedian < 30, "without delay the round trip is short again, got \(fastMedian) ms")
        }

        /// A 2 s UDP mapping timeout on a full-cone r1: an answer from another address 0.5 s
        /// after the last packet gets in, one 3.5 s after does not (the mapping expired). r2, a
        /// full cone with the kernel's timeouts, still lets the late answer in.
        @Test func udpTimeoutExpiresIdleMappings() throws {
            let lab = try NATLab.build(r1: .fullCone, r2: .fullCone)
            defer { lab.tearDown() }
            try lab.setMode(.r1, .fullCone, options: NATOptions(udpTimeout: 2))
            try lab.startProbeServer()
            let late = try lab.spawnProbe(.h1, ["filter", "--from", "other-address", "--after", "3.5"])
            let early = try lab.spawnProbe(.h1b, ["filter", "--from", "other-address", "--after", "0.5"])
            let control = try lab.spawnProbe(.h2, ["filter", "--from", "other-address", "--after", "3.5"])
            let (lateResult, earlyResult, controlResult) = (try late.result(), try early.result(), try control.result())
            #expect(earlyResult["received"] as? Bool == true, "0.5 s idle is within the 2 s timeout: \(earlyResult)")
            #expect(lateResult["received"] as? Bool == false, "3.5 s idle outlives the 2 s timeout: \(lateResult)")
            #expect(controlResult["received"] as? Bool == true, "the kernel's default timeout keeps the mapping for 3.5 s: \(controlResult)")
        }
    }
}
