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
    /// Which measurements to run (all by default).
    var only: Set<Measurement.Kind> = Set(Measurement.Kind.allCases)

    static let usage = """
        usage: punch-bench [--bytes N[K|M|G]] [--seconds S] [--repeats R] [--only LIST] [--json]
          --bytes N     bytes per transfer (default 512M)
          --seconds S   seconds per repetition of the CPU-only measurements (default 2)
          --repeats R   measured repetitions after one warm-up; the median is reported (default 3)
          --only LIST   comma-separated subset of: \(Measurement.Kind.allCases.map(\.rawValue).joined(separator: ","))
          --window N    yamux stream receive window of both hosts (default: the library's, 256K)
          --json        also print the figures as one JSON object on the last line
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
                for name in try value().split(separator: ",") {
                    guard let kind = Measurement.Kind(rawValue: String(name)) else { throw UsageError("unknown measurement \(name)") }
                    kinds.insert(kind)
                }
                options.only = kinds
            case "--json":
                options.json = true
            case "--window":
                options.window = try parseSize(try value())
            case "-h", "--help":
                print(usage)
                exit(0)
            default:
                throw UsageError("unknown argument \(arguments[index])")
            }
            index += 1
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
