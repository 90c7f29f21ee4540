import Foundation
import NIOCore
import NIOPosix
import PunchCrypto
import PunchWire

@testable import PunchTransport

/// A bounded wait ran out; the test fails instead of hanging.
struct TimedOut: Error, CustomStringConvertible {
    let what: String
    let after: Duration
    var description: String { "timed out after \(after) waiting for \(what)" }
}

/// Resumes a continuation once, from whichever of an operation and its timer finishes first.
// Sendable because every stored property is read and written only while holding `lock`.
private final class FirstFinisher<T: Sendable>: @unchecked Sendable {
    private let lock = NSLock()
    private var continuation: CheckedContinuation<T, any Error>?
    private var work: Task<Void, Never>?

    init(_ continuation: CheckedContinuation<T, any Error>) {
        self.continuation = continuation
    }

    func setWork(_ task: Task<Void, Never>) {
        lock.lock()
        defer { lock.unlock() }
        if continuation == nil { task.cancel() } else { work = task }
    }

    func finish(_ result: Result<T, any Error>, cancellingWork: Bool = false) {
        lock.lock()
        let continuation = self.continuation
        self.continuation = nil
        let work = self.work
        lock.unlock()
        guard let continuation else { return }
        if cancellingWork { work?.cancel() }
        continuation.resume(with: result)
    }
}

/// Runs `operation`, failing with ``TimedOut`` if it takes longer than `timeout`. The operation
/// is then cancelled but not awaited (a NIO future cannot be cancelled), so a stuck test fails
/// rather than hangs.
func withTimeout<T: Sendable>(
    _ timeout: Duration = .seconds(10), _ what: String = "the operation",
    _ operation: @escaping @Sendable () async throws -> T
) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        let finisher = FirstFinisher(continuation)
        let timer = Task {
            do { try await Task.sleep(for: timeout) } catch { return }  // cancelled: the operation finished
            finisher.finish(.failure(TimedOut(what: what, after: timeout)), cancellingWork: true)
        }
        finisher.setWork(
            Task {
                let result: Result<T, any Error>
                do { result = .success(try await operation()) } catch { result = .failure(error) }
                timer.cancel()
                finisher.finish(result)
            })
    }
}

/// Every event a host reported, in order, with a way to wait for one.
actor EventLog {
    private var events: [HostEvent] = []
    private var ended = false
    private var waiters: [(predicate: @Sendable (HostEvent) -> Bool, continuation: CheckedContinuation<HostEvent?, Never>)] = []

    /// A log that reads `stream` (a host's only reader) until it ends.
    static func recording(_ stream: AsyncStream<HostEvent>) -> EventLog {
        let log = EventLog()
        Task {
            for await event in stream { await log.append(event) }
            await log.end()
        }
        return log
    }

    private func append(_ event: HostEvent) {
        events.append(event)
        var waiting: [(predicate: @Sendable (HostEvent) -> Bool, continuation: CheckedContinuation<HostEvent?, Never>)] = []
        for waiter in waiters {
            if waiter.predicate(event) { waiter.continuation.resume(returning: event) } else { waiting.append(waiter) }
        }
        waiters = waiting
    }

    private func end() {
        ended = true
        for waiter in waiters { waiter.continuation.resume(returning: nil) }
        waiters = []
    }

    /// The first event, past or future, that matches; nil if the stream ends without one.
    func first(where predicate: @escaping @Sendable (HostEvent) -> Bool) async -> HostEvent? {
        if let event = events.first(where: predicate) { return event }
        if ended { return nil }
        return await withCheckedContinuation { waiters.append((predicate, $0)) }
    }

    /// Every event so far.
    var all: [HostEvent] { events }
}

extension HostEvent {
    /// The connection of a `.connected` event.
    var connected: Connection? {
        if case .connected(let connection) = self { return connection }
        return nil
    }

    /// The connection of a `.disconnected` event.
    var disconnected: Connection? {
        if case .disconnected(let connection, _) = self { return connection }
        return nil
    }

    /// Direction and error of a `.connectionFailed` event.
    var failure: (direction: ConnectionDirection, error: TransportError)? {
        if case .connectionFailed(let direction, _, let error) = self { return (direction, error) }
        return nil
    }
}

/// A host on the shared event loops, with its events recorded.
struct TestHost: Sendable {
    let host: PunchHost
    let events: EventLog

    init(group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton, _ configure: (inout HostConfiguration) -> Void = { _ in }) {
        var configuration = HostConfiguration(identity: .generate())
        configure(&configuration)
        self.host = PunchHost(configuration: configuration, group: group)
        self.events = EventLog.recording(host.events)
    }

    var peerID: PeerID { host.peerID }

    /// Listens on an ephemeral loopback port; returns the address ending in `/p2p/<PeerID>`.
    func listen() async throws -> Multiaddr {
        let addresses = try await host.listen(Multiaddr("/ip4/127.0.0.1/tcp/0"))
        guard addresses.count == 1, let address = addresses.first else {
            throw TransportError(.init("test.listen"), "expected one loopback address, got \(addresses)")
        }
        return address
    }

    /// The first event that matches, waiting for it at most `timeout`.
    func event(
        _ what: String, timeout: Duration = .seconds(5), where predicate: @escaping @Sendable (HostEvent) -> Bool
    ) async throws -> HostEvent {
        let events = self.events
        let found = try await withTimeout(timeout, what) { await events.first(where: predicate) }
        guard let found else { throw TimedOut(what: "\(what) (the event stream ended)", after: .zero) }
        return found
    }

    /// The first `.connectionFailed` event in `direction`.
    func failure(_ direction: ConnectionDirection) async throws -> TransportError {
        let event = try await event("a \(direction) connectionFailed event") { $0.failure?.direction == direction }
        return event.failure!.error
    }
}

/// Runs `body` with a time limit, then closes every host, also when the body failed.
func withHosts(
    _ hosts: TestHost..., timeout: Duration = .seconds(20), _ body: @escaping @Sendable () async throws -> Void
) async throws {
    do {
        try await withTimeout(timeout, "the test body", body)
    } catch {
        for test in hosts { await test.host.close() }
        throw error
    }
    for test in hosts { await test.host.close() }
}

/// A plain TCP client with no Punch handlers (unless `initializer` adds some), for bad input.
func rawClient(
    port: Int, _ initializer: @escaping @Sendable (Channel) -> EventLoopFuture<Void> = { $0.eventLoop.makeSucceededVoidFuture() }
) async throws -> Channel {
    try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
        .channelInitializer(initializer)
        .connect(host: "127.0.0.1", port: port)
        .get()
}
