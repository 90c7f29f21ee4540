import Foundation
import GRPCCore
import NIOCore
import Punch
import PunchGRPC
import Synchronization
import Testing

/// A hand-written service with every RPC kind, and handles on what the server saw.
final class ProbeService: RegistrableRPCService {
    struct Text: Codable, Sendable, Equatable { var text: String }
    struct Number: Codable, Sendable, Equatable { var value: Int }
    struct Seen: Codable, Sendable, Equatable { var text: String; var peer: String?; var remotePeer: String }

    static let service = ServiceDescriptor(fullyQualifiedService: "punch.test.Probe")
    static let echo = MethodDescriptor(service: service, method: "Echo")
    static let count = MethodDescriptor(service: service, method: "Count")
    static let sum = MethodDescriptor(service: service, method: "Sum")
    static let chat = MethodDescriptor(service: service, method: "Chat")
    static let sleep = MethodDescriptor(service: service, method: "Sleep")
    static let fail = MethodDescriptor(service: service, method: "Fail")

    /// How many Sleep handlers started, and how many of those saw their RPC cancelled.
    let startedSleeps = Mutex(0)
    let cancelledSleeps = Mutex(0)
    /// Count responses sent, to know when a stream is under way.
    let countSent = Mutex(0)

    func registerMethods<Transport: ServerTransport>(with router: inout RPCRouter<Transport>) {
        router.registerHandler(
            forMethod: Self.echo, deserializer: JSONMessageCoder<Text>(), serializer: JSONMessageCoder<Seen>()
        ) { request, context in
            let single = try await ServerRequest(stream: request)
            return StreamingServerResponse(
                single: ServerResponse(
                    message: Seen(
                        text: single.message.text, peer: single.metadata.punchPeerID?.description,
                        remotePeer: context.remotePeer)))
        }
        router.registerHandler(
            forMethod: Self.count, deserializer: JSONMessageCoder<Number>(), serializer: JSONMessageCoder<Number>()
        ) { [self] request, _ in
            let single = try await ServerRequest(stream: request)
            return StreamingServerResponse { writer in
                for value in 0..<single.message.value {
                    try await writer.write(Number(value: value))
                    self.countSent.withLock { $0 += 1 }
                    try await Task.sleep(for: .milliseconds(1))
                }
                return [:]
            }
        }
        router.registerHandler(
            forMethod: Self.sum, deserializer: JSONMessageCoder<Number>(), serializer: JSONMessageCoder<Number>()
        ) { request, _ in
            var total = 0
            for try await number in request.messages { total += number.value }
            return StreamingServerResponse(single: ServerResponse(message: Number(value: total)))
        }
        router.registerHandler(
            forMethod: Self.chat, deserializer: JSONMessageCoder<Text>(), serializer: JSONMessageCoder<Text>()
        ) { request, _ in
            StreamingServerResponse { writer in
                for try await message in request.messages {
                    try await writer.write(Text(text: "re: " + message.text))
                }
                return [:]
            }
        }
        router.registerHandler(
            forMethod: Self.sleep, deserializer: JSONMessageCoder<Number>(), serializer: JSONMessageCoder<Number>()
        ) { [self] request, context in
            let single = try await ServerRequest(stream: request)
            self.startedSleeps.withLock { $0 += 1 }
            // gRPC cancels an RPC (deadline, caller gone) through the context, not the task.
            let cancelled = await withTaskGroup(of: Bool.self) { group in
                group.addTask {
                    do { try await Task.sleep(for: .milliseconds(single.message.value)) } catch { return true }
                    return false
                }
                group.addTask {
                    do { try await context.cancellation.cancelled } catch { return false }
                    return true
                }
                let first = await group.next()!
                group.cancelAll()
                return first
            }
            if cancelled {
                self.cancelledSleeps.withLock { $0 += 1 }
                throw RPCError(code: .cancelled, message: "cancelled")
            }
            return StreamingServerResponse(single: ServerResponse(message: single.message))
        }
        router.registerHandler(
            forMethod: Self.fail, deserializer: JSONMessageCoder<Number>(), serializer: JSONMessageCoder<Number>()
        ) { request, _ in
            let single = try await ServerRequest(stream: request)
            guard let code = RPCError.Code(Status.Code(rawValue: single.message.value) ?? .unknown) else {
                throw NotAnRPCError()
            }
            throw RPCError(code: code, message: "failed as asked")
        }
    }
}

struct NotAnRPCError: Error {}

/// Two nodes on loopback, a gRPC server on one and a client on the other.
final class GRPCPair: Sendable {
    let server: PunchNode
    let client: PunchNode
    let service = ProbeService()
    let grpcServer: GRPCServer<PunchServerTransport>
    let grpcClient: GRPCClient<PunchClientTransport>
    private let tasks: Mutex<[Task<Void, Never>]> = Mutex([])

    init() async throws {
        server = try await Self.node()
        let address = await server.listenAddresses[0]
        let serverID = server.peerID
        client = try await Self.node { $0.knownPeers[serverID] = [address] }
        grpcServer = GRPCServer(transport: PunchServerTransport(node: server), services: [service])
        grpcClient = GRPCClient(transport: .punch(node: client, peer: server.peerID))
        let grpcServer = self.grpcServer, grpcClient = self.grpcClient
        tasks.withLock {
            $0.append(Task { try? await grpcServer.serve() })
            $0.append(Task { try? await grpcClient.runConnections() })
        }
    }

    static func node(_ configure: (inout NodeConfiguration) -> Void = { _ in }) async throws -> PunchNode {
        var configuration = NodeConfiguration(identity: .generate())
        configuration.listenAddresses = [try Multiaddr("/ip4/127.0.0.1/tcp/0")]
        configure(&configuration)
        let node = try PunchNode(configuration: configuration)
        try await node.start()
        return node
    }

    func echo(_ text: String, metadata: Metadata = [:], options: CallOptions = .defaults) async throws -> ProbeService.Seen {
        try await grpcClient.unary(
            request: ClientRequest(message: ProbeService.Text(text: text), metadata: metadata),
            descriptor: ProbeService.echo, serializer: JSONMessageCoder<ProbeService.Text>(),
            deserializer: JSONMessageCoder<ProbeService.Seen>(), options: options
        ) { try $0.message }
    }

    func close() async {
        grpcClient.beginGracefulShutdown()
        grpcServer.beginGracefulShutdown()
        for task in tasks.withLock({ $0 }) { await task.value }
        await client.shutdown()
        await server.shutdown()
    }
}

@Suite struct PunchGRPCLoopbackTests {
    @Test func unaryCarriesTheCallersPeerIDWhateverTheClientClaims() async throws {
        let pair = try await GRPCPair()
        let forged = PrivateKey.generate().peerID
        let seen = try await pair.echo("hello", metadata: [PunchGRPC.peerIDMetadataKey: "\(forged)"])
        #expect(seen.text == "hello")
        #expect(seen.peer == pair.client.peerID.description, "the Noise-authenticated PeerID, not the forged one")
        #expect(seen.remotePeer == "unix:/p2p/\(pair.client.peerID)")
        await pair.close()
    }

    @Test func serverStreamingClientStreamingAndBidirectional() async throws {
        let pair = try await GRPCPair()
        let counted = try await pair.grpcClient.serverStreaming(
            request: ClientRequest(message: ProbeService.Number(value: 100)), descriptor: ProbeService.count,
            serializer: JSONMessageCoder<ProbeService.Number>(), deserializer: JSONMessageCoder<ProbeService.Number>(),
            options: .defaults
        ) { response in try await response.messages.reduce(into: [Int]()) { $0.append($1.value) } }
        #expect(counted == Array(0..<100))

        let sum = try await pair.grpcClient.clientStreaming(
            request: StreamingClientRequest(of: ProbeService.Number.self) { writer in
                for value in 1...1000 { try await writer.write(ProbeService.Number(value: value)) }
            },
            descriptor: ProbeService.sum, serializer: JSONMessageCoder<ProbeService.Number>(),
            deserializer: JSONMessageCoder<ProbeService.Number>(), options: .defaults
        ) { try $0.message.value }
        #expect(sum == 500_500)

        let replies = try await pair.grpcClient.bidirectionalStreaming(
            request: StreamingClientRequest(of: ProbeService.Text.self) { writer in
                for index in 0..<50 { try await writer.write(ProbeService.Text(text: "m\(index)")) }
            },
            descriptor: ProbeService.chat, serializer: JSONMessageCoder<ProbeService.Text>(),
            deserializer: JSONMessageCoder<ProbeService.Text>(), options: .defaults
        ) { response in try await response.messages.reduce(into: [String]()) { $0.append($1.text) } }
        #expect(replies == (0..<50).map { "re: m\($0)" })
        await pair.close()
    }

    @Test func aDeadlineEndsTheRPCAndCancelsTheHandler() async throws {
        let pair = try await GRPCPair()
        _ = try await pair.echo("warm up")
        var options = CallOptions.defaults
        options.timeout = .seconds(1)
        let error = await #expect(throws: RPCError.self) {
            try await pair.grpcClient.unary(
                request: ClientRequest(message: ProbeService.Number(value: 10_000)), descriptor: ProbeService.sleep,
                serializer: JSONMessageCoder<ProbeService.Number>(), deserializer: JSONMessageCoder<ProbeService.Number>(),
                options: options
            ) { try $0.message }
        }
        #expect(error?.code == .deadlineExceeded)
        #expect(pair.service.startedSleeps.withLock { $0 } == 1, "the handler ran (the deadline is 1 s)")
        #expect(await eventually { pair.service.cancelledSleeps.withLock { $0 } == 1 }, "the server's handler was cancelled")
        await pair.close()
    }

    @Test func cancellingTheCallerCancelsTheHandler() async throws {
        let pair = try await GRPCPair()
        _ = try await pair.echo("warm up")
        let call = Task {
            try await pair.grpcClient.unary(
                request: ClientRequest(message: ProbeService.Number(value: 10_000)), descriptor: ProbeService.sleep,
                serializer: JSONMessageCoder<ProbeService.Number>(), deserializer: JSONMessageCoder<ProbeService.Number>(),
                options: .defaults
            ) { try $0.message }
        }
        #expect(await eventually { pair.service.startedSleeps.withLock { $0 } == 1 }, "the handler runs")
        call.cancel()
        let result = await call.result
        #expect(throws: (any Error).self) { try result.get() }
        #expect(await eventually { pair.service.cancelledSleeps.withLock { $0 } == 1 }, "the server's handler was cancelled")
        await pair.close()
    }

    @Test(arguments: [RPCError.Code.notFound, .permissionDenied, .resourceExhausted, .internalError])
    func statusCodesReachTheCaller(code: RPCError.Code) async throws {
        let pair = try await GRPCPair()
        let error = await #expect(throws: RPCError.self) {
            try await pair.grpcClient.unary(
                request: ClientRequest(message: ProbeService.Number(value: Status.Code(code).rawValue)),
                descriptor: ProbeService.fail, serializer: JSONMessageCoder<ProbeService.Number>(),
                deserializer: JSONMessageCoder<ProbeService.Number>(), options: .defaults
            ) { try $0.message }
        }
        #expect(error?.code == code)
        #expect(error?.message == "failed as asked")
        await pair.close()
    }

    @Test func anErrorThatIsNotAnRPCErrorIsUnknown() async throws {
        let pair = try await GRPCPair()
        let error = await #expect(throws: RPCError.self) {
            try await pair.grpcClient.unary(
                request: ClientRequest(message: ProbeService.Number(value: 0)),  // ok: no RPCError.Code
                descriptor: ProbeService.fail, serializer: JSONMessageCoder<ProbeService.Number>(),
                deserializer: JSONMessageCoder<ProbeService.Number>(), options: .defaults
            ) { try $0.message }
        }
        #expect(error?.code == .unknown)
        await pair.close()
    }

    @Test func aConnectionLostMidRPCEndsItUnavailableAndTheNextRPCReconnects() async throws {
        let pair = try await GRPCPair()
        let streaming = Task {
            try await pair.grpcClient.serverStreaming(
                request: ClientRequest(message: ProbeService.Number(value: 1_000_000)), descriptor: ProbeService.count,
                serializer: JSONMessageCoder<ProbeService.Number>(), deserializer: JSONMessageCoder<ProbeService.Number>(),
                options: .defaults
            ) { response in try await response.messages.reduce(0) { count, _ in count + 1 } }
        }
        #expect(await eventually { pair.service.countSent.withLock { $0 } > 50 }, "the stream is under way")
        let connection = try #require(await pair.client.connection(to: pair.server.peerID))
        await connection.close()
        let result = await streaming.result
        #expect(throws: RPCError.self) { try result.get() }
        if case .failure(let error as RPCError) = result {
            #expect(error.code == .unavailable, "\(error)")
        }
        // The node connects again for the next RPC, and the transport opens gRPC on it.
        let seen = try await pair.echo("again")
        #expect(seen.text == "again")
        let newConnection = try #require(await pair.client.connection(to: pair.server.peerID))
        #expect(newConnection !== connection)
        await pair.close()
    }

    @Test func anUnreachablePeerFailsUnavailable() async throws {
        let client = try await GRPCPair.node()
        let nobody = PrivateKey.generate().peerID
        let error = await #expect(throws: RPCError.self) {
            try await withGRPCClient(transport: .punch(node: client, peer: nobody)) { grpc in
                try await grpc.unary(
                    request: ClientRequest(message: ProbeService.Text(text: "x")), descriptor: ProbeService.echo,
                    serializer: JSONMessageCoder<ProbeService.Text>(), deserializer: JSONMessageCoder<ProbeService.Seen>(),
                    options: .defaults
                ) { try $0.message }
            }
        }
        #expect(error?.code == .unavailable)
        await client.shutdown()
    }

    @Test func aServerThatStopsServingRemovesItsProtocol() async throws {
        let pair = try await GRPCPair()
        #expect(await eventually { pair.server.host.protocols.contains(PunchGRPC.protocolID) })
        pair.grpcServer.beginGracefulShutdown()
        #expect(await eventually { !pair.server.host.protocols.contains(PunchGRPC.protocolID) })
        await pair.close()
    }
}

/// Waits (bounded) until `condition` holds; returns whether it did.
func eventually(within seconds: Double = 10, _ condition: () async -> Bool) async -> Bool {
    let deadline = ContinuousClock.now + .seconds(seconds)
    while ContinuousClock.now < deadline {
        if await condition() { return true }
        try? await Task.sleep(for: .milliseconds(20))
    }
    return await condition()
}
