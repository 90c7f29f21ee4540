// punch-bench-grpc: gRPC over a Punch connection (PunchGRPC: HTTP/2 on one Noise + yamux stream)
// against grpc-swift-nio-transport over plain TCP (HTTP/2 on the socket), both on loopback, in
// one run. Reports unary RPCs per second (concurrent callers), client-streaming MiB/s, and the
// ratios Punch / TCP (goal: at least 0.7). Also, for the design choice in PunchGRPC: sequential
// unary RPCs on one gRPC connection against sequential request-replies that each open a new
// Punch stream (what "one Punch stream per RPC" would cost before any gRPC work).
//
// usage: punch-bench-grpc [--seconds S] [--repeats R] [--callers N] [--chunk BYTES] [--json]

import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2Posix
import NIOCore
import NIOPosix
import Punch
import PunchGRPC

struct Options {
    var seconds = 3.0
    var repeats = 3
    var callers = 16
    var chunk = 64 * 1024
    var json = false

    static func parse(_ arguments: [String]) -> Options {
        var options = Options()
        var rest = arguments[...]
        func value() -> String {
            guard let value = rest.popFirst() else { fail("missing value") }
            return value
        }
        while let argument = rest.popFirst() {
            switch argument {
            case "--seconds": options.seconds = Double(value()) ?? options.seconds
            case "--repeats": options.repeats = Int(value()) ?? options.repeats
            case "--callers": options.callers = Int(value()) ?? options.callers
            case "--chunk": options.chunk = Int(value()) ?? options.chunk
            case "--json": options.json = true
            default: fail("unknown argument \(argument)")
            }
        }
        return options
    }
}

func fail(_ message: String) -> Never {
    FileHandle.standardError.write(Data("punch-bench-grpc: \(message)\nusage: punch-bench-grpc [--seconds S] [--repeats R] [--callers N] [--chunk BYTES] [--json]\n".utf8))
    exit(2)
}

func progress(_ message: String) {
    FileHandle.standardError.write(Data("\(message)\n".utf8))
}

/// Bytes as they are: no serialization cost in either transport's figures.
struct RawCoder: MessageSerializer, MessageDeserializer {
    func serialize<Bytes: GRPCContiguousBytes>(_ message: [UInt8]) throws -> Bytes { Bytes(message) }
    func deserialize<Bytes: GRPCContiguousBytes>(_ bytes: Bytes) throws -> [UInt8] {
        bytes.withUnsafeBytes { Array($0) }
    }
}

struct BenchService: RegistrableRPCService {
    static let service = ServiceDescriptor(fullyQualifiedService: "punch.bench.Bench")
    static let unary = MethodDescriptor(service: service, method: "Unary")
    static let upload = MethodDescriptor(service: service, method: "Upload")

    func registerMethods<Transport: ServerTransport>(with router: inout RPCRouter<Transport>) {
        router.registerHandler(forMethod: Self.unary, deserializer: RawCoder(), serializer: RawCoder()) { request, _ in
            let single = try await ServerRequest(stream: request)
            return StreamingServerResponse(single: ServerResponse(message: single.message))
        }
        router.registerHandler(forMethod: Self.upload, deserializer: RawCoder(), serializer: RawCoder()) { request, _ in
            var total = 0
            for try await chunk in request.messages { total += chunk.count }
            return StreamingServerResponse(single: ServerResponse(message: Array("\(total)".utf8)))
        }
    }
}

func median(_ values: [Double]) -> Double { values.sorted()[values.count / 2] }

/// Unary RPCs per second with `callers` concurrent callers for `seconds`.
func unaryRate<T: ClientTransport>(_ client: GRPCClient<T>, callers: Int, seconds: Double) async throws -> Double {
    let payload = [UInt8](repeating: 7, count: 64)
    let start = ContinuousClock.now
    let deadline = start + .seconds(seconds)
    let count = try await withThrowingTaskGroup(of: Int.self) { group in
        for _ in 0..<callers {
            group.addTask {
                var done = 0
                while ContinuousClock.now < deadline {
                    let reply = try await client.unary(
                        request: ClientRequest(message: payload), descriptor: BenchService.unary, serializer: RawCoder(),
                        deserializer: RawCoder(), options: .defaults) { try $0.message }
                    precondition(reply == payload)
                    done += 1
                }
                return done
            }
        }
        return try await group.reduce(0, +)
    }
    return Double(count) / (ContinuousClock.now - start).seconds
}

/// Sequential unary RPCs per second (one caller).
func sequentialUnaryRate<T: ClientTransport>(_ client: GRPCClient<T>, seconds: Double) async throws -> Double {
    try await unaryRate(client, callers: 1, seconds: seconds)
}

/// MiB per second of one client-streaming RPC sending `chunk`-byte messages for `seconds`.
func uploadRate<T: ClientTransport>(_ client: GRPCClient<T>, chunk: Int, seconds: Double) async throws -> Double {
    let payload = [UInt8](repeating: 1, count: chunk)
    let start = ContinuousClock.now
    let deadline = start + .seconds(seconds)
    let total = try await client.clientStreaming(
        request: StreamingClientRequest(of: [UInt8].self) { writer in
            while ContinuousClock.now < deadline { try await writer.write(payload) }
        },
        descriptor: BenchService.upload, serializer: RawCoder(), deserializer: RawCoder(), options: .defaults
    ) { Int(String(decoding: try $0.message, as: UTF8.self)) ?? 0 }
    return Double(total) / 1_048_576 / (ContinuousClock.now - start).seconds
}

/// Sequential 64-byte request-replies per second, each on a new Punch stream (Echo).
func streamPerRequestRate(_ node: PunchNode, to peer: PeerID, seconds: Double) async throws -> Double {
    let connection = try await node.connect(to: peer)
    let payload = ByteBuffer(repeating: 7, count: 64)
    let start = ContinuousClock.now
    let deadline = start + .seconds(seconds)
    var count = 0
    while ContinuousClock.now < deadline {
        let stream = try await connection.openStream(protocol: Echo.protocolID)
        let received = try await stream.channel.executeThenClose { inbound, outbound in
            try await outbound.write(payload)
            outbound.finish()
            var received = 0
            for try await chunk in inbound { received += chunk.readableBytes }
            return received
        }
        precondition(received == 64)
        count += 1
    }
    return Double(count) / (ContinuousClock.now - start).seconds
}

extension Duration {
    var seconds: Double { Double(components.seconds) + Double(components.attoseconds) / 1e18 }
}

func loadAverage() -> String {
    (try? String(contentsOfFile: "/proc/loadavg", encoding: .utf8))?.split(separator: " ").prefix(3).joined(separator: " ") ?? "?"
}

let options = Options.parse(Array(CommandLine.arguments.dropFirst()))
let loadBefore = loadAverage()

// Plain TCP: grpc-swift-nio-transport's own client and server, with the HTTP/2 settings
// PunchServerTransport uses (its 8 MiB window rather than the Posix server's 64 KiB).
var tcpConfig = HTTP2ServerTransport.Posix.Config.defaults
tcpConfig.http2 = PunchServerTransport.defaultConfig.http2
let tcpServer = GRPCServer(
    transport: HTTP2ServerTransport.Posix(
        address: .ipv4(host: "127.0.0.1", port: 0), transportSecurity: .plaintext, config: tcpConfig),
    services: [BenchService()])
let tcpServing = Task { try await tcpServer.serve() }
guard let tcpAddress = try await tcpServer.listeningAddress?.ipv4 else { fail("the TCP server did not listen") }
let tcpClient = GRPCClient(transport: try HTTP2ClientTransport.Posix(
    target: .ipv4(address: tcpAddress.host, port: tcpAddress.port), transportSecurity: .plaintext))
let tcpConnections = Task { try await tcpClient.runConnections() }

// Punch: two nodes on loopback, one Noise + yamux connection.
func node(_ configure: (inout NodeConfiguration) -> Void = { _ in }) async throws -> PunchNode {
    var configuration = NodeConfiguration(identity: .generate())
    configuration.listenAddresses = [try Multiaddr("/ip4/127.0.0.1/tcp/0")]
    configure(&configuration)
    let node = try PunchNode(configuration: configuration)
    try await node.start()
    return node
}
let serverNode = try await node()
Echo.register(on: serverNode.host)
let serverAddress = await serverNode.listenAddresses[0]
let clientNode = try await node { $0.knownPeers[serverNode.peerID] = [serverAddress] }
let punchServer = GRPCServer(transport: PunchServerTransport(node: serverNode), services: [BenchService()])
let punchServing = Task { try await punchServer.serve() }
let punchClient = GRPCClient(transport: .punch(node: clientNode, peer: serverNode.peerID))
let punchConnections = Task { try await punchClient.runConnections() }

struct Figures { var tcp: [Double] = []; var punch: [Double] = [] }
var unary = Figures(), upload = Figures(), sequential = Figures(), perStream = [Double]()
for round in 0...options.repeats {
    let label = round == 0 ? "warm-up" : "repetition \(round)/\(options.repeats)"
    progress("\(label): unary (\(options.callers) callers)")
    let tcpUnary = try await unaryRate(tcpClient, callers: options.callers, seconds: options.seconds)
    let punchUnary = try await unaryRate(punchClient, callers: options.callers, seconds: options.seconds)
    progress("\(label): client streaming (\(options.chunk)-byte messages)")
    let tcpUpload = try await uploadRate(tcpClient, chunk: options.chunk, seconds: options.seconds)
    let punchUpload = try await uploadRate(punchClient, chunk: options.chunk, seconds: options.seconds)
    progress("\(label): sequential unary and a stream per request")
    let tcpSequential = try await sequentialUnaryRate(tcpClient, seconds: options.seconds)
    let punchSequential = try await sequentialUnaryRate(punchClient, seconds: options.seconds)
    let streamPerRequest = try await streamPerRequestRate(clientNode, to: serverNode.peerID, seconds: options.seconds)
    guard round > 0 else { continue }
    unary.tcp.append(tcpUnary); unary.punch.append(punchUnary)
    upload.tcp.append(tcpUpload); upload.punch.append(punchUpload)
    sequential.tcp.append(tcpSequential); sequential.punch.append(punchSequential)
    perStream.append(streamPerRequest)
}

let loadAfter = loadAverage()
func pad(_ text: String, _ width: Int, left: Bool = false) -> String {
    let padding = String(repeating: " ", count: max(0, width - text.count))
    return left ? text + padding : padding + text
}
func number(_ value: Double, _ decimals: Int = 1) -> String { String(format: "%.\(decimals)f", value) }
func row(_ name: String, _ tcp: String, _ punch: String, _ ratio: String, _ unit: String) -> String {
    pad(name, 36, left: true) + pad(tcp, 11) + pad(punch, 12) + pad(ratio, 8) + "  " + unit
}
print("punch-bench-grpc: medians of \(options.repeats) repetitions of \(options.seconds) s; load average \(loadBefore) -> \(loadAfter)")
print(row("", "gRPC/TCP", "gRPC/Punch", "ratio", ""))
for (name, unit, figures) in [("unary, \(options.callers) callers", "RPC/s", unary),
                              ("client streaming, \(options.chunk / 1024) KiB messages", "MiB/s", upload),
                              ("unary, 1 caller", "RPC/s", sequential)] {
    let tcp = median(figures.tcp), punch = median(figures.punch)
    print(row(name, number(tcp), number(punch), number(punch / tcp, 2), unit))
}
print(row("new Punch stream per request", "", number(median(perStream)), number(median(perStream) / median(sequential.punch), 2),
          "req/s (ratio: / unary over Punch, 1 caller)"))
if options.json {
    let object: [String: Any] = [
        "unary_tcp_rps": median(unary.tcp), "unary_punch_rps": median(unary.punch),
        "unary_ratio": median(unary.punch) / median(unary.tcp),
        "stream_tcp_mibps": median(upload.tcp), "stream_punch_mibps": median(upload.punch),
        "stream_ratio": median(upload.punch) / median(upload.tcp),
        "sequential_tcp_rps": median(sequential.tcp), "sequential_punch_rps": median(sequential.punch),
        "stream_per_request_rps": median(perStream),
    ]
    let data = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
    print(String(decoding: data, as: UTF8.self))
}

punchClient.beginGracefulShutdown()
punchServer.beginGracefulShutdown()
tcpClient.beginGracefulShutdown()
tcpServer.beginGracefulShutdown()
_ = await (punchConnections.result, punchServing.result, tcpConnections.result, tcpServing.result)
await clientNode.shutdown()
await serverNode.shutdown()
