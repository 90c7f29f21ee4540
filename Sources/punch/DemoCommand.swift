import ArgumentParser
import Foundation
import Punch
import PunchLab

/// `punch demo`: the whole path in the NAT lab, as a timeline.
struct DemoCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "demo",
        abstract: "Two peers behind two real NATs: relayed connection, hole punch, direct connection, data verified.",
        discussion: """
            Builds the NAT lab (Linux network namespaces, nftables NATs; needs root), runs \
            `punch relay` on the public server srv (203.0.113.10), `punch listen --relay` on h2 \
            behind r2 and `punch dial` of the listener's circuit address on h1 behind r1, then \
            prints a timeline: reservation, relayed connection, hole punch (DCUtR over TCP \
            simultaneous open), direct connection, the transfer verified over the direct path, \
            teardown; and a one-line verdict. With a symmetric NAT no punch can work (only a \
            dialer behind one still reaches a listener behind a full-cone or address-restricted \
            NAT directly): the transfer then stays relayed (the relay's limits are lifted for it).

            Examples:
              sudo punch demo
              sudo punch demo --r1 full-cone --r2 symmetric --bytes 1M
              sudo punch demo --loss 10 --delay 40
            """
    )

    @Option(name: .long, help: ArgumentHelp("The NAT behaviour of r1 (h1's router): \(NATMode.allCases.map(\.rawValue).joined(separator: ", ")).", valueName: "mode"))
    var r1: String = NATMode.portRestricted.rawValue

    @Option(name: .long, help: ArgumentHelp("The NAT behaviour of r2 (h2's router).", valueName: "mode"))
    var r2: String = NATMode.portRestricted.rawValue

    @Option(name: .long, help: ArgumentHelp("Bytes to send and verify once connected (K and M suffixes).", valueName: "n"))
    var bytes: String = "16M"

    @Option(name: .long, help: ArgumentHelp("Drop this percentage of packets each way on both WAN links (0-100).", valueName: "p"))
    var loss: Int = 0

    @Option(name: .long, help: ArgumentHelp("Delay each packet this many milliseconds each way on both WAN links.", valueName: "ms"))
    var delay: Int = 0

    @Option(name: .long, help: ArgumentHelp(
        "How long the dialer waits for the hole punch (its --upgrade-timeout); on lossy links a punch can take longer than the default.",
        valueName: "s"))
    var upgradeTimeout: Double = 20

    @Flag(name: .long, help: "Print the timeline as JSON lines.")
    var json = false

    func validate() throws {
        guard upgradeTimeout > 0 else { throw ValidationError("--upgrade-timeout must be more than 0: the demo is about the punch") }
        guard upgradeTimeout <= Self.maximumUpgradeTimeout else {
            throw ValidationError("--upgrade-timeout is at most \(Int(Self.maximumUpgradeTimeout)) s")
        }
    }

    /// The longest `--upgrade-timeout`: the demo waits for the dialer's lines this much longer.
    static let maximumUpgradeTimeout = 300.0

    func run() async throws {
        let started = Date()
        let timeline = Timeline(start: started, json: json)
        let count: Int
        let modes: (NATMode, NATMode)
        do {
            guard let mode1 = NATMode(rawValue: r1), let mode2 = NATMode(rawValue: r2) else {
                throw ValidationError("--r1 and --r2 take one of: \(NATMode.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            modes = (mode1, mode2)
            guard let parsed = Self.parseBytes(bytes) else { throw ValidationError("--bytes takes a number with an optional K or M suffix") }
            count = parsed
        }
        #if !os(Linux)
        throw CommandFailure.report(DemoFailure("punch demo needs Linux: the NAT lab is built from network namespaces and nftables"), json: json)
        #else
        guard getuid() == 0 else {
            throw CommandFailure.report(
                DemoFailure("punch demo needs root: it builds network namespaces and nftables NATs (run it with sudo)"), json: json)
        }
        let punch = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().path
        let lab: NATLab
        do {
            lab = try NATLab.build(r1: modes.0, r2: modes.1, options: NATOptions(lossPercent: loss, delayMilliseconds: delay))
        } catch {
            throw CommandFailure.report(error, json: json)
        }
        let impairment = loss > 0 || delay > 0 ? "; WAN links: \(loss) % loss, \(delay) ms delay each way" : ""
        timeline.note("lab", "NAT lab up: h1 behind r1 (\(modes.0.rawValue)), h2 behind r2 (\(modes.1.rawValue)), relay on srv 203.0.113.10\(impairment)")
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("punch-demo-\(UUID().uuidString)")
        var processes: [LabProcess] = []
        defer {
            for process in processes { process.stop() }
            lab.tearDown()
            try? FileManager.default.removeItem(at: directory)
        }
        do {
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
            let symmetric = modes.0 == .symmetric || modes.1 == .symmetric
            // The relay's default limits (2 min, 128 KiB) are for coordinating a punch; when no punch
            // can work the transfer goes through the relay, so they are lifted.
            let limits = symmetric ? ["--limit-duration", "0", "--limit-bytes", "0"] : []
            let relay = try lab.spawn(.srv, [punch, "relay", "--listen", "/ip4/203.0.113.10/tcp/4001",
                "--identity", directory.appendingPathComponent("relay.key").path, "--json"] + limits)
            processes.append(relay)
            let relayUp = try JSONEvent(relay.waitForLine(matching: { $0.contains(#""event":"listening""#) }, timeout: .seconds(20)))
            let relayAddress = (relayUp["addrs"] as? [String])?.first ?? ""
            timeline.note("relay", "relay up at \(relayAddress)")

            let listener = try lab.spawn(.h2, [punch, "listen", "--listen", "/ip4/0.0.0.0/tcp/4001", "--relay", relayAddress,
                "--identity", directory.appendingPathComponent("listener.key").path, "--json"])
            processes.append(listener)
            let reserved = try JSONEvent(listener.waitForLine(matching: { $0.contains(#""event":"reserved""#) }, timeout: .seconds(20)))
            let circuit = (reserved["circuit_addrs"] as? [String])?.first ?? ""
            timeline.note("reserved", "h2 reserved a slot on the relay: reachable at \(circuit)")

            let dialer = try lab.spawn(.h1, [punch, "dial", circuit, "--listen", "/ip4/0.0.0.0/tcp/4001", "--bytes", "\(count)",
                "--pings", "1", "--upgrade-timeout", "\(upgradeTimeout)", "--json"])
            processes.append(dialer)
            var result: [String: Any] = [:]
            // The dialer gives up on its own well within this (dial, upgrade wait, transfer).
            let deadline = ContinuousClock.now + .seconds(120 + upgradeTimeout)
            // The listener starts the punch (DCUtR's "B"); its round outcomes join the timeline.
            var listenerSeen = listener.outputLines.count
            while result.isEmpty {
                let line: String
                do {
                    line = try dialer.waitForLine(matching: { _ in true }, timeout: .milliseconds(200))
                } catch let error as LabError where error.code == .timedOut && ContinuousClock.now < deadline {
                    let lines = listener.outputLines
                    for text in lines.dropFirst(listenerSeen) {
                        if let note = Self.listenerPunchNote(text) { timeline.note("listener", note) }
                    }
                    listenerSeen = lines.count
                    continue
                }
                guard let event = try? JSONEvent(line) else { continue }
                switch event["event"] as? String {
                case "connected":
                    timeline.note("relayed", "h1 connected to h2 through the relay (\(event["path"] as? String ?? "?"), Noise end to end)")
                case "upgraded":
                    timeline.note(
                        "direct",
                        "hole punch succeeded on attempt \(event["attempt"] as? Int ?? 0): direct connection to \(event["remote_addr"] as? String ?? "?") "
                            + String(format: "%.0f ms after the relayed one", event["relayed_to_direct_ms"] as? Double ?? 0))
                case "upgrade_round_failed":
                    timeline.note("punch_round", "a hole punch round failed: \(event["message"] as? String ?? "?"); h1 waits for h2's next round")
                case "upgrade_failed":
                    timeline.note("punch", "hole punch failed: \(event["message"] as? String ?? "?"); staying relayed")
                case "echo":
                    timeline.note(
                        "verified",
                        "\(event["bytes"] as? Int ?? 0) bytes sent and verified over the \(event["path"] as? String ?? "?") path "
                            + String(format: "(%.1f MiB/s each way)", event["throughput_mib_s"] as? Double ?? 0))
                case "result", "error":
                    result = event.object
                    // A failed dial prints its result, then the error that ended it.
                    if result["ok"] as? Bool != true, result["message"] == nil,
                        let error = try? JSONEvent(dialer.waitForLine(matching: { $0.contains(#""event":"error""#) }, timeout: .seconds(2)))
                    {
                        result["message"] = error["message"]
                    }
                default:
                    break
                }
            }
            let status = try dialer.waitForExit(timeout: .seconds(30))
            let logs = [("h1 (dialer)", dialer.errorOutput), ("h2 (listener)", listener.errorOutput), ("relay", relay.errorOutput)]
            let ok = status == 0 && (result["ok"] as? Bool) == true
            let path = result["path"] as? String ?? "?"
            let expectedDirect = !symmetric
            for process in processes { process.stop() }
            processes = []
            lab.tearDown()
            timeline.note("teardown", "processes stopped, lab removed")
            let verdict: String
            if ok, path == "direct" {
                verdict = "PASS: direct connection through \(modes.0.rawValue) and \(modes.1.rawValue) NATs, \(count) bytes verified"
            } else if ok, !expectedDirect {
                verdict = "PASS: no punch is possible through this symmetric NAT; \(count) bytes verified over the relay"
            } else {
                verdict = "FAIL: " + (ok ? "the transfer stayed on the \(path) path" : "the dial failed (\(result["message"] as? String ?? "see above"))")
            }
            if !verdict.hasPrefix("PASS") {
                // What the programs logged (PUNCH_LOG_LEVEL=debug logs every DCUtR step).
                for (name, text) in logs where !text.isEmpty {
                    timeline.note("log", "\(name) stderr (last \(Self.logLinesShown) lines):\n" + text.split(separator: "\n").suffix(Self.logLinesShown).joined(separator: "\n"))
                }
            }
            timeline.verdict(verdict, ok: verdict.hasPrefix("PASS"))
            if !verdict.hasPrefix("PASS") { throw ExitCode.failure }
        } catch let exit as ExitCode {
            throw exit
        } catch {
            throw CommandFailure.report(error, json: json)
        }
        #endif
    }

    /// How many lines of each program's stderr a failed demo shows.
    static let logLinesShown = 40

    /// What a listener's `upgraded` / `upgrade_failed` line says, for the timeline.
    static func listenerPunchNote(_ line: String) -> String? {
        guard let event = try? JSONEvent(line) else { return nil }
        switch event["event"] as? String {
        case "upgraded":
            return "h2's hole punch succeeded on attempt \(event["attempt"] as? Int ?? 0) (\(event["remote_addr"] as? String ?? "?"))"
        case "upgrade_failed":
            let retry = (event["retry_in_s"] as? Double).map { String(format: "; next round in %.0f s", $0) } ?? "; no further round"
            return "h2's hole punch round failed: \(event["message"] as? String ?? "?")\(retry)"
        default:
            return nil
        }
    }

    static func parseBytes(_ text: String) -> Int? {
        let upper = text.uppercased()
        let (digits, factor): (Substring, Int) =
            upper.hasSuffix("M") ? (upper.dropLast(), 1 << 20) : upper.hasSuffix("K") ? (upper.dropLast(), 1 << 10) : (Substring(upper), 1)
        guard let value = Int(digits), value >= 0 else { return nil }
        return value * factor
    }
}

struct DemoFailure: Error, CodedError {
    let message: String
    init(_ message: String) { self.message = message }
    var codeName: String { "demo.unavailable" }
}

/// One JSON line of a child process.
struct JSONEvent {
    let object: [String: Any]
    init(_ line: String) throws {
        guard let object = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] else {
            throw DemoFailure("expected a JSON object, got \(line)")
        }
        self.object = object
    }
    subscript(key: String) -> Any? { object[key] }
}

/// The demo's timeline: seconds since the start, one line per step.
struct Timeline {
    let start: Date
    let json: Bool

    func note(_ step: String, _ text: String) {
        let seconds = Date().timeIntervalSince(start)
        if json {
            JSONLine.print(["event": "step", "step": step, "t_s": (seconds * 1000).rounded() / 1000, "text": text])
        } else {
            print(String(format: "%7.3f s  ", seconds) + text)
        }
        fflush(nil)
    }

    func verdict(_ text: String, ok: Bool) {
        if json { JSONLine.print(["event": "verdict", "ok": ok, "text": text]) } else { print("\n" + text) }
        fflush(nil)
    }
}
