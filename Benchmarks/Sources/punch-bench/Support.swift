#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation
import NIOCore

/// Command-line options.
struct Options {
    /// Bytes per transfer (raw TCP and each secure stream run).
    var bytes = 512 << 20
    /// Seconds per repetition of the CPU-only measurements (ChaChaPoly, handshakes).
    var seconds = 2.0
    /// Measured repetitions (after one warm-up); the median is reported.
    var repeats = 3
    /// Print one JSON line after the table.
    var json = false
    /// The yamux stream receive window of both hosts; `nil` keeps the library default.
    var window: Int?
    /// The connections' write buffer high watermark (low: a quarter of it); `nil` keeps the default.
    var waterMark: Int?
    /// Which measurements to run (the crypto, TCP and direct stream ones by default).
    var only: Set<Measurement.Kind> = Measurement.Kind.defaults
    /// `--only reservations`: the relay memory measurement.
    var reservationRun = false
    /// Idle reservations the memory measurement holds at once.
    var reservations = 10_000
    /// Reservations made (and kept) before the first memory reading, to warm the relay up.
    var warmUpReservations = 100
    /// Hosts dialing and reserving at once in the memory measurement.
    var parallel = 64
    /// Seconds the relay is left idle before each memory reading.
    var settleSeconds = 5.0
    /// The release `punch` binary the memory measurement runs as the relay.
    var punch: String?

    static let usage = """
        usage: punch-bench [--bytes N[K|M|G]] [--seconds S] [--repeats R] [--only LIST] [--json]
          --bytes N     bytes per transfer (default 512M)
          --seconds S   seconds per repetition of the CPU-only measurements (default 2)
          --repeats R   measured repetitions after one warm-up; the median is reported (default 3)
          --only LIST   comma-separated subset of: \(Measurement.Kind.allCases.map(\.rawValue).joined(separator: ",")),
                        relay (= \(Measurement.Kind.relay.map(\.rawValue).sorted().joined(separator: ","))), reservations;
                        default: \(Measurement.Kind.defaults.map(\.rawValue).sorted().joined(separator: ","))
                        relay_*: one stream B->A through a relay circuit, direct, and through
                        socat (needs socat on PATH); reservations: a `punch relay` process's
                        memory per idle reservation (needs --punch)
          --window N    yamux stream receive window of all hosts (default: the library's, 256K)
          --water-mark N  connections' write buffer high watermark, low = N/4 (default: the library's, 1M)
          --json        also print the figures as one JSON object on the last line
        reservations:
          --punch PATH        the release punch binary to run as the relay
          --reservations N    idle reservations to hold (default 10000)
          --warm-up N         reservations made before the first memory reading (default 100)
          --parallel N        hosts dialing and reserving at once (default 64)
          --settle S          idle seconds before each memory reading (default 5)
        """

    static func parse(_ arguments: [String]) throws -> Options {
        var options = Options()
        var index = 0
        func value() throws -> String {
            index += 1
            guard index < arguments.count else { throw UsageError("\(arguments[index - 1]) needs a value") }
            return arguments[index]
        }
        while index < arguments.count {
            switch arguments[index] {
            case "--bytes":
                options.bytes = try parseSize(try value())
            case "--seconds":
                guard let seconds = Double(try value()), seconds > 0 else { throw UsageError("--seconds takes a positive number") }
                options.seconds = seconds
            case "--repeats":
                guard let repeats = Int(try value()), repeats > 0 else { throw UsageError("--repeats takes a positive integer") }
                options.repeats = repeats
            case "--only":
                var kinds = Set<Measurement.Kind>()
                options.reservationRun = false
                for name in try value().split(separator: ",") {
                    if name == "relay" {
                        kinds.formUnion(Measurement.Kind.relay)
                    } else if name == "reservations" {
                        options.reservationRun = true
                    } else if let kind = Measurement.Kind(rawValue: String(name)) {
                        kinds.insert(kind)
                    } else {
                        throw UsageError("unknown measurement \(name)")
                    }
                }
                options.only = kinds
            case "--punch":
                options.punch = try value()
            case "--reservations":
                guard let count = Int(try value()), count > 0 else { throw UsageError("--reservations takes a positive integer") }
                options.reservations = count
            case "--warm-up":
                guard let count = Int(try value()), count >= 0 else { throw UsageError("--warm-up takes 0 or more") }
                options.warmUpReservations = count
            case "--parallel":
                guard let count = Int(try value()), count > 0 else { throw UsageError("--parallel takes a positive integer") }
                options.parallel = count
            case "--settle":
                guard let seconds = Double(try value()), seconds >= 0 else { throw UsageError("--settle takes 0 or more seconds") }
                options.settleSeconds = seconds
            case "--json":
                options.json = true
            case "--window":
                options.window = try parseSize(try value())
            case "--water-mark":
                options.waterMark = try parseSize(try value())
            case "-h", "--help":
                print(usage)
                exit(0)
            default:
                throw UsageError("unknown argument \(arguments[index])")
            }
            index += 1
        }
        if options.reservationRun, options.punch == nil {
            throw UsageError("--only reservations needs --punch PATH (the release punch binary; scripts/bench-relay builds it)")
        }
        return options
    }

    static func parseSize(_ text: String) throws -> Int {
        var digits = text.uppercased()
        if digits.hasSuffix("IB") { digits.removeLast(2) } else if digits.hasSuffix("B") { digits.removeLast() }
        var multiplier = 1
        switch digits.last {
        case "K": multiplier = 1 << 10
        case "M": multiplier = 1 << 20
        case "G": multiplier = 1 << 30
        default: break
        }
        if multiplier != 1 { digits.removeLast() }
        guard let count = Int(digits), count > 0 else { throw UsageError("cannot read the size \(text)") }
        return count * multiplier
    }
}

struct UsageError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

struct BenchmarkError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// One row of the table: a measurement's repetitions.
struct Measurement {
    enum Kind: String, CaseIterable, Hashable {
        case seal, encrypt, decrypt, tcp, async, handler, handshake
        /// One stream between two PunchHosts on loopback: direct, through a relay circuit, and
        /// direct but through a socat TCP forwarder.
        case relayDirect = "relay_direct", relayCircuit = "relay_circuit", relaySocat = "relay_socat"

        /// What runs without `--only`: everything but the relay measurements.
        static let defaults: Set<Kind> = [.seal, .encrypt, .decrypt, .tcp, .async, .handler, .handshake]
        /// `--only relay`.
        static let relay: Set<Kind> = [.relayDirect, .relayCircuit, .relaySocat]
    }

    let kind: Kind
    let title: String
    let unit: String
    /// Rate of each measured repetition (not the warm-up).
    var samples: [Double] = []
    /// Process CPU time over wall time of each repetition (1.0 = one core busy).
    var cpu: [Double] = []

    var median: Double { Self.median(samples) }
    var minimum: Double { samples.min() ?? 0 }
    var maximum: Double { samples.max() ?? 0 }
    var medianCPU: Double { Self.median(cpu) }

    static func median(_ values: [Double]) -> Double {
        guard !values.isEmpty else { return 0 }
        let sorted = values.sorted()
        let middle = sorted.count / 2
        return sorted.count % 2 == 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2
    }
}

let mebibyte = 1_048_576.0

/// Monotonic nanoseconds.
@inline(__always)
func nanoseconds() -> UInt64 {
    NIODeadline.now().uptimeNanoseconds
}

/// CPU time (user + system) this process has used, in seconds.
func processCPUSeconds() -> Double {
    var usage = rusage()
    #if os(Linux)
    getrusage(__rusage_who_t(RUSAGE_SELF.rawValue), &usage)
    #else
    getrusage(RUSAGE_SELF, &usage)
    #endif
    func seconds(_ time: timeval) -> Double { Double(time.tv_sec) + Double(time.tv_usec) / 1e6 }
    return seconds(usage.ru_utime) + seconds(usage.ru_stime)
}

/// The 1-minute load average, to judge how busy the shared machine was.
func loadAverage() -> String {
    var loads = [Double](repeating: 0, count: 3)
    guard getloadavg(&loads, 3) == 3 else { return "?" }
    return loads.map { String(format: "%.2f", $0) }.joined(separator: " ")
}

/// Keeps the optimizer from discarding a computed value.
@inline(never)
func blackHole<T>(_ value: T) {
    withExtendedLifetime(value) {}
}

/// A 64 KiB chunk of pseudo-random bytes; transfers write slices of it, so nothing is copied to
/// produce the data.
func makeChunk(size: Int = 64 * 1024) -> ByteBuffer {
    var buffer = ByteBuffer()
    buffer.reserveCapacity(size)
    var state: UInt64 = 0x1234_5678_9ABC_DEF0
    for _ in 0..<(size / 8) {
        state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
        buffer.writeInteger(state)
    }
    return buffer
}
