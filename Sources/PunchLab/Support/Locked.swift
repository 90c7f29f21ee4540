import Foundation

/// A value shared between threads, reached only through ``withLock(_:)``.
final class Locked<Value>: @unchecked Sendable {
    // @unchecked Sendable: `value` is private and every access goes through `withLock`, which
    // holds `lock` for the whole access, so no two threads ever touch it at once.
    private let lock = NSLock()
    private var value: Value

    init(_ value: Value) { self.value = value }

    func withLock<Result>(_ body: (inout Value) throws -> Result) rethrows -> Result {
        lock.lock()
        defer { lock.unlock() }
        return try body(&value)
    }
}
