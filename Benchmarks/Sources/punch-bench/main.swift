// punch-bench: Punch's throughput benchmark. Run it with scripts/bench (a release build).
//
// Every figure in the table is measured in the same run: a warm-up, then `--repeats`
// repetitions, and the median is reported (with the smallest and largest repetition, and the
// process's CPU time per wall-clock second, 2.00 being both cores of this machine).

import Foundation
import NIOCore
import PunchTransport

let options: Options
do {
    options = try Options.parse(Array(CommandLine.arguments.dropFirst()))
} catch {
    FileHandle.standardError.write(Data("punch-bench: \(error)\n\(Options.usage)\n".utf8))
    exit(2)
}

func progress(_ text: String) {
    FileHandle.standardError.write(Data("punch-bench: \(text)\n".utf8))
}

/// Runs a warm-up and then the measured repetitions of `once`, which returns a rate.
func measure(
    _ kind: Measurement.Kind, _ title: String, unit: String,
    warmUp: () async throws -> Void, once: () async throws -> Double
) async throws -> Measurement? {
    guard options.only.contains(kind) else { return nil }
    progress("\(title): warm-up")
    try await warmUp()
    var measurement = Measurement(kind: kind, title: title, unit: unit)
    for repetition in 1...options.repeats {
        let cpuBefore = processCPUSeconds()
        let start = nanoseconds()
        let rate = try await once()
        let wall = Double(nanoseconds() - start) / 1e9
        measurement.samples.append(rate)
        measurement.cpu.append((processCPUSeconds() - cpuBefore) / wall)
        let window = LoopbackBench.lastReceiveWindow.withLockedValue { value in defer { value = 0 }; return value }
        progress("\(title): \(repetition)/\(options.repeats): \(String(format: "%.1f", rate)) \(unit)"
            + (window > 0 ? ", receiver's yamux window \(window / 1024) KiB" : ""))
    }
    return measurement
}

let crypto = options.seconds
let warmUpSeconds = max(0.2, options.seconds / 4)
let warmUpBytes = min(options.bytes, 64 << 20)
let mib = Double(options.bytes) / mebibyte
let loadBefore = loadAverage()
var rows: [Measurement] = []

do {
    // CPU-only measurements first, while nothing else of ours runs.
    if let row = try await measure(
        .seal, "ChaChaPoly.seal, 65519 B (swift-crypto)", unit: "MiB/s",
        warmUp: { _ = CryptoBench.seal(seconds: warmUpSeconds) }, once: { CryptoBench.seal(seconds: crypto) })
    { rows.append(row) }
    if let row = try await measure(
        .encrypt, "NoiseCipherState.encrypt, 65519 B", unit: "MiB/s",
        warmUp: { _ = try CryptoBench.encrypt(seconds: warmUpSeconds) }, once: { try CryptoBench.encrypt(seconds: crypto) })
    { rows.append(row) }
    if let row = try await measure(
        .decrypt, "NoiseCipherState.decrypt, 65519 B", unit: "MiB/s",
        warmUp: { _ = try CryptoBench.decrypt(seconds: warmUpSeconds) }, once: { try CryptoBench.decrypt(seconds: crypto) })
    { rows.append(row) }
    if let row = try await measure(
        .handshake, "Noise XX handshakes (both sides, 1 core)", unit: "hs/s",
        warmUp: { _ = try CryptoBench.handshakes(seconds: warmUpSeconds) }, once: { try CryptoBench.handshakes(seconds: crypto) })
    { rows.append(row) }

    let loopback = LoopbackBench()
    do {
        if options.only.contains(.tcp) {
            try await loopback.startTCP()
        }
        if let row = try await measure(
            .tcp, "raw TCP loopback, NIO both ends", unit: "MiB/s",
            warmUp: { _ = try await loopback.tcpTransfer(bytes: warmUpBytes) },
            once: { mib / (try await loopback.tcpTransfer(bytes: options.bytes)) })
        { rows.append(row) }
        if options.only.contains(.async) || options.only.contains(.handler) {
            try await loopback.startHosts(window: options.window)
        }
        if let row = try await measure(
            .async, "Noise+yamux stream, NIOAsyncChannel writer", unit: "MiB/s",
            warmUp: { _ = try await loopback.asyncWriterTransfer(bytes: warmUpBytes) },
            once: { mib / (try await loopback.asyncWriterTransfer(bytes: options.bytes)) })
        { rows.append(row) }
        if let row = try await measure(
            .handler, "Noise+yamux stream, NIO handler writer", unit: "MiB/s",
            warmUp: { _ = try await loopback.handlerWriterTransfer(bytes: warmUpBytes) },
            once: { mib / (try await loopback.handlerWriterTransfer(bytes: options.bytes)) })
        { rows.append(row) }
    } catch {
        await loopback.shutdown()
        throw error
    }
    await loopback.shutdown()

    if !options.only.isDisjoint(with: Measurement.Kind.relay) {
        let relay = RelayBench()
        do {
            progress("relay: starting the relay, A (reserved), B, and socat in front of A")
            try await relay.start(window: options.window)
            let paths: [(Measurement.Kind, String, RelayBench.Path)] = [
                (.relayDirect, "B->A stream, direct", .direct),
                (.relayCircuit, "B->A stream, through a relay circuit", .relayed),
                (.relaySocat, "B->A stream, direct through socat", .forwarded),
            ]
            for (kind, title, path) in paths {
                if let row = try await measure(
                    kind, title, unit: "MiB/s",
                    warmUp: { _ = try await relay.transfer(bytes: warmUpBytes, over: path) },
                    once: { mib / (try await relay.transfer(bytes: options.bytes, over: path)) })
                { rows.append(row) }
            }
        } catch {
            await relay.shutdown()
            throw error
        }
        await relay.shutdown()
    }
} catch {
    progress("failed: \(error)")
    exit(1)
}

var reservationOutcome: ReservationOutcome?
if options.reservationRun, let punch = options.punch {
    do {
        reservationOutcome = try await ReservationBench.run(
            punch: punch, reservations: options.reservations, warmUp: options.warmUpReservations,
            parallel: options.parallel, settle: options.settleSeconds)
    } catch {
        progress("failed: \(error)")
        exit(1)
    }
}

// MARK: - Report

@MainActor
func figure(_ kind: Measurement.Kind) -> Double? {
    rows.first { $0.kind == kind }?.median
}

func format(_ value: Double) -> String {
    value >= 100 ? String(format: "%.0f", value) : String(format: "%.1f", value)
}

func padded(_ text: String, _ width: Int, left: Bool = false) -> String {
    let padding = String(repeating: " ", count: max(0, width - text.count))
    return left ? text + padding : padding + text
}

let cores = ProcessInfo.processInfo.activeProcessorCount
print(
    "punch-bench: \(format(mib)) MiB per transfer, \(format(options.seconds)) s per CPU-only repetition, "
        + "median of \(options.repeats) after a warm-up; \(cores) cores, load average \(loadBefore) before, \(loadAverage()) after")
if !rows.isEmpty {
print("")
print(padded("measurement", 44, left: true) + padded("median", 9) + padded("min", 9) + padded("max", 9) + "  unit   " + "cpu")
for row in rows {
    print(
        padded(row.title, 44, left: true) + padded(format(row.median), 9) + padded(format(row.minimum), 9)
            + padded(format(row.maximum), 9) + "  " + padded(row.unit, 5, left: true) + "  " + String(format: "%.2f", row.medianCPU))
}
}

// The baseline is the project's own encrypt path when measured, else swift-crypto's seal.
let baseline = figure(.encrypt) ?? figure(.seal)
let baselineName = figure(.encrypt) != nil ? "NoiseCipherState.encrypt" : "ChaChaPoly.seal"
var ratios: [(String, String, Double)] = []
if let baseline {
    if let value = figure(.async) { ratios.append(("async", "secure stream (async writer) / \(baselineName)", value / baseline)) }
    if let value = figure(.handler) { ratios.append(("handler", "secure stream (handler writer) / \(baselineName)", value / baseline)) }
    if let value = figure(.tcp) { ratios.append(("tcp", "raw TCP / \(baselineName)", value / baseline)) }
}
if let seal = figure(.seal), figure(.encrypt) != nil {
    if let value = figure(.async) { ratios.append(("async_raw_seal", "secure stream (async writer) / ChaChaPoly.seal", value / seal)) }
    if let value = figure(.handler) { ratios.append(("handler_raw_seal", "secure stream (handler writer) / ChaChaPoly.seal", value / seal)) }
}
if let tcp = figure(.tcp) {
    if let value = figure(.async) { ratios.append(("async_tcp", "secure stream (async writer) / raw TCP", value / tcp)) }
    if let value = figure(.handler) { ratios.append(("handler_tcp", "secure stream (handler writer) / raw TCP", value / tcp)) }
}
if let circuit = figure(.relayCircuit) {
    if let direct = figure(.relayDirect) { ratios.append(("relay_circuit_direct", "relay circuit / direct", circuit / direct)) }
    if let socat = figure(.relaySocat) { ratios.append(("relay_circuit_socat", "relay circuit / direct through socat", circuit / socat)) }
}
if let socat = figure(.relaySocat), let direct = figure(.relayDirect) {
    ratios.append(("relay_socat_direct", "direct through socat / direct", socat / direct))
}
let target = 0.60
if !ratios.isEmpty {
    print("")
    print(padded("ratio", 58, left: true) + padded("value", 7))
    for (key, title, value) in ratios {
        var line = padded(title, 58, left: true) + padded(String(format: "%.2f", value), 7)
        if ["async", "handler", "async_raw_seal", "handler_raw_seal"].contains(key) {
            line += value >= target ? "  (target >= 0.60: met)" : "  (target >= 0.60: missed)"
        }
        print(line)
    }
}

if let outcome = reservationOutcome {
    let kib = { (bytes: Int) in String(format: "%.0f", Double(bytes) / 1024) }
    print("")
    print("relay memory: \(outcome.reservations) idle reservations, each its own PunchHost and connection (after \(outcome.warmUp) warm-up reservations)")
    print("  relay: \(outcome.relayCommand.joined(separator: " "))")
    print("  relay VmRSS before \(kib(outcome.relayRSSBefore)) KiB, after \(kib(outcome.relayRSSAfter)) KiB, peak (VmHWM) \(kib(outcome.relayHWM)) KiB")
    for (name, status) in [("before", outcome.relayStatusBefore), ("after", outcome.relayStatusAfter)] {
        print("  relay status \(name): " + ["RssAnon", "RssFile", "VmData", "Threads"].compactMap { key in status[key].map { "\(key) \($0)" } }.joined(separator: ", ") + " (KiB)")
    }
    if let anonBefore = outcome.relayStatusBefore["RssAnon"], let anonAfter = outcome.relayStatusAfter["RssAnon"] {
        print(String(format: "  relay anonymous memory (heap, stacks) per reservation: %.2f KiB", Double(anonAfter - anonBefore) / Double(outcome.reservations)))
    }
    print(String(format: "  relay per reservation: %.2f KiB (target <= 16 KiB: %@)", outcome.kibPerReservation, outcome.kibPerReservation <= 16 ? "met" : "missed"))
    print(String(format: "  client process (all %d hosts): VmRSS %@ -> %@ KiB, %.2f KiB per host (for information)",
        outcome.reservations + outcome.warmUp, kib(outcome.clientRSSBefore), kib(outcome.clientRSSAfter), outcome.clientKiBPerHost))
    print(String(format: "  %d reservations made in %.1f s; the relay reported %d granted; open-file limit %d",
        outcome.reservations, outcome.reservingSeconds, outcome.relayGranted, outcome.fileLimit))
}

if options.json {
    var object: [String: Any] = [
        "bytes": options.bytes, "seconds": options.seconds, "repeats": options.repeats, "cores": cores,
        "load_before": loadBefore, "load_after": loadAverage(), "target": target,
    ]
    if let window = options.window { object["yamux_window"] = window }
    let names: [Measurement.Kind: String] = [
        .seal: "chachapoly_seal_mib_s", .encrypt: "noise_encrypt_mib_s", .decrypt: "noise_decrypt_mib_s",
        .tcp: "raw_tcp_mib_s", .async: "noise_yamux_async_mib_s", .handler: "noise_yamux_handler_mib_s",
        .handshake: "noise_handshakes_per_s", .relayDirect: "relay_direct_mib_s", .relayCircuit: "relay_circuit_mib_s",
        .relaySocat: "relay_socat_mib_s",
    ]
    for row in rows {
        object[names[row.kind]!] = (row.median * 10).rounded() / 10
        object[names[row.kind]!.replacingOccurrences(of: "_mib_s", with: "").replacingOccurrences(of: "_per_s", with: "") + "_samples"] =
            row.samples.map { ($0 * 10).rounded() / 10 }
    }
    for (key, _, value) in ratios {
        object["ratio_\(key)"] = (value * 1000).rounded() / 1000
    }
    if let outcome = reservationOutcome {
        object["reservations"] = outcome.reservations
        object["reservations_warm_up"] = outcome.warmUp
        object["relay_rss_before_kib"] = outcome.relayRSSBefore / 1024
        object["relay_rss_after_kib"] = outcome.relayRSSAfter / 1024
        object["relay_kib_per_reservation"] = (outcome.kibPerReservation * 100).rounded() / 100
        object["client_rss_before_kib"] = outcome.clientRSSBefore / 1024
        object["client_rss_after_kib"] = outcome.clientRSSAfter / 1024
        object["reserving_seconds"] = (outcome.reservingSeconds * 10).rounded() / 10
    }
    let data = try! JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
    print(String(decoding: data, as: UTF8.self))
}
