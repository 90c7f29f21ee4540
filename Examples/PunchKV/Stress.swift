// punch-kv stress: many concurrent bidirectional RPCs over the punched connection, every message
// checked, across the upgrade from the relayed connection to the direct one.

import ArgumentParser
import Foundation
import GRPCCore
import Punch
import PunchGRPC
import Synchronization

struct Stress: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run concurrent Exchange streams for a while, verifying every reply; exit 1 unless all is well.",
        discussion: """
            In order: one Put (over whatever path the node has: through the relay at first); one \
            Exchange stream kept open from then on; the wait for the direct connection \
            (--upgrade-timeout); --streams Exchange streams for --seconds, each sending an entry \
            every --interval-ms and checking each reply; the end of the first stream, which ran \
            across the upgrade; the wait for the relayed connection to close; a Get over what \
            remains. The last line is {"event":"result","ok":…}.
            """
    )

    @OptionGroup var client: ClientOptions

    @Option(name: .long, help: "Concurrent Exchange streams.")
    var streams = 40

    @Option(name: .long, help: "How long the streams run, in seconds.")
    var seconds = 10.0

    @Option(name: .long, help: "Pause between two entries of one stream, in milliseconds.")
    var intervalMs = 10

    @Option(name: .long, help: "How long to wait for the direct connection, in seconds (0: do not wait).")
    var upgradeTimeout = 40.0

    @Flag(name: .long, help: "Fail unless the streams ran over a direct connection and the relayed one closed.")
    var requireDirect = false

    /// The entry stream `stream` sends `index`-th: deterministic, so the reader knows what to expect.
    static func entry(stream: Int, index: Int) -> KV.Entry {
        KV.Entry(key: "stress/\(stream)/\(index)", value: "\(stream):\(index):" + String(repeating: "x", count: index % 97))
    }

    struct StreamResult: Sendable {
        var sent = 0
        var received = 0
        var mismatches = 0
    }

    /// One Exchange stream: sends until `shouldStop`, checks every reply in order.
    static func exchange(
        _ grpc: GRPCClient<PunchClientTransport>, stream: Int, interval: Duration, shouldStop: @escaping @Sendable () -> Bool
    ) async throws -> StreamResult {
        let sent = Mutex(0)
        let result = try await grpc.bidirectionalStreaming(
            request: StreamingClientRequest(of: KV.Entry.self) { writer in
                var index = 0
                while !shouldStop() {
                    try await writer.write(entry(stream: stream, index: index))
                    index += 1
                    sent.withLock { $0 = index }
                    try await Task.sleep(for: interval)
                }
            },
            descriptor: KV.exchange, serializer: JSONMessageCoder<KV.Entry>(), deserializer: JSONMessageCoder<KV.Entry>(),
            options: .defaults
        ) { response in
            var result = StreamResult()
            for try await reply in response.messages {
                if reply != entry(stream: stream, index: result.received) { result.mismatches += 1 }
                result.received += 1
            }
            return result
        }
        return StreamResult(sent: sent.withLock { $0 }, received: result.received, mismatches: result.mismatches)
    }

    func run() async throws {
        let streams = self.streams, seconds = self.seconds, upgradeTimeout = self.upgradeTimeout
        let interval = Duration.milliseconds(intervalMs)
        let requireDirect = self.requireDirect
        let ok = try await client.withClient { node, server, grpc in
            var errors: [String] = []
            func path() async -> String { await node.connection(to: server)?.path.rawValue ?? "none" }

            // 1. A first RPC, over whatever path the node found.
            let stored = try await grpc.unary(
                request: ClientRequest(message: KV.Entry(key: "stress/first", value: "1")), descriptor: KV.put,
                serializer: JSONMessageCoder<KV.Entry>(), deserializer: JSONMessageCoder<KV.Stored>(), options: .defaults
            ) { try $0.message }
            let firstPath = await path()
            report(["event": "connected", "peer_id": "\(server)", "path": firstPath, "stored_by": stored.storedBy])

            // 2. A stream opened now runs across the upgrade.
            let stopEarly = Atomic(false)
            let early = Task { try await Self.exchange(grpc, stream: -1, interval: .milliseconds(100)) { stopEarly.load(ordering: .relaxed) } }

            // 3. The direct connection.
            if await node.connection(to: server)?.path == .relayed, upgradeTimeout > 0 {
                do {
                    let outcome = try await node.waitForDirectConnection(to: server, timeout: .seconds(upgradeTimeout))
                    report(["event": "upgraded", "path": "direct", "remote_addr": outcome.connection.remoteAddress.map { "\($0)" } ?? ""])
                } catch {
                    report(["event": "upgrade_failed", "message": "\(error)"])
                    if requireDirect { errors.append("no direct connection: \(error)") }
                }
            } else if firstPath == "relayed", let direct = await node.connection(to: server), direct.path == .direct {
                // The punch (which the server starts at once) finished before we asked.
                report(["event": "upgraded", "path": "direct", "remote_addr": direct.remoteAddress.map { "\($0)" } ?? ""])
            }

            // 4. The streams, over the connection the node keeps now.
            let streamsPath = await path()
            report(["event": "streams_started", "streams": streams, "path": streamsPath])
            let deadline = ContinuousClock.now + .seconds(seconds)
            let results = await withTaskGroup(of: Result<StreamResult, any Error>.self) { group in
                for stream in 0..<streams {
                    group.addTask {
                        do {
                            return .success(try await Self.exchange(grpc, stream: stream, interval: interval) { ContinuousClock.now >= deadline })
                        } catch {
                            return .failure(error)
                        }
                    }
                }
                return await group.reduce(into: []) { $0.append($1) }
            }
            var total = StreamResult()
            for result in results {
                switch result {
                case .success(let stream):
                    total.sent += stream.sent
                    total.received += stream.received
                    total.mismatches += stream.mismatches
                    if stream.received != stream.sent { errors.append("a stream got \(stream.received) replies to \(stream.sent) entries") }
                case .failure(let error):
                    errors.append("a stream failed: \(error)")
                }
            }
            report(["event": "streams_done", "streams": streams, "sent": total.sent, "received": total.received,
                    "mismatches": total.mismatches, "path": await path()])

            // 5. The stream that ran across the upgrade.
            stopEarly.store(true, ordering: .relaxed)
            var earlyReport: [String: Any] = ["event": "early_stream"]
            switch await early.result {
            case .success(let stream):
                earlyReport["sent"] = stream.sent
                earlyReport["received"] = stream.received
                earlyReport["mismatches"] = stream.mismatches
                total.mismatches += stream.mismatches
                if stream.received != stream.sent || stream.sent == 0 { errors.append("the early stream got \(stream.received) of \(stream.sent)") }
            case .failure(let error):
                earlyReport["error"] = "\(error)"
                errors.append("the early stream failed: \(error)")
            }
            report(earlyReport)

            // 6. Once the relayed connection has gone, a unary RPC over what remains.
            var relayedGone = false
            for _ in 0..<300 {
                relayedGone = !node.host.connections(to: server).contains { $0.isActive && $0.path == .relayed }
                if relayedGone { break }
                try await Task.sleep(for: .milliseconds(100))
            }
            if requireDirect, !relayedGone { errors.append("the relayed connection is still open") }
            var finalPath = "none"
            do {
                let entry = try await grpc.unary(
                    request: ClientRequest(message: KV.Key(key: "stress/0/0")), descriptor: KV.get,
                    serializer: JSONMessageCoder<KV.Key>(), deserializer: JSONMessageCoder<KV.Entry>(), options: .defaults
                ) { try $0.message }
                if entry != Self.entry(stream: 0, index: 0) { errors.append("Get returned \(entry)") }
                finalPath = await path()
            } catch {
                errors.append("the unary RPC after the streams failed: \(error)")
            }
            if requireDirect, streamsPath != "direct" || finalPath != "direct" {
                errors.append("streams ran \(streamsPath), the last RPC \(finalPath)")
            }
            let ok = errors.isEmpty && total.mismatches == 0
            report(["event": "result", "ok": ok, "streams": streams, "messages": total.received,
                    "mismatches": total.mismatches, "streams_path": streamsPath, "relayed_gone": relayedGone,
                    "final_path": finalPath, "errors": errors])
            return ok
        }
        if !ok { throw ExitCode(1) }
    }
}
