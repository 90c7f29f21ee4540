import Logging
import NIOCore
import NIOPosix
import PunchWire

/// A successful Binding transaction.
public struct STUNBindingResponse: Sendable, Hashable {
    /// The whole response.
    public var message: STUNMessage
    /// Where the request was sent.
    public var server: IPEndpoint
    /// Where the response came from (differs from ``server`` after a CHANGE-REQUEST).
    public var source: IPEndpoint
    /// From the first request to the response, retransmissions included.
    public var roundTrip: TimeAmount

    /// The reflexive address: XOR-MAPPED-ADDRESS, else MAPPED-ADDRESS (RFC 8489 §14.1).
    public var mappedAddress: IPEndpoint? { message.reflexiveAddress }
    /// OTHER-ADDRESS: the server's alternate IP and port, if it supports RFC 5780.
    public var otherAddress: IPEndpoint? { message.otherAddress }
    /// RESPONSE-ORIGIN: the address the server says it answered from (RFC 5780 §7.3).
    public var responseOrigin: IPEndpoint? { message.responseOrigin }
}

/// A STUN client (RFC 8489) on one UDP socket: Binding requests with retransmission, to any
/// number of servers at once.
///
/// The socket is its own (``bind(to:configuration:group:logger:)``) or one shared with other
/// protocols (``install(on:configuration:logger:)``): then only STUN responses are taken out of
/// the pipeline, everything else goes on to the handlers after the client's.
///
/// ```swift
/// let client = try await STUNClient.bind()
/// let response = try await client.binding(to: try STUNServerAddress("203.0.113.10:3478"))
/// print(response.mappedAddress!)   // the public address and port the NAT gave this socket
/// try await client.close()
/// ```
public final class STUNClient: Sendable {
    /// The socket.
    public let channel: any Channel
    /// How transactions are retransmitted and bounded.
    public let configuration: STUNClientConfiguration
    private let handler: NIOLoopBound<STUNClientHandler>
    private let ownsChannel: Bool

    private init(channel: any Channel, handler: NIOLoopBound<STUNClientHandler>, configuration: STUNClientConfiguration, ownsChannel: Bool) {
        self.channel = channel
        self.handler = handler
        self.configuration = configuration
        self.ownsChannel = ownsChannel
    }

    /// Binds a UDP socket of its own and returns a client on it.
    /// - Parameters:
    ///   - address: the local address; the default is any IPv4 address, an ephemeral port. Bind
    ///     `[::]:0` for IPv6 servers.
    ///   - configuration: retransmission and limits.
    ///   - group: the event loops.
    ///   - logger: where the client logs (at `.debug` and `.trace`).
    /// - Throws: ``DiscoveryError`` `.invalidConfiguration`, or NIO's error if the bind fails.
    public static func bind(
        to address: IPEndpoint = IPEndpoint(address: .v4(.init(0, 0, 0, 0)), port: 0),
        configuration: STUNClientConfiguration = STUNClientConfiguration(),
        group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        logger: Logger = Logger(label: "punch.stun.client")
    ) async throws -> STUNClient {
        try configuration.validate()
        let socketAddress = try address.socketAddress()
        let channel = try await DatagramBootstrap(group: group)
            .channelOption(.socketOption(.so_reuseaddr), value: 1)
            .bind(to: socketAddress).get()
        do {
            return try await install(on: channel, configuration: configuration, logger: logger, ownsChannel: true)
        } catch {
            try? await channel.close()
            throw error
        }
    }

    /// Puts a client at the front of an existing UDP channel's pipeline, so the socket is shared:
    /// STUN responses are consumed by the client, every other datagram (and STUN requests no
    /// transaction waits for) goes on to the next handler. ``close()`` then removes the client and
    /// leaves the channel open.
    /// - Throws: ``DiscoveryError`` `.invalidConfiguration`, or the pipeline's error.
    public static func install(
        on channel: any Channel,
        configuration: STUNClientConfiguration = STUNClientConfiguration(),
        logger: Logger = Logger(label: "punch.stun.client")
    ) async throws -> STUNClient {
        try configuration.validate()
        return try await install(on: channel, configuration: configuration, logger: logger, ownsChannel: false)
    }

    private static func install(on channel: any Channel, configuration: STUNClientConfiguration, logger: Logger, ownsChannel: Bool) async throws -> STUNClient {
        try await channel.eventLoop.submit {
            let handler = STUNClientHandler(configuration: configuration, logger: logger)
            try channel.pipeline.syncOperations.addHandler(handler, position: .first)
            return STUNClient(
                channel: channel, handler: NIOLoopBound(handler, eventLoop: channel.eventLoop), configuration: configuration,
                ownsChannel: ownsChannel)
        }.get()
    }

    /// The socket's local address.
    public var localAddress: IPEndpoint? { channel.localAddress.flatMap(IPEndpoint.init) }

    /// Whether the socket is IPv4 (else IPv6).
    private var isIPv4: Bool { channel.localAddress?.protocol != .inet6 }

    /// Resolves a server's name to an address of the socket's family.
    /// - Throws: ``DiscoveryError/Code/stunResolutionFailed`` or
    ///   ``DiscoveryError/Code/stunAddressFamilyMismatch``.
    public func resolve(_ server: STUNServerAddress) async throws -> IPEndpoint {
        try await server.resolve(ipv4: isIPv4)
    }

    /// Resolves `server` and runs a Binding transaction with it.
    /// - Throws: as ``binding(to:attributes:expectingResponseFrom:)``, and resolution errors.
    public func binding(to server: STUNServerAddress, attributes: [STUNAttribute] = []) async throws -> STUNBindingResponse {
        try await binding(to: try await resolve(server), attributes: attributes)
    }

    /// Sends a Binding request to `server` and waits for its success response, retransmitting
    /// per ``configuration``.
    /// - Parameters:
    ///   - server: where to send the request.
    ///   - attributes: extra request attributes, such as CHANGE-REQUEST.
    ///   - source: where the response must come from; the default is `server`. After a
    ///     CHANGE-REQUEST it is the server's changed address (RFC 5780 §4.4).
    /// - Returns: the response.
    /// - Throws: ``DiscoveryError``: `.stunTimeout`, `.stunErrorResponse` (with the server's
    ///   ERROR-CODE), `.stunUnknownAttributes`, `.stunTooManyTransactions`, `.stunAddressFamilyMismatch`, `.stunSendFailed`, `.stunClientClosed`;
    ///   `CancellationError` if the task is cancelled.
    public func binding(to server: IPEndpoint, attributes: [STUNAttribute] = [], expectingResponseFrom source: IPEndpoint? = nil) async throws -> STUNBindingResponse {
        var request = STUNMessage(type: .bindingRequest, attributes: attributes)
        if let software = configuration.software { request.attributes.append(.software(software)) }
        let outcome = try await transact(request, to: server, expectedSource: source ?? server, expectation: .response)
        let message = outcome.message
        if message.type.messageClass == .errorResponse {
            let error = message.errorCode.map { "\($0)" } ?? "no ERROR-CODE"
            throw DiscoveryError(.stunErrorResponse, "the STUN server \(server) answered the Binding request with an error: \(error)")
        }
        let unknown = message.unknownComprehensionRequiredAttributes
        guard unknown.isEmpty else {
            // RFC 8489 §7.3.3: a success response with unknown comprehension-required attributes fails.
            throw DiscoveryError(
                .stunUnknownAttributes,
                "the response from \(server) has comprehension-required attributes this client does not know: \(unknown.map { "0x" + String($0, radix: 16) })")
        }
        return STUNBindingResponse(message: message, server: server, source: outcome.source, roundTrip: outcome.roundTrip)
    }

    /// Sends a Binding request to `destination` and reports whether the request itself comes
    /// back to this socket, from any source: the RFC 5780 §4.5 hairpinning test, with the
    /// client's own mapped address as `destination`.
    /// - Returns: `true` if the request looped back before the retransmissions ran out.
    /// - Throws: ``DiscoveryError`` `.stunTooManyTransactions` or `.stunClientClosed`.
    public func echoProbe(to destination: IPEndpoint) async throws -> Bool {
        let request = STUNMessage(type: .bindingRequest)
        do {
            _ = try await transact(request, to: destination, expectedSource: nil, expectation: .echo)
            return true
        } catch let error as DiscoveryError where [.stunTimeout, .stunSendFailed, .stunAddressFamilyMismatch].contains(error.code) {
            return false
        }
    }

    /// Counters of the transactions and datagrams so far.
    public func statistics() async throws -> STUNTransactionStateMachine.Statistics {
        let handler = self.handler
        return try await channel.eventLoop.submit { handler.value.statistics }.get()
    }

    /// Fails every outstanding transaction with `.stunClientClosed`, and closes the socket if the
    /// client bound it (or removes the client from a shared channel).
    public func close() async throws {
        if ownsChannel {
            try await channel.close()
        } else {
            let handler = self.handler
            try await channel.eventLoop.flatSubmit {
                self.channel.pipeline.syncOperations.removeHandler(handler.value)
            }.get()
        }
    }

    private func transact(
        _ request: STUNMessage, to destination: IPEndpoint, expectedSource: IPEndpoint?, expectation: STUNTransactionStateMachine.Expectation
    ) async throws -> STUNTransactionOutcome {
        let bytes = try request.encoded(fingerprint: configuration.fingerprint)
        let id = request.transactionID
        let handler = self.handler
        let eventLoop = channel.eventLoop
        let promise = eventLoop.makePromise(of: STUNTransactionOutcome.self)
        eventLoop.execute {
            handler.value.start(
                id: id, request: bytes, destination: destination, expectedSource: expectedSource, expectation: expectation, promise: promise)
        }
        return try await withTaskCancellationHandler {
            try await promise.futureResult.get()
        } onCancel: {
            eventLoop.execute { handler.value.cancel(id) }
        }
    }
}
