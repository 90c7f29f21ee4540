// punch-kv latency: what one RPC costs over the path to the server, against what a request-reply
// on a new Punch stream costs — the measurement behind PunchGRPC's choice of HTTP/2 on one Punch
// stream rather than one Punch stream per RPC.

import ArgumentParser
import Foundation
import GRPCCore
import NIOCore
import Punch
import PunchGRPC

struct Latency: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Time sequential unary RPCs and sequential request-replies on new Punch streams.",
        discussion: """
            Over the connection the node keeps to the server (direct after --upgrade-timeout if the \
            punch succeeds): --count sequential Get RPCs on one gRPC connection, and --count \
            sequential 64-byte request-replies that each open a new Punch stream (the server's \
            echo protocol). Prints {"event":"latency",…} with the median and 90th percentile of \
            each and the connection's ping round trip, in milliseconds.
            """
    )

    @OptionGroup var client: ClientOptions

    @Option(name: .long, help: "Requests of each kind.")
    var count = 50

    @Option(name: .long, help: "How long to wait for the direct connection first, in seconds (0: do not wait).")
    var upgradeTimeout = 40.0

    static func milliseconds(_ duration: Duration) -> Double {
        Double(duration.components.seconds) * 1000 + Double(duration.components.attoseconds) / 1e15
    }

    static func percentile(_ values: [Double], _ fraction: Double) -> Double {
        let sorted = values.sorted()
        return sorted[min(sorted.count - 1, Int(Double(sorted.count) * fraction))]
    }

    func run() async throws {
        let count = self.count, upgradeTimeout = self.upgradeTimeout
        try await client.withClient { node, server, grpc in
            _ = try await grpc.unary(
                request: ClientRequest(message: KV.Entry(key: "latency", value: "1")), descriptor: KV.put,
                serializer: JSONMessageCoder<KV.Entry>(), deserializer: JSONMessageCoder<KV.Stored>(), options: .defaults
            ) { try $0.message }
            if await node.connection(to: server)?.path == .relayed, upgradeTimeout > 0 {
                _ = try? await node.waitForDirectConnection(to: server, timeout: .seconds(upgradeTimeout))
            }
            let connection = try await node.connect(to: server)
            let clock = ContinuousClock()
            // Warm both paths: the gRPC connection on this connection, and the echo protocol.
            var rpc: [Double] = [], stream: [Double] = []
            for round in -1..<count {
                let started = clock.now
                _ = try await grpc.unary(
                    request: ClientRequest(message: KV.Key(key: "latency")), descriptor: KV.get,
                    serializer: JSONMessageCoder<KV.Key>(), deserializer: JSONMessageCoder<KV.Entry>(), options: .defaults
                ) { try $0.message }
                if round >= 0 { rpc.append(Self.milliseconds(clock.now - started)) }
            }
            let payload = ByteBuffer(repeating: 7, count: 64)
            for round in -1..<count {
                let started = clock.now
                let echo = try await connection.openStream(protocol: Echo.protocolID)
                let received = try await echo.channel.executeThenClose { inbound, outbound in
                    try await outbound.write(payload)
                    var received = 0
                    for try await chunk in inbound {
                        received += chunk.readableBytes
                        if received >= 64 { break }
                    }
                    outbound.finish()
                    return received
                }
                guard received == 64 else { throw ValidationError("the echo returned \(received) of 64 bytes") }
                if round >= 0 { stream.append(Self.milliseconds(clock.now - started)) }
            }
            let pings = try await connection.ping(count: 5).map(Self.milliseconds)
            report([
                "event": "latency", "path": connection.path.rawValue, "count": count,
                "ping_ms": Self.percentile(pings, 0.5),
                "rpc_p50_ms": Self.percentile(rpc, 0.5), "rpc_p90_ms": Self.percentile(rpc, 0.9),
                "new_stream_p50_ms": Self.percentile(stream, 0.5), "new_stream_p90_ms": Self.percentile(stream, 0.9),
            ])
        }
    }
}
