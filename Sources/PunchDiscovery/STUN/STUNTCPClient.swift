import NIOCore
import NIOPosix
import PunchWire

/// STUN Binding over TCP (RFC 8489 §6.2.2): one request on a fresh TCP connection, optionally
/// from a given local address and port, which may be shared with a listener (SO_REUSEADDR and
/// SO_REUSEPORT). From a node's listening port this yields the reflexive TCP address a NAT gives
/// that port: the address a TCP hole punch (DCUtR) offers.
///
/// Over TCP a request is never retransmitted (TCP is reliable); the transaction fails when no
/// response has come within `timeout`.
///
/// ```swift
/// let response = try await STUNTCPClient.binding(to: server, from: try IPEndpoint("0.0.0.0:4001"))
/// print(response.mappedAddress!)   // 203.0.113.1:4001 behind a port-preserving NAT
/// ```
public enum STUNTCPClient {
    /// The default timeout: 5 seconds (the RFC's Ti of 39.5 s is meant for the whole retransmission
    /// schedule of slow links; a TCP handshake plus one request either fits in 5 s or the path is
    /// not usable for punching anyway).
    public static let defaultTimeout: TimeAmount = .seconds(5)

    /// Sends one Binding request over a new TCP connection and returns the response.
    ///
    /// - Parameters:
    ///   - server: the STUN server's TCP address.
    ///   - local: the local address and port to connect from (shared with a listener on the same
    ///     port), or `nil` for an ephemeral port.
    ///   - timeout: for the connect and the response together.
    ///   - software: SOFTWARE in the request, or `nil`.
    ///   - maximumMessageLength: the largest response accepted (default
    ///     `STUNMessage.defaultMaximumLength`); a longer one fails the transaction.
    ///   - group: the event loops for the connection.
    /// - Returns: the response; ``STUNBindingResponse/mappedAddress`` is our reflexive TCP address.
    /// - Throws: ``DiscoveryError``: `.stunTimeout`, `.stunSendFailed` (cannot connect or bind),
    ///   `.stunErrorResponse`, `.stunUnknownAttributes`, `.stunMalformedResponse`.
    public static func binding(
        to server: IPEndpoint, from local: IPEndpoint? = nil, timeout: TimeAmount = defaultTimeout, software: String? = "punch",
        maximumMessageLength: Int = STUNMessage.defaultMaximumLength,
        group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton
    ) async throws -> STUNBindingResponse {
        var request = STUNMessage(type: .bindingRequest)
        if let software { request.attributes.append(.software(software)) }
        let bytes = try request.encoded(fingerprint: true)
        let started = NIODeadline.now()
        let eventLoop = group.next()
        let response = eventLoop.makePromise(of: STUNMessage.self)
        let transactionID = request.transactionID
        var bootstrap = ClientBootstrap(group: eventLoop)
            .connectTimeout(timeout)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(
                        ResponseReader(transactionID: transactionID, maximumMessageLength: maximumMessageLength, response: response))
                }
            }
        if let local {
            bootstrap = bootstrap
                .channelOption(.socketOption(.so_reuseaddr), value: 1)
                .channelOption(ChannelOptions.Types.SocketOption(level: .socket, name: .init(rawValue: SO_REUSEPORT)), value: 1)
                .bind(to: try local.socketAddress())
        }
        let channel: any Channel
        do {
            channel = try await bootstrap.connect(to: try server.socketAddress()).get()
        } catch {
            response.fail(error)
            throw DiscoveryError(.stunSendFailed, "cannot connect to the STUN server \(server) over TCP\(local.map { " from \($0)" } ?? ""): \(error)")
        }
        let deadline = eventLoop.scheduleTask(deadline: started + timeout) {
            response.fail(DiscoveryError(.stunTimeout, "no STUN response from \(server) over TCP within \(timeout)"))
        }
        defer {
            deadline.cancel()
            channel.close(promise: nil)
        }
        channel.writeAndFlush(channel.allocator.buffer(bytes: bytes), promise: nil)
        let message: STUNMessage
        do {
            message = try await response.futureResult.get()
        } catch let error as DiscoveryError {
            throw error
        } catch {
            throw DiscoveryError(.stunMalformedResponse, "the STUN server \(server) sent over TCP what is not a STUN response: \(error)")
        }
        if message.type.messageClass == .errorResponse {
            throw DiscoveryError(
                .stunErrorResponse, "the STUN server \(server) answered the Binding request over TCP with an error: \(message.errorCode.map { "\($0)" } ?? "no ERROR-CODE")")
        }
        let unknown = message.unknownComprehensionRequiredAttributes
        guard unknown.isEmpty else {
            throw DiscoveryError(
                .stunUnknownAttributes,
                "the response from \(server) has comprehension-required attributes this client does not know: \(unknown.map { "0x" + String($0, radix: 16) })")
        }
        return STUNBindingResponse(message: message, server: server, source: server, roundTrip: .now() - started)
    }

    /// Reads the one response: frames by the header's length, checks the transaction ID.
    private final class ResponseReader: ChannelInboundHandler {
        typealias InboundIn = ByteBuffer

        let transactionID: STUNTransactionID
        let maximumMessageLength: Int
        let response: EventLoopPromise<STUNMessage>
        private var buffer = ByteBuffer()

        init(transactionID: STUNTransactionID, maximumMessageLength: Int, response: EventLoopPromise<STUNMessage>) {
            self.transactionID = transactionID
            self.maximumMessageLength = maximumMessageLength
            self.response = response
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            var bytes = unwrapInboundIn(data)
            buffer.writeBuffer(&bytes)
            do {
                guard let message = try STUNMessage.decode(from: &buffer, maximumLength: maximumMessageLength) else { return }
                guard message.transactionID == transactionID, message.type.messageClass != .request, message.type.messageClass != .indication else {
                    throw DiscoveryError(.stunMalformedResponse, "a message that does not answer our request (\(message.type))")
                }
                response.succeed(message)
            } catch {
                response.fail(error)
            }
            context.close(promise: nil)
        }

        func channelInactive(context: ChannelHandlerContext) {
            response.fail(DiscoveryError(.stunMalformedResponse, "the STUN server closed the TCP connection without a response"))
        }

        func errorCaught(context: ChannelHandlerContext, error: any Error) {
            response.fail(error)
            context.close(promise: nil)
        }
    }
}
