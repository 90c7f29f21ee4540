import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Reads a child's pipe on a dedicated thread until end of file, keeping the bytes and the
/// complete lines, and wakes whoever waits for more.
final class PipeReader: @unchecked Sendable {
    // @unchecked Sendable: the mutable state (`data`, `lines`, `partial`, `finished`) is only
    // touched while `condition` is locked: by the reading thread when it appends, and by
    // `snapshot`/`wait` when they look.
    private let condition = NSCondition()
    private var data = Data()
    private var lines: [String] = []
    private var partial = Data()
    private var finished = false
    /// Bytes (and the lines in them) kept at most; a chatty process must not fill the memory.
    private static let limit = 16 << 20

    /// Starts reading `handle` (the parent's end of a pipe) on a new thread; the thread owns the
    /// handle and closes it at end of file.
    init(_ handle: FileHandle) {
        Thread.detachNewThread { [self] in
            let capacity = 65_536
            let buffer = UnsafeMutableRawPointer.allocate(byteCount: capacity, alignment: 1)
            defer { buffer.deallocate() }
            while true {
                let count = read(handle.fileDescriptor, buffer, capacity)
                if count < 0 && errno == EINTR { continue }
                condition.lock()
                if count <= 0 {
                    if !partial.isEmpty { lines.append(String(decoding: partial, as: UTF8.self)) }
                    partial = Data()
                    finished = true
                    condition.broadcast()
                    condition.unlock()
                    break
                }
                // Past the limit the pipe is still drained (the child must not block), but
                // nothing more is kept.
                if data.count < Self.limit {
                    let chunk = Data(bytes: buffer, count: count)
                    data.append(chunk)
                    partial.append(chunk)
                    while let newline = partial.firstIndex(of: 0x0A) {
                        lines.append(String(decoding: partial[partial.startIndex..<newline], as: UTF8.self))
                        partial = Data(partial[(newline + 1)...])
                    }
                }
                condition.broadcast()
                condition.unlock()
            }
            try? handle.close()
        }
    }

    /// Everything read so far, as text.
    var text: String {
        condition.lock()
        defer { condition.unlock() }
        return String(decoding: data, as: UTF8.self)
    }

    /// The complete lines read so far (and the unterminated last one after end of file).
    var allLines: [String] {
        condition.lock()
        defer { condition.unlock() }
        return lines
    }

    /// Calls `check` with the lines and whether the pipe has ended, now and after every read,
    /// until it returns a value or the deadline passes (then `nil`).
    func wait<T>(until deadline: Date, _ check: (_ lines: [String], _ finished: Bool) throws -> T?) rethrows -> T? {
        condition.lock()
        defer { condition.unlock() }
        while true {
            if let result = try check(lines, finished) { return result }
            if finished || !condition.wait(until: deadline) {
                return try check(lines, finished)
            }
        }
    }

    /// Waits until end of file; false if the deadline passed first.
    @discardableResult
    func waitForEnd(until deadline: Date) -> Bool {
        wait(until: deadline) { _, finished in finished ? true : nil } ?? false
    }
}
