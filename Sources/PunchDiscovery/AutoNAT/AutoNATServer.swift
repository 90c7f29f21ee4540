import Logging
import NIOConcurrencyHelpers
import NIOCore
import PunchCrypto
import PunchTransport
import PunchWire

/// What an ``AutoNATServer`` did with one request: for logs, metrics and the CLI's `--json`.
public struct AutoNATServerRecord: Sendable {
    /// The client.
    public var client: PeerID
    /// The address dialed back (with the client's `/p2p/`), or `nil` if none was.
    public var dialed: Multiaddr?
    /// The dial data the client sent (0 when the address had the client's observed IP).
    public var dialDataBytes: Int
    /// The `DialResponse` status sent, by its spec name (`OK`, `E_DIAL_REFUSED`, …), or `nil` if
    /// the exchange broke off before one was sent.
    public var responseStatus: String?
    /// The `DialStatus` sent (`OK`, `E_DIAL_ERROR`, `E_DIAL_BACK_ERROR`, `UNUSED`).
    public var dialStatus: String?
    /// Our end of the dial-back connection: never the listening port.
    public var dialBackLocalAddress: Multiaddr?
    /// Why the exchange broke off, if it did.
    public var error: DiscoveryError?
}

/// An AutoNAT v2 server (libp2p/specs autonat/autonat-v2.md): it dials clients back on the
/// address they ask about, from an ephemeral port on a separate connection, and tells them
/// whether that worked.
///
/// ```swift
/// let host = PunchHost(configuration: HostConfiguration(identity: .generate()))
/// try await host.listen(Multiaddr("/ip4/0.0.0.0/tcp/4001"))
/// let server = try AutoNATServer.serve(on: host)
/// ```
///
/// Every request runs ``AutoNATServerStateMachine``; admission (rate and concurrency limits) is
/// ``AutoNATServerAdmission``. Both are configured by ``AutoNATServerConfiguration``.
public final class AutoNATServer: Sendable {
    /// The configuration the server runs with.
    public let configuration: AutoNATServerConfiguration
    private let host: PunchHost
    private let admission: NIOLockedValueBox<AutoNATServerAdmission>
    private let onRequest: @Sendable (AutoNATServerRecord) -> Void
    private let logger: Logger

    private init(
        host: PunchHost, configuration: AutoNATServerConfiguration, logger: Logger,
        onRequest: @escaping @Sendable (AutoNATServerRecord) -> Void
    ) {
        self.host = host
        self.configuration = configuration
        self.admission = NIOLockedValueBox(AutoNATServerAdmission(configuration: configuration))
        self.logger = logger
        self.onRequest = onRequest
    }

    /// Serves `/libp2p/autonat/2/dial-request` on `host` until ``stop()``.
    ///
    /// - Parameters:
    ///   - host: the host whose peers may ask; dial-backs leave from it too, from ephemeral ports.
    ///   - configuration: limits and policy.
    ///   - logger: where requests are logged at `.debug`.
    ///   - onRequest: told of every request's outcome.
    /// - Returns: the running server.
    /// - Throws: ``DiscoveryError`` `.invalidConfiguration`.
    @discardableResult
    public static func serve(
        on host: PunchHost, configuration: AutoNATServerConfiguration = AutoNATServerConfiguration(),
        logger: Logger = Logger(label: "punch.autonat.server", factory: { _ in SwiftLogNoOpLogHandler() }),
        onRequest: @escaping @Sendable (AutoNATServerRecord) -> Void = { _ in }
    ) throws -> AutoNATServer {
        try configuration.validate()
        let server = AutoNATServer(host: host, configuration: configuration, logger: logger, onRequest: onRequest)
        host.setStreamHandler(for: AutoNATProtocol.dialRequest) { [server] stream in
            await server.handle(stream)
        }
        return server
    }

    /// Stops serving: peers proposing the protocol get `na`. Requests in progress finish.
    public func stop() {
        host.removeStreamHandler(for: AutoNATProtocol.dialRequest)
    }

    /// Requests in progress.
    public var activeRequests: Int { admission.withLockedValue { $0.active } }

    private func handle(_ stream: HostStream) async {
        let connection = stream.connection
        let client = connection.remotePeerID
        let admitted = admission.withLockedValue { $0.admit(client, now: .now()) }
        defer { if admitted { admission.withLockedValue { $0.finish(client) } } }
        var record = AutoNATServerRecord(client: client, dialDataBytes: 0)
        // The observed IP is the far end of the client's own connection; over a relay there is
        // none, and every dial costs dial data.
        let observedIP = connection.path == .direct ? connection.remoteAddress?.ipAddress : nil
        // The families the server listens on stand for those it has connectivity in; a host
        // without listeners is assumed to dial both.
        let families = Set(host.listenEndpoints.map(\.address.isIPv4))
        var machine = AutoNATServerStateMachine(
            configuration: configuration, client: client, observedIP: observedIP,
            dialsIPv4: families.isEmpty || families.contains(true), dialsIPv6: families.isEmpty || families.contains(false))
        do {
            try await stream.channel.executeThenClose { inbound, outbound in
                var reader = AutoNATMessageReader<PBAutoNATv2Message>(
                    stream, inbound: inbound, maximumLength: configuration.maximumMessageLength, timeout: configuration.messageTimeout)
                let first = try await reader.next()
                var action: AutoNATServerStateMachine.Action
                if admitted {
                    action = try machine.receive(first)
                } else {
                    // "E_REQUEST_REJECTED: The server didn't serve the request because of rate
                    // limiting, resource limit reached or blacklisting."
                    action = machine.reject()
                }
                while true {
                    switch action {
                    case .respond(let status, let index, let dialStatus):
                        var response = PBAutoNATv2DialResponse()
                        response.status = status
                        response.addrIdx = index
                        response.dialStatus = dialStatus
                        try await outbound.write(try AutoNATFraming.message(.dialResponse(response)))
                        record.responseStatus = Self.name(status)
                        record.dialStatus = Self.name(dialStatus)
                        // "The server MUST close the stream after sending the response."
                        return
                    case .requestDialData(let index, let bytes):
                        var request = PBAutoNATv2DialDataRequest()
                        request.addrIdx = index
                        request.numBytes = bytes
                        try await outbound.write(try AutoNATFraming.message(.dialDataRequest(request)))
                        action = try machine.receive(try await reader.next())
                    case .awaitDialData:
                        action = try machine.receive(try await reader.next())
                    case .dialBack(let address, _, let nonce):
                        record.dialDataBytes = machine.dialDataReceived
                        record.dialed = address
                        let (outcome, local) = await dialBack(address, nonce: nonce)
                        record.dialBackLocalAddress = local
                        action = machine.dialBackFinished(outcome)
                    }
                }
            }
        } catch let error as DiscoveryError {
            record.error = error
        } catch {
            record.error = DiscoveryError(.autonatStreamClosed, "the dial-request stream failed: \(error)")
        }
        record.dialDataBytes = machine.dialDataReceived
        logger.debug(
            "autonat request", metadata: ["client": "\(client)", "dialed": "\(record.dialed.map { "\($0)" } ?? "-")",
                                          "status": "\(record.responseStatus ?? "-")", "dial_status": "\(record.dialStatus ?? "-")"])
        onRequest(record)
    }

    /// Dials `address` on a new connection from an ephemeral port, sends the nonce on the
    /// dial-back stream and waits for the acknowledgement; then closes that connection.
    private func dialBack(_ address: Multiaddr, nonce: UInt64) async -> (AutoNATServerStateMachine.DialBackOutcome, Multiaddr?) {
        let connection: Connection
        do {
            // "Servers SHOULD NOT reuse their listening port when making a dial back"
            // (autonat-v2.md, "Implementation Suggestions"): no accidental hole punch.
            connection = try await host.dial(address, fromListenPort: false)
        } catch {
            logger.debug("autonat dial-back failed", metadata: ["address": "\(address)", "error": "\(error)"])
            return (.dialFailed, nil)
        }
        let local = connection.localAddress
        let outcome: AutoNATServerStateMachine.DialBackOutcome
        do {
            let stream = try await connection.openStream(protocol: AutoNATProtocol.dialBack)
            try await stream.channel.executeThenClose { inbound, outbound in
                var dialBack = PBAutoNATv2DialBack()
                dialBack.nonce = nonce
                try await outbound.write(try AutoNATFraming.frame(dialBack))
                var reader = AutoNATMessageReader<PBAutoNATv2DialBackResponse>(
                    stream, inbound: inbound, maximumLength: 64, timeout: configuration.dialBackTimeout)
                let response = try await reader.next()
                guard response.status == .ok else {
                    throw DiscoveryError(.autonatMalformedMessage, "DialBackResponse status \(response.status.rawValue)")
                }
            }
            outcome = .succeeded
        } catch {
            logger.debug("autonat dial-back stream failed", metadata: ["address": "\(address)", "error": "\(error)"])
            outcome = .dialBackFailed
        }
        // The acknowledgement tells the server the nonce was delivered, so it may close the
        // connection (autonat-v2.md, "AutoNAT V2 Protocol").
        await connection.close()
        return (outcome, local)
    }

    static func name(_ status: PBAutoNATv2DialResponse.ResponseStatus) -> String {
        switch status {
        case .ok: "OK"
        case .eDialRefused: "E_DIAL_REFUSED"
        case .eRequestRejected: "E_REQUEST_REJECTED"
        case .eInternalError: "E_INTERNAL_ERROR"
        case .UNRECOGNIZED(let value): "UNRECOGNIZED(\(value))"
        }
    }

    static func name(_ status: PBAutoNATv2DialStatus) -> String {
        switch status {
        case .ok: "OK"
        case .eDialError: "E_DIAL_ERROR"
        case .eDialBackError: "E_DIAL_BACK_ERROR"
        case .unused: "UNUSED"
        case .UNRECOGNIZED(let value): "UNRECOGNIZED(\(value))"
        }
    }
}
