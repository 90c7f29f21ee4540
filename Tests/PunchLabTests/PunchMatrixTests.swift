import Foundation
import PunchLab
import Testing

extension NATLabSelfTests {
    /// Hole punching between h1 (behind r1) and h2 (behind r2) for every pair of personalities,
    /// against the tables in natlab-notes.md. Port-remap is not in those tables: it maps
    /// endpoint-independently and filters like masquerade, and the probes aim at the
    /// rendezvous-observed port, so it is expected to behave as port-restricted.
    @Suite struct PunchMatrix {
        /// UDP, both sides sending every 100 ms to the other's reflexive address (and to any
        /// address the other's packets came from): direct unless a symmetric NAT faces a
        /// port-restricted (or port-remapping) or symmetric one.
        @Test func udpSimultaneousSendMatrixMatchesTheNotes() throws {
            try measure(probe: "udp-punch") { first, second in
                let needsPrediction: Set<NATMode> = [.portRestricted, .portRemap, .symmetric]
                return !(first == .symmetric && needsPrediction.contains(second)) && !(second == .symmetric && needsPrediction.contains(first))
            }
        }

        /// TCP simultaneous open from the rendezvous connection's local port: every pair without
        /// a symmetric side connects; every pair with one fails (even against full cone: the
        /// full-cone host's kernel resets a SYN from an unexpected port).
        ///
        /// Simultaneous open needs the two SYNs to cross in flight. Through a full cone a SYN
        /// that arrives before the other side has connected is reset by its kernel, and the lab's
        /// bare path (well under a millisecond) is shorter than the start skew of two processes
        /// on a busy machine. So both routers add 10 ms each way, a stand-in for Internet
        /// latency, and the probes start at one instant the rendezvous gives them (as DCUtR
        /// synchronises its dials).
        @Test func tcpSimultaneousOpenMatrixMatchesTheNotes() throws {
            try measure(probe: "tcp-punch", options: NATOptions(delayMilliseconds: 10)) { first, second in
                first != .symmetric && second != .symmetric
            }
        }

        /// Runs the probe for all 25 pairs on one lab, switching modes between pairs (which also
        /// flushes the mappings), and checks each against `expected`.
        private func measure(probe: String, options: NATOptions = NATOptions(), expected: (NATMode, NATMode) -> Bool) throws {
            let lab = try NATLab.build()
            defer { lab.tearDown() }
            try lab.startProbeServer()
            var table: [String] = []
            for first in NATMode.allCases {
                var row: [String] = []
                for second in NATMode.allCases {
                    try lab.setMode(.r1, first, options: options)
                    try lab.setMode(.r2, second, options: options)
                    let session = uniqueSession()
                    let arguments = ["--session", session, "--timeout", "1.5"]
                    let h1 = try lab.spawnProbe(.h1, [probe, "--role", "a"] + arguments)
                    let h2 = try lab.spawnProbe(.h2, [probe, "--role", "b"] + arguments)
                    let (a, b) = (try h1.result(), try h2.result())
                    #expect(a["peer"] as? String != nil && b["peer"] as? String != nil, "\(probe) \(first) x \(second): the rendezvous failed: \(a) \(b)")
                    let direct = a["direct"] as? Bool == true && b["direct"] as? Bool == true
                    #expect(direct == expected(first, second), "\(probe) \(first) x \(second): direct is \(direct), expected \(expected(first, second)): h1 \(a), h2 \(b)")
                    row.append(direct ? "direct" : "no")
                }
                table.append("\(first.rawValue): \(row.joined(separator: " "))")
            }
            print("\(probe) matrix (h1 rows x h2 columns \(NATMode.allCases.map(\.rawValue).joined(separator: " "))):\n" + table.joined(separator: "\n"))
        }
    }
}
