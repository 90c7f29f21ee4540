import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A process named by its PID and its start time, so that a recycled PID is not mistaken for
/// the process that had it before.
struct ProcessIdentity: Codable, Hashable, Sendable {
    var pid: Int32
    /// Field 22 of `/proc/PID/stat`: clock ticks after boot when the process started.
    var startTime: UInt64

    /// This process.
    static var current: ProcessIdentity? { ProcessIdentity(pid: getpid()) }

    init(pid: Int32, startTime: UInt64) {
        self.pid = pid
        self.startTime = startTime
    }

    /// The running process with this PID, or `nil` if there is none.
    init?(pid: Int32) {
        guard pid > 0, let startTime = Self.startTime(of: pid) else { return nil }
        self.pid = pid
        self.startTime = startTime
    }

    /// Whether this very process still runs (a zombie counts as ended).
    var isAlive: Bool { Self.startTime(of: pid) == startTime }

    /// Sends a signal, unless the PID now belongs to another process.
    func signal(_ signal: Int32) {
        if isAlive { kill(pid, signal) }
    }

    /// Sends SIGTERM, then SIGKILL if the process still runs after `grace` seconds; returns once it
    /// has ended (or after a further two seconds).
    func terminate(grace: Double) {
        signal(SIGTERM)
        if waitForExit(seconds: grace) { return }
        signal(SIGKILL)
        waitForExit(seconds: 2)
    }

    /// Polls until the process has ended; false if it still runs after `seconds`.
    @discardableResult
    func waitForExit(seconds: Double) -> Bool {
        let deadline = Date(timeIntervalSinceNow: seconds)
        while isAlive {
            if Date() > deadline { return false }
            usleep(10_000)
        }
        return true
    }

    /// The start time of a live (not zombie) process, from `/proc/PID/stat`.
    static func startTime(of pid: Int32) -> UInt64? {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let close = stat.lastIndex(of: ")")
        else { return nil }
        // After "pid (comm)": field 3 is the state, field 22 the start time.
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        guard fields.count > 19, fields[0] != "Z", fields[0] != "X" else { return nil }
        return UInt64(fields[19])
    }
}
