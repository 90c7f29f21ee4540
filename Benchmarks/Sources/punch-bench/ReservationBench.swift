#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import PunchCrypto
import PunchRelay
import PunchTransport
import PunchWire

/// What the memory measurement found.
struct ReservationOutcome {
    var reservations: Int
    var warmUp: Int
    var relayRSSBefore: Int
    var relayRSSAfter: Int
    var relayHWM: Int
    var clientRSSBefore: Int
    var clientRSSAfter: Int
    var reservingSeconds: Double
    var relayGranted: Int
    var fileLimit: Int
    var relayCommand: [String]
    var relayStatusBefore: [String: Int]
    var relayStatusAfter: [String: Int]

    var kibPerReservation: Double { Double(relayRSSAfter - relayRSSBefore) / 1024 / Double(reservations) }
    var clientKiBPerHost: Double { Double(clientRSSAfter - clientRSSBefore) / 1024 / Double(reservations) }
}

/// A `punch relay` process holding many idle reservations: each reservation is its own
/// PunchHost (own identity) of this process, on one shared event loop group, with one
/// connection to the relay and one reservation on it. The relay's resident memory is read from
/// /proc/PID/status before and after.
enum ReservationBench {
    static func run(punch: String, reservations: Int, warmUp: Int, parallel: Int, settle: Double) async throws -> ReservationOutcome {
        let needed = reservations + warmUp + 256
        let fileLimit = try raiseFileLimit(to: needed)
        guard fileLimit >= needed else {
            throw BenchmarkError(
                "the open-file limit is \(fileLimit) and cannot be raised to \(needed) (the hard limit); "
                    + "run with fewer --reservations or raise the hard limit (ulimit -Hn, as root)")
        }
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("punch-bench-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let total = reservations + warmUp
        // The relay inherits this process's raised open-file limit.
        let arguments = [
            "relay", "--listen", "/ip4/127.0.0.1/tcp/0", "--identity", directory.appendingPathComponent("relay.key").path,
            "--stun-port", "0", "--json",
            "--max-reservations", "\(total)", "--max-reservations-per-ip", "\(total)",
            "--max-connections", "\(total + 64)",
        ]
        let relay = try RelayProcess(punch: punch, arguments: arguments)
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        var hosts: [PunchHost] = []
        do {
            let relayAddress = try relay.waitForAddress(timeout: 30)
            progress("reservations: relay pid \(relay.pid) at \(relayAddress)")

            progress("reservations: warm-up, \(warmUp) reservations")
            hosts += try await reserve(count: warmUp, on: relayAddress, group: group, parallel: parallel, label: "warm-up")
            try await Task.sleep(for: .seconds(settle))
            let relayBefore = try residentBytes(pid: relay.pid)
            let statusBefore = try statusFields(pid: relay.pid)
            let clientBefore = try residentBytes(pid: getpid())
            progress("reservations: relay VmRSS \(relayBefore / 1024) KiB after the warm-up; reserving \(reservations)")

            let start = nanoseconds()
            hosts += try await reserve(count: reservations, on: relayAddress, group: group, parallel: parallel, label: "reserving")
            let reservingSeconds = Double(nanoseconds() - start) / 1e9
            progress("reservations: \(reservations) reserved in \(String(format: "%.1f", reservingSeconds)) s; idle for \(settle) s")
            try await Task.sleep(for: .seconds(settle))
            let relayAfter = try residentBytes(pid: relay.pid)
            let clientAfter = try residentBytes(pid: getpid())
            let status = try statusFields(pid: relay.pid)
            let granted = relay.count(of: "reserved")
            let alive = hosts.filter { !$0.connections.isEmpty }.count
            guard alive == hosts.count else {
                throw BenchmarkError("only \(alive) of \(hosts.count) hosts still hold their relay connection")
            }
            let outcome = ReservationOutcome(
                reservations: reservations, warmUp: warmUp, relayRSSBefore: relayBefore, relayRSSAfter: relayAfter,
                relayHWM: (status["VmHWM"] ?? 0) * 1024,
                clientRSSBefore: clientBefore, clientRSSAfter: clientAfter, reservingSeconds: reservingSeconds,
                relayGranted: granted, fileLimit: fileLimit, relayCommand: [punch] + arguments, relayStatusBefore: statusBefore, relayStatusAfter: status)
            progress("reservations: closing \(hosts.count) hosts")
            relay.stop()
            await closeAll(hosts, parallel: parallel)
            try? await group.shutdownGracefully()
            return outcome
        } catch {
            relay.stop()
            await closeAll(hosts, parallel: parallel)
            try? await group.shutdownGracefully()
            throw error
        }
    }

    /// `count` new hosts, each dialing the relay and reserving, at most `parallel` at once.
    private static func reserve(
        count: Int, on relay: Multiaddr, group: any EventLoopGroup, parallel: Int, label: String
    ) async throws -> [PunchHost] {
        guard count > 0 else { return [] }
        var hosts: [PunchHost] = []
        hosts.reserveCapacity(count)
        var failures = 0
        var firstFailure: (any Error)?
        try await withThrowingTaskGroup(of: Result<PunchHost, any Error>.self) { tasks in
            var started = 0
            func startOne() {
                started += 1
                tasks.addTask {
                    var configuration = HostConfiguration(identity: .generate())
                    // Nobody reads these hosts' events: keep the buffer small.
                    configuration.eventBufferLimit = 1
                    let host = PunchHost(configuration: configuration, group: group)
                    do {
                        let connection = try await host.dial(relay)
                        _ = try await RelayClient.reserve(on: connection, host: host, relayAddress: relay)
                        return .success(host)
                    } catch {
                        await host.close()
                        return .failure(error)
                    }
                }
            }
            while started < min(parallel, count) { startOne() }
            while let result = try await tasks.next() {
                switch result {
                case .success(let host):
                    hosts.append(host)
                case .failure(let error):
                    failures += 1
                    if firstFailure == nil { firstFailure = error }
                }
                let done = hosts.count + failures
                if done % 1000 == 0 || done == count {
                    progress("reservations: \(label) \(done)/\(count)\(failures > 0 ? ", \(failures) failed" : "")")
                }
                if started < count { startOne() }
            }
        }
        if failures > 0 {
            await closeAll(hosts, parallel: 64)
            throw BenchmarkError("\(failures) of \(count) reservations failed; the first: \(firstFailure.map { "\($0)" } ?? "?")")
        }
        return hosts
    }

    private static func closeAll(_ hosts: [PunchHost], parallel: Int) async {
        var index = 0
        while index < hosts.count {
            let batch = hosts[index..<min(index + parallel * 4, hosts.count)]
            await withTaskGroup(of: Void.self) { tasks in
                for host in batch { tasks.addTask { await host.close() } }
            }
            index += batch.count
        }
    }

    /// Raises the soft open-file limit towards `wanted` (as far as the hard limit allows, or
    /// beyond it when permitted); returns the soft limit now in force.
    static func raiseFileLimit(to wanted: Int) throws -> Int {
        var limit = rlimit()
        #if os(Linux)
        let resource = __rlimit_resource_t(RLIMIT_NOFILE.rawValue)
        #else
        let resource = RLIMIT_NOFILE
        #endif
        guard getrlimit(resource, &limit) == 0 else { throw BenchmarkError("getrlimit failed: errno \(errno)") }
        if limit.rlim_cur >= rlim_t(wanted) { return Int(limit.rlim_cur) }
        var raised = limit
        raised.rlim_cur = max(limit.rlim_cur, rlim_t(wanted))
        raised.rlim_max = max(limit.rlim_max, raised.rlim_cur)
        if setrlimit(resource, &raised) != 0 {
            // Not permitted beyond the hard limit: go as far as it.
            raised = limit
            raised.rlim_cur = limit.rlim_max
            _ = setrlimit(resource, &raised)
        }
        guard getrlimit(resource, &limit) == 0 else { throw BenchmarkError("getrlimit failed: errno \(errno)") }
        return Int(limit.rlim_cur)
    }

    /// VmRSS of a process, in bytes.
    static func residentBytes(pid: pid_t) throws -> Int {
        guard let kib = try statusFields(pid: pid)["VmRSS"] else { throw BenchmarkError("no VmRSS for pid \(pid)") }
        return kib * 1024
    }

    /// The `kB` fields of /proc/PID/status (VmRSS, VmHWM, RssAnon, RssFile, VmData, ...), in KiB.
    static func statusFields(pid: pid_t) throws -> [String: Int] {
        let text = try String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)
        var fields: [String: Int] = [:]
        for line in text.split(separator: "\n") {
            let parts = line.split(whereSeparator: { $0 == ":" || $0 == " " || $0 == "\t" })
            if parts.count == 3, parts[2] == "kB", let value = Int(parts[1]) { fields[String(parts[0])] = value }
            if parts.count == 2, parts[0] == "Threads", let value = Int(parts[1]) { fields["Threads"] = value }
        }
        return fields
    }
}

/// The `punch relay --json` child: its first line gives its address; later lines are counted by
/// event name.
final class RelayProcess {
    private let process: Process
    private let state = NIOLockedValueBox(State())

    private struct State {
        var address: Multiaddr?
        var counts: [String: Int] = [:]
        var failure: String?
        var buffer = Data()
    }

    var pid: pid_t { process.processIdentifier }

    init(punch: String, arguments: [String]) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: punch)
        process.arguments = arguments
        let output = Pipe()
        process.standardOutput = output
        self.process = process
        output.fileHandleForReading.readabilityHandler = { [state] handle in
            let data = handle.availableData
            state.withLockedValue { state in
                if data.isEmpty {
                    state.failure = state.failure ?? "the relay's output ended"
                    return
                }
                state.buffer.append(data)
                while let newline = state.buffer.firstIndex(of: UInt8(ascii: "\n")) {
                    let line = state.buffer[state.buffer.startIndex..<newline]
                    state.buffer.removeSubrange(state.buffer.startIndex...newline)
                    guard let object = try? JSONSerialization.jsonObject(with: line) as? [String: Any],
                        let event = object["event"] as? String
                    else { continue }
                    state.counts[event, default: 0] += 1
                    if event == "listening", let text = (object["addrs"] as? [String])?.first, let peer = object["peer_id"] as? String,
                        var address = try? Multiaddr(text)
                    {
                        if address.peerID == nil, let id = try? PeerID(peer) { address = address.appendingPeerID(id.multihash) }
                        state.address = address
                    }
                    if event == "error" { state.failure = String(decoding: line, as: UTF8.self) }
                }
            }
        }
        try process.run()
    }

    /// Waits for the `listening` line.
    func waitForAddress(timeout: Double) throws -> Multiaddr {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            let (address, failure) = state.withLockedValue { ($0.address, $0.failure) }
            if let address { return address }
            if let failure { throw BenchmarkError("punch relay failed: \(failure)") }
            if !process.isRunning { throw BenchmarkError("punch relay exited with status \(process.terminationStatus)") }
            usleep(50_000)
        }
        throw BenchmarkError("punch relay did not print its address within \(timeout) s")
    }

    func count(of event: String) -> Int {
        state.withLockedValue { $0.counts[event, default: 0] }
    }

    func stop() {
        guard process.isRunning else { return }
        // SIGKILL: the child starts with this process's blocked signals, SIGTERM among them.
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
    }
}
