import Foundation
import PunchLab
import Testing

extension NATLabSelfTests {
    /// Yamux receive window auto-tuning across a real delayed path: h1 behind r1 (20 ms each way,
    /// a 40 ms round trip) echoes 8 MiB with a listener on srv. With growth turned off
    /// (`--max-stream-window 262144`) the echo stream keeps the spec's 256 KiB window, which caps
    /// it at 256 KiB per round trip; with the default it grows. (Throughput is reported in the
    /// failure text only: speed is measured by scripts/bench-window, never asserted here.)
    @Suite struct StreamWindow {
        @Test func aBulkEchoAcrossADelayedPathGrowsTheStreamWindow() throws {
            let punch = try ExternalProgram.punch()
            let lab = try RelayLab(punch: punch, name: "punch-window")
            defer { lab.tearDown() }
            try lab.lab.setMode(.r1, .portRestricted, options: NATOptions(delayMilliseconds: 20))

            for (index, maximum) in [262_144, 16_777_216].enumerated() {
                let listener = try lab.spawn(.srv, [
                    punch, "listen", "--listen", "/ip4/203.0.113.11/tcp/\(4100 + index)", "--identity", lab.identity("listener"),
                    "--max-stream-window", "\(maximum)", "--json",
                ])
                let listening = try parseJSON(listener.waitForLine(containing: #""event":"listening""#, timeout: .seconds(20)))
                let address = try #require((listening["addrs"] as? [String])?.first)

                let dialer = try lab.spawn(.h1, [
                    punch, "dial", address, "--bytes", "8388608", "--pings", "1", "--max-stream-window", "\(maximum)", "--json",
                ])
                let status = try dialer.waitForExit(timeout: .seconds(60))
                let transcript = "punch dial --max-stream-window \(maximum) (status \(status)):\n"
                    + "\(dialer.outputLines.joined(separator: "\n"))\n\(dialer.errorOutput.suffix(2000))"
                #expect(status == 0, "\(transcript)")
                let result = try #require(dialer.outputLines.compactMap { try? parseJSON($0) }.last { $0["event"] as? String == "result" }, "\(transcript)")
                #expect(result["bytes"] as? Int == 8_388_608, "\(transcript)")
                #expect((result["rtt_ms"] as? Double ?? 0) >= 40, "the delay is not in place: \(transcript)")
                let window = try #require(result["receive_window"] as? Int, "\(transcript)")
                if maximum == 262_144 {
                    #expect(window == 262_144, "growth was turned off: \(transcript)")
                } else {
                    #expect(window > 262_144, "the window did not grow across a 40 ms round trip: \(transcript)")
                }
                listener.stop()
            }
        }
    }
}
