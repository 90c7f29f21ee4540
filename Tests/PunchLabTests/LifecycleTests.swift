import Foundation
@testable import PunchLab
import Testing

extension NATLabSelfTests {
    /// Labs go away completely: after a test, after a failing test, after a crash.
    @Suite struct Lifecycle {
        /// After tearDown no namespace of the lab exists, none of its processes (services and
        /// spawned programs) runs, no veth is left in the root namespace, and its state is gone.
        @Test func tearDownLeavesNoNamespaceLinkOrProcess() throws {
            let vethsBefore = try rootLinks(type: "veth")
            let lab = try NATLab.build()
            var tornDown = false
            defer { if !tornDown { lab.tearDown() } }
            try lab.startUPnP(router: .r1)  // and coturn, twice
            try lab.startProbeServer()
            try lab.setMode(.r2, .symmetric, options: NATOptions(delayMilliseconds: 5))
            let sleeper = try lab.spawn(.h1, ["sleep", "600"])
            let listener = try lab.spawnProbe(.h2, ["listen", "--port", "40000", "--timeout", "600"])
            _ = try listener.waitForLine(containing: "listening", timeout: .seconds(10))
            var pids: [Int32] = []
            for host in LabHost.allCases { pids += try lab.processes(in: host) }
            #expect(pids.count >= 7, "coturn x2, miniupnpd, probe server, delay program, sleep, listener: \(pids)")
            #expect(try rootLinks(type: "veth") == vethsBefore, "the lab's veths never appear in the root namespace")

            lab.tearDown()
            tornDown = true
            lab.tearDown()  // idempotent

            #expect(!NATLab.exists(prefix: lab.prefix))
            let left = ((try? FileManager.default.contentsOfDirectory(atPath: "/run/netns")) ?? []).filter { $0.hasPrefix(lab.prefix) }
            #expect(left.isEmpty, "namespaces left: \(left)")
            #expect(pids.filter(processIsAlive).isEmpty, "processes left: \(pids.filter(processIsAlive))")
            #expect((try? sleeper.waitForExit(timeout: .seconds(5))) != nil)
            #expect((try? listener.waitForExit(timeout: .seconds(5))) != nil)
            #expect(try rootLinks(type: "veth") == vethsBefore, "veths in the root namespace changed")
            #expect(!FileManager.default.fileExists(atPath: "/run/punch-lab/\(lab.prefix)"))
        }

        /// A test that fails half-way still removes its lab through its `defer`.
        @Test func aFailingTestLeavesNothingBehind() throws {
            struct SimulatedFailure: Error {}
            var prefix = ""
            var pids: [Int32] = []
            #expect(throws: SimulatedFailure.self) {
                let lab = try NATLab.build()
                defer { lab.tearDown() }
                prefix = lab.prefix
                try lab.startProbeServer()
                pids = try lab.processes(in: .srv)
                throw SimulatedFailure()
            }
            #expect(!prefix.isEmpty && !pids.isEmpty)
            #expect(!NATLab.exists(prefix: prefix))
            #expect(pids.filter(processIsAlive).isEmpty)
        }

        /// A lab whose owner died (a crashed test run) and namespaces of a build that died at
        /// its first step are removed by the next build; live and persistent labs stay.
        @Test func nextBuildRemovesLabsLeftBehindByACrash() throws {
            let crashed = try NATLab.build()
            let orphanedProcess = try crashed.spawn(.h1, ["sleep", "600"])
            try crashed.startProbeServer()
            // Simulate the crash: the recorded owner is a process that has ended.
            var state = try #require(try LabState.load(prefix: crashed.prefix))
            state.owner = ProcessIdentity(pid: try deadPID(), startTime: 0)
            try state.save()
            // A namespace of a generated prefix with no state at all.
            let strayPrefix = "pl-" + String(UUID().uuidString.lowercased().filter(\.isHexDigit).prefix(8)) + "-"
            _ = try ExternalProgram.run(try ExternalProgram.system("ip", package: "iproute2"), ["netns", "add", strayPrefix + "h1"])
            #expect(NATLab.exists(prefix: strayPrefix))
            let persistent = try NATLab.build(persistent: true)
            defer {
                persistent.tearDown()
                crashed.tearDown()
                NATLab.tearDown(prefix: strayPrefix)
            }

            let next = try NATLab.build()
            defer { next.tearDown() }
            #expect(!NATLab.exists(prefix: crashed.prefix), "the crashed run's lab is gone")
            #expect((try? orphanedProcess.waitForExit(timeout: .seconds(5))) != nil, "its processes are gone")
            #expect(!NATLab.exists(prefix: strayPrefix), "the stateless namespace is gone")
            #expect(NATLab.exists(prefix: persistent.prefix), "a persistent lab stays")
            #expect(NATLab.exists(prefix: next.prefix))
            #expect(throws: LabError(.labExists, "")) { try NATLab.build(prefix: next.prefix) }
        }

        /// The PID of a process that has ended.
        private func deadPID() throws -> Int32 {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: "/bin/true")
            try process.run()
            process.waitUntilExit()
            return process.processIdentifier
        }
    }
}
