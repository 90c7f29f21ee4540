// The key-value service: gRPC written by hand with Codable messages (no generated code), served
// on a PunchNode by PunchServerTransport and called by PunchClientTransport.

import GRPCCore
import PunchGRPC

/// The messages of `punch.kv.KeyValue`.
enum KV {
    struct Entry: Codable, Sendable, Equatable { var key: String; var value: String }
    struct Key: Codable, Sendable { var key: String }
    struct Prefix: Codable, Sendable { var prefix: String }
    struct Stored: Codable, Sendable {
        var previous: String?
        /// The PeerID of the caller, as the server's Punch connection authenticated it.
        var storedBy: String
    }

    static let service = ServiceDescriptor(fullyQualifiedService: "punch.kv.KeyValue")
    /// Unary: stores an entry, answers with the value it replaced.
    static let put = MethodDescriptor(service: service, method: "Put")
    /// Unary: an entry's value, or `notFound`.
    static let get = MethodDescriptor(service: service, method: "Get")
    /// Server streaming: every entry whose key starts with a prefix, in key order.
    static let list = MethodDescriptor(service: service, method: "List")
    /// Bidirectional: stores each entry sent and answers each with the entry as stored.
    static let exchange = MethodDescriptor(service: service, method: "Exchange")
}

/// The store behind the service, bounded.
actor KeyValueStore {
    /// The most entries kept; a put beyond it fails with `resourceExhausted`.
    static let maximumEntries = 100_000
    /// The longest key, in UTF-8 bytes (`invalidArgument` beyond).
    static let maximumKeyBytes = 1024
    /// The longest value, in UTF-8 bytes (`invalidArgument` beyond).
    static let maximumValueBytes = 64 * 1024

    private var entries: [String: String] = [:]

    func put(_ entry: KV.Entry) throws -> String? {
        guard !entry.key.isEmpty, entry.key.utf8.count <= Self.maximumKeyBytes else {
            throw RPCError(code: .invalidArgument, message: "a key has 1 to \(Self.maximumKeyBytes) bytes")
        }
        guard entry.value.utf8.count <= Self.maximumValueBytes else {
            throw RPCError(code: .invalidArgument, message: "a value has at most \(Self.maximumValueBytes) bytes")
        }
        guard entries[entry.key] != nil || entries.count < Self.maximumEntries else {
            throw RPCError(code: .resourceExhausted, message: "the store holds its limit of \(Self.maximumEntries) entries")
        }
        return entries.updateValue(entry.value, forKey: entry.key)
    }

    func get(_ key: String) throws -> String {
        guard let value = entries[key] else { throw RPCError(code: .notFound, message: "no entry for '\(key)'") }
        return value
    }

    func list(prefix: String) -> [KV.Entry] {
        entries.filter { $0.key.hasPrefix(prefix) }.sorted { $0.key < $1.key }.map { KV.Entry(key: $0.key, value: $0.value) }
    }
}

struct KeyValueService: RegistrableRPCService {
    let store = KeyValueStore()

    func registerMethods<Transport: ServerTransport>(with router: inout RPCRouter<Transport>) {
        let store = self.store
        router.registerHandler(
            forMethod: KV.put, deserializer: JSONMessageCoder<KV.Entry>(), serializer: JSONMessageCoder<KV.Stored>()
        ) { request, _ in
            let single = try await ServerRequest(stream: request)
            let previous = try await store.put(single.message)
            let caller = single.metadata.punchPeerID.map { "\($0)" } ?? "?"
            return StreamingServerResponse(single: ServerResponse(message: KV.Stored(previous: previous, storedBy: caller)))
        }
        router.registerHandler(
            forMethod: KV.get, deserializer: JSONMessageCoder<KV.Key>(), serializer: JSONMessageCoder<KV.Entry>()
        ) { request, _ in
            let single = try await ServerRequest(stream: request)
            let value = try await store.get(single.message.key)
            return StreamingServerResponse(single: ServerResponse(message: KV.Entry(key: single.message.key, value: value)))
        }
        router.registerHandler(
            forMethod: KV.list, deserializer: JSONMessageCoder<KV.Prefix>(), serializer: JSONMessageCoder<KV.Entry>()
        ) { request, _ in
            let single = try await ServerRequest(stream: request)
            let entries = await store.list(prefix: single.message.prefix)
            return StreamingServerResponse { writer in
                try await writer.write(contentsOf: entries)
                return [:]
            }
        }
        router.registerHandler(
            forMethod: KV.exchange, deserializer: JSONMessageCoder<KV.Entry>(), serializer: JSONMessageCoder<KV.Entry>()
        ) { request, _ in
            StreamingServerResponse { writer in
                for try await entry in request.messages {
                    _ = try await store.put(entry)
                    try await writer.write(KV.Entry(key: entry.key, value: try await store.get(entry.key)))
                }
                return [:]
            }
        }
    }
}
