import Foundation
import PunchLab
import Testing

extension NATLabSelfTests {
    /// `punch demo`, the main job, for all 25 ordered pairs of the five NAT personalities: a relay
    /// in srv, a listener in h2 behind r2, a dialer in h1 behind r1. Every pair without a
    /// symmetric side must end on a direct connection (DCUtR over TCP simultaneous open). So must
    /// a symmetric dialer facing a full-cone or address-restricted listener: its SYN leaves from a
    /// new port, but that filter lets it through to the listener, which accepts it with the server
    /// role DCUtR gives it (DCUtR.md: the dialer "A" is the client). Every other pair with a
    /// symmetric side must end relayed (the demo lifts the relay's limits then), with the data
    /// verified both ways in every case.
    @Suite struct DemoMatrix {
        @Test func everyPairEndsDirectUnlessASymmetricNATForbidsIt() throws {
            try runMatrix(impairment: [])
        }

        /// The same with 10 % loss each way on both WAN links: TCP retransmits the relay and DCUtR
        /// messages, and the kernel the lost SYNs. On such a path TCP's retransmission backoff can
        /// stall a punched connection's Noise handshake past its 10 s timeout and fail the attempt
        /// (CI saw one pair's first round take over 20 s), so a pair that should punch gets 60 s
        /// (the dialer waits through failed rounds; DCUtR's second round starts 5 s after the first). Pairs that stay relayed keep the default 20 s: a
        /// longer wait would only delay their verdict.
        @Test func theMatrixHoldsWithTenPercentLoss() throws {
            try runMatrix(impairment: ["--loss", "10"], upgradeTimeoutWhenDirect: 60)
        }

        /// The same with 40 ms delay each way on both WAN links: DCUtR's RTT/2 timing matters.
        @Test func theMatrixHoldsWithFortyMillisecondsDelay() throws {
            try runMatrix(impairment: ["--delay", "40"])
        }

        private func runMatrix(impairment: [String], upgradeTimeoutWhenDirect: Int? = nil) throws {
            let punch = try ExternalProgram.punch()
            var failures: [String] = []
            for r1 in NATMode.allCases {
                for r2 in NATMode.allCases {
                    let expectDirect = (r1 != .symmetric && r2 != .symmetric) || (r1 == .symmetric && [.fullCone, .addressRestricted].contains(r2))
                    let wait = expectDirect ? upgradeTimeoutWhenDirect.map { ["--upgrade-timeout", "\($0)"] } ?? [] : []
                    let output = try ExternalProgram.run(
                        punch, ["demo", "--r1", r1.rawValue, "--r2", r2.rawValue, "--bytes", "64K", "--json"] + impairment + wait, timeout: 300)
                    let lines = output.stdout.split(separator: "\n").compactMap { try? parseJSON(String($0)) }
                    let verdict = lines.last { $0["event"] as? String == "verdict" }
                    let direct = lines.contains { $0["event"] as? String == "step" && $0["step"] as? String == "direct" }
                    let verified = lines.contains { $0["event"] as? String == "step" && $0["step"] as? String == "verified" }
                    let pair = "\(r1.rawValue) x \(r2.rawValue) \(impairment.joined(separator: " "))"
                    if verdict?["ok"] as? Bool != true || output.status != 0 {
                        failures.append("\(pair): verdict \(verdict?["text"] as? String ?? "none"), status \(output.status)\n\(output.stdout)\(output.stderr)")
                    } else if direct != expectDirect {
                        failures.append("\(pair): ended \(direct ? "direct" : "relayed"), expected \(expectDirect ? "direct" : "relayed")\n\(output.stdout)")
                    } else if !verified {
                        failures.append("\(pair): no verified transfer\n\(output.stdout)")
                    }
                }
            }
            #expect(failures.isEmpty, "\(failures.count) of 25 pairs:\n\(failures.joined(separator: "\n\n"))")
        }
    }
}
