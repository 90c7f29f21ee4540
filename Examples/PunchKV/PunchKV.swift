// punch-kv: a key-value store served over gRPC on a PunchNode, reached by PeerID from behind NATs.
//
//   punch-kv serve --relay /ip4/203.0.113.10/tcp/4001/p2p/RELAY
//   punch-kv put PEER greeting hello --relay …/p2p/RELAY
//   punch-kv get PEER greeting --relay …/p2p/RELAY
//   punch-kv stress PEER --relay …/p2p/RELAY --streams 40 --seconds 10
//
// Every command prints JSON lines. Examples/PunchKV/README.md runs it across the NAT lab.

import ArgumentParser
import Foundation
import GRPCCore
import NIOCore
import Punch
import PunchGRPC

@main
struct PunchKV: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "punch-kv",
        abstract: "A key-value store over gRPC, between peers behind NATs, reached by PeerID (a Punch example).",
        subcommands: [Serve.self, Put.self, Get.self, List.self, Stress.self, Latency.self]
    )
}

/// Prints one JSON line.
func report(_ fields: [String: Any]) {
    let data = try! JSONSerialization.data(withJSONObject: fields, options: [.sortedKeys, .withoutEscapingSlashes])
    FileHandle.standardOutput.write(data + Data("\n".utf8))
}

struct NodeOptions: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp("Where to listen (repeatable).", valueName: "multiaddr"))
    var listen: [String] = []

    @Option(name: .long, help: ArgumentHelp(
        "A relay (…/p2p/RELAY): the server reserves on it; a client reaches the server through it. Repeatable.",
        valueName: "multiaddr"))
    var relay: [String] = []

    @Option(name: .long, help: ArgumentHelp("The identity key file (created if missing); a new key if absent.", valueName: "path"))
    var identity: String?

    func relays() throws -> [Multiaddr] {
        try relay.map { text in
            let address = try Multiaddr(text)
            guard address.peerID != nil, !address.isCircuit else {
                throw ValidationError("--relay wants /…/tcp/P/p2p/RELAY, not \(text)")
            }
            return address
        }
    }

    func node(reserve: Bool) throws -> PunchNode {
        let key = try identity.map { try IdentityKeyFile.loadOrCreate(at: $0).key } ?? PrivateKey.generate()
        var configuration = NodeConfiguration(identity: key)
        configuration.listenAddresses = try listen.map { try Multiaddr($0) }
        if reserve { configuration.relays = try relays() }
        return try PunchNode(configuration: configuration)
    }
}

/// The options of every client command: the server's PeerID and how to reach it.
struct ClientOptions: ParsableArguments {
    @Argument(help: "The server's PeerID.")
    var peer: String

    @OptionGroup var node: NodeOptions

    /// Starts a node that knows the server through each relay, and runs `body` with a gRPC client.
    func withClient<T: Sendable>(
        _ body: @Sendable (PunchNode, PeerID, GRPCClient<PunchClientTransport>) async throws -> T
    ) async throws -> T {
        let server = try PeerID(peer)
        let relays = try node.relays()
        guard !relays.isEmpty else { throw ValidationError("reaching a PeerID needs --relay …/p2p/RELAY") }
        let punchNode = try node.node(reserve: false)
        try await punchNode.start()
        await punchNode.addAddresses(relays.map { $0.appendingCircuit() }, for: server)
        do {
            let result = try await withGRPCClient(transport: .punch(node: punchNode, peer: server)) { client in
                try await body(punchNode, server, client)
            }
            await punchNode.shutdown()
            return result
        } catch {
            await punchNode.shutdown()
            throw error
        }
    }
}

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Serve the store on a node; runs until interrupted.")

    @OptionGroup var node: NodeOptions

    func run() async throws {
        let punchNode = try node.node(reserve: true)
        Echo.register(on: punchNode.host)  // for `punch-kv latency`'s new-stream requests
        let events = punchNode.events
        let addresses = try await punchNode.start()
        report(["event": "listening", "peer_id": "\(punchNode.peerID)", "addrs": addresses.map { "\($0)" }])
        let server = GRPCServer(transport: PunchServerTransport(node: punchNode), services: [KeyValueService()])
        try await withThrowingDiscardingTaskGroup { group in
            group.addTask { try await server.serve() }
            group.addTask {
                for await event in events {
                    switch event {
                    case .reserved(let reservation):
                        report(["event": "reserved", "relay": "\(reservation.relay)"])
                    case .connected(let connection):
                        report(["event": "connected", "peer_id": "\(connection.remotePeerID)", "path": connection.path.rawValue])
                    case .upgraded(let peer, _, _):
                        report(["event": "upgraded", "peer_id": "\(peer)", "path": "direct"])
                    default:
                        break
                    }
                }
            }
        }
    }
}

struct Put: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Store KEY = VALUE on the server.")

    @OptionGroup var client: ClientOptions
    @Argument var key: String
    @Argument var value: String

    func run() async throws {
        let entry = KV.Entry(key: key, value: value)
        let stored = try await client.withClient { _, _, grpc in
            try await grpc.unary(
                request: ClientRequest(message: entry), descriptor: KV.put, serializer: JSONMessageCoder<KV.Entry>(),
                deserializer: JSONMessageCoder<KV.Stored>(), options: .defaults) { try $0.message }
        }
        report(["event": "stored", "key": key, "previous": stored.previous ?? NSNull(), "stored_by": stored.storedBy])
    }
}

struct Get: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Print KEY's value; exit 1 with code NOT_FOUND if none.")

    @OptionGroup var client: ClientOptions
    @Argument var key: String

    func run() async throws {
        let key = self.key
        do {
            let entry = try await client.withClient { _, _, grpc in
                try await grpc.unary(
                    request: ClientRequest(message: KV.Key(key: key)), descriptor: KV.get,
                    serializer: JSONMessageCoder<KV.Key>(), deserializer: JSONMessageCoder<KV.Entry>(), options: .defaults
                ) { try $0.message }
            }
            report(["event": "value", "key": entry.key, "value": entry.value])
        } catch let error as RPCError {
            report(["event": "error", "code": "\(error.code)", "message": error.message])
            throw ExitCode(1)
        }
    }
}

struct List: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Print every entry whose key starts with --prefix.")

    @OptionGroup var client: ClientOptions
    @Option(name: .long) var prefix = ""

    func run() async throws {
        let prefix = self.prefix
        let count = try await client.withClient { _, _, grpc in
            try await grpc.serverStreaming(
                request: ClientRequest(message: KV.Prefix(prefix: prefix)), descriptor: KV.list,
                serializer: JSONMessageCoder<KV.Prefix>(), deserializer: JSONMessageCoder<KV.Entry>(), options: .defaults
            ) { response in
                var count = 0
                for try await entry in response.messages {
                    report(["event": "entry", "key": entry.key, "value": entry.value])
                    count += 1
                }
                return count
            }
        }
        report(["event": "listed", "count": count])
    }
}
