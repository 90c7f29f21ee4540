import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore
import PunchCrypto
import PunchTransport
import PunchWire

/// What one AutoNAT v2 server found about one of our addresses.
public struct AutoNATCheckResult: Sendable {
    /// The outcome, by the spec's statuses.
    public enum Status: String, Sendable, Hashable, Codable {
        /// The server dialed the address and delivered our nonce on the dial-back stream
        /// (`DialStatus` `OK`, nonce verified).
        case reachable
        /// The server could not connect to the address (`E_DIAL_ERROR`).
        case unreachable
        /// The server connected but could not deliver the nonce (`E_DIAL_BACK_ERROR`).
        case dialBackFailed = "dial_back_failed"
        /// The server would not dial this address (`E_DIAL_REFUSED`, or it picked a later one).
        case refused
        /// The server did not serve the request: rate or resource limits (`E_REQUEST_REJECTED`).
        case rejected
        /// The exchange failed: see ``AutoNATCheckResult/error``.
        case failed
    }

    /// The address asked about.
    public var address: Multiaddr
    /// The outcome.
    public var status: Status
    /// The server that answered.
    public var server: PeerID
    /// The dial data we sent for this address (0 when the server did not ask).
    public var dialDataBytes: Int
    /// Where the dial-back with our nonce came from (the server's end), if it came.
    public var dialBackRemoteAddress: Multiaddr?
    /// Where the dial-back arrived (our end: the address the server actually reached).
    public var dialBackLocalAddress: Multiaddr?
    /// How much dial data we had sent when the dial-back arrived (a server must not dial before
    /// it has all it asked for).
    public var dialDataBytesBeforeDialBack: Int?
    /// Why the check failed, for ``Status-swift.enum/failed``.
    public var error: DiscoveryError?

    /// `true` for ``Status-swift.enum/reachable``, `false` for
    /// ``Status-swift.enum/unreachable``, `nil` when the server did not find out.
    public var reachable: Bool? {
        switch status {
        case .reachable: true
        case .unreachable: false
        default: nil
        }
    }
}

/// An AutoNAT v2 client (libp2p/specs autonat/autonat-v2.md): asks servers to dial our
/// addresses back, checks the nonce that comes back, and aggregates the verdicts of distinct
/// servers per address.
///
/// ```swift
/// let client = try AutoNATClient(host: host)
/// let connection = try await host.dial(serverAddress)
/// for result in try await client.check(addresses: host.listenAddresses, via: connection) {
///     print(result.address, result.status)
/// }
/// ```
///
/// The client serves `/libp2p/autonat/2/dial-back` on its host (one client per host). A
/// dial-back whose nonce is not one of ours is discarded unanswered.
public final class AutoNATClient: Sendable {
    private struct Pending: Sendable {
        var dialDataSent = 0
        var dialBackRemote: Multiaddr?
        var dialBackLocal: Multiaddr?
        var dialDataBeforeDialBack: Int?
        var verified = false
    }

    private struct State: Sendable {
        var pending: [UInt64: Pending] = [:]
        var tracker: AddressReachabilityTracker
        var ignoredDialBacks = 0
    }

    /// The configuration the client runs with.
    public let configuration: AutoNATClientConfiguration
    /// Changes of an address's aggregate reachability (see
    /// ``AutoNATClientConfiguration/confirmations``); the newest 64 are buffered.
    public let reachabilityUpdates: AsyncStream<AddressReachabilityUpdate>
    private let continuation: AsyncStream<AddressReachabilityUpdate>.Continuation
    private let host: PunchHost
    private let state: NIOLockedValueBox<State>
    private let logger: Logger

    /// Creates a client and serves the dial-back protocol on `host`.
    ///
    /// - Throws: ``DiscoveryError`` `.invalidConfiguration`.
    public init(
        host: PunchHost, configuration: AutoNATClientConfiguration = AutoNATClientConfiguration(),
        logger: Logger = Logger(label: "punch.autonat.client", factory: { _ in SwiftLogNoOpLogHandler() })
    ) throws {
        try configuration.validate()
        self.host = host
        self.configuration = configuration
        self.logger = logger
        self.state = NIOLockedValueBox(
            State(
                tracker: AddressReachabilityTracker(
                    confirmations: configuration.confirmations, maximumAddresses: configuration.maximumTrackedAddresses,
                    maximumServersPerAddress: configuration.maximumServersPerAddress)))
        (reachabilityUpdates, continuation) = AsyncStream.makeStream(of: AddressReachabilityUpdate.self, bufferingPolicy: .bufferingNewest(64))
        host.setStreamHandler(for: AutoNATProtocol.dialBack) { [state, configuration, logger] stream in
            await Self.serveDialBack(stream, state: state, configuration: configuration, logger: logger)
        }
    }

    /// Stops serving dial-backs and ends ``reachabilityUpdates``.
    public func stop() {
        host.removeStreamHandler(for: AutoNATProtocol.dialBack)
        continuation.finish()
    }

    /// Dial-backs discarded because their nonce was not one of ours.
    public var ignoredDialBacks: Int { state.withLockedValue { $0.ignoredDialBacks } }

    /// The aggregate reachability of `address` over the servers asked so far.
    public func reachability(of address: Multiaddr) -> AddressReachability {
        state.withLockedValue { $0.tracker.reachability(of: address.withoutPeerID()) }
    }

    /// Asks the server at the other end of `connection` about each of `addresses`.
    ///
    /// The server dials one address per request (the first it is willing to), so the client
    /// asks again with the addresses after it until each has an answer or the server refuses the
    /// rest. Addresses before the one dialed were refused by the server.
    ///
    /// - Parameters:
    ///   - addresses: our addresses, most important first; `/p2p/` suffixes are dropped.
    ///   - connection: a connection to an AutoNAT v2 server.
    /// - Returns: one result per address, in order. Failures of the exchange are results with
    ///   ``AutoNATCheckResult/Status-swift.enum/failed`` and an error, not thrown.
    /// - Throws: ``DiscoveryError`` `.autonatNoAddresses` for an empty list or one longer than
    ///   ``AutoNATClientConfiguration/maximumAddressesPerRequest``.
    public func check(addresses: [Multiaddr], via connection: Connection) async throws -> [AutoNATCheckResult] {
        guard !addresses.isEmpty, addresses.count <= configuration.maximumAddressesPerRequest else {
            throw DiscoveryError(
                .autonatNoAddresses, "ask about 1…\(configuration.maximumAddressesPerRequest) addresses, not \(addresses.count)")
        }
        let server = connection.remotePeerID
        var remaining = addresses.map { $0.withoutPeerID() }
        var results: [AutoNATCheckResult] = []
        func result(_ address: Multiaddr, _ status: AutoNATCheckResult.Status, error: DiscoveryError? = nil) -> AutoNATCheckResult {
            AutoNATCheckResult(address: address, status: status, server: server, dialDataBytes: 0, error: error)
        }
        while !remaining.isEmpty {
            let answer = await ask(remaining, via: connection)
            switch answer {
            case .tested(let index, var tested):
                results += remaining[..<index].map { result($0, .refused) }
                tested.address = remaining[index]
                results.append(tested)
                remaining.removeFirst(index + 1)
            case .refusedAll:
                results += remaining.map { result($0, .refused) }
                remaining = []
            case .rejected:
                results += remaining.map { result($0, .rejected) }
                remaining = []
            case .failed(let error):
                results += remaining.map { result($0, .failed, error: error) }
                remaining = []
            }
        }
        for tested in results {
            guard let reachable = tested.reachable else { continue }
            if let update = state.withLockedValue({ $0.tracker.record(tested.address, server: server, reachable: reachable) }) {
                continuation.yield(update)
            }
        }
        return results
    }

    private enum Answer {
        case tested(index: Int, AutoNATCheckResult)
        case refusedAll
        case rejected
        case failed(DiscoveryError)
    }

    /// One `DialRequest` on a new stream.
    private func ask(_ addresses: [Multiaddr], via connection: Connection) async -> Answer {
        var nonce: UInt64 = 0
        let registered = state.withLockedValue { state -> Bool in
            guard state.pending.count < configuration.maximumPendingChecks else { return false }
            repeat { nonce = UInt64.random(in: 1...UInt64.max) } while state.pending[nonce] != nil
            state.pending[nonce] = Pending()
            return true
        }
        guard registered else {
            return .failed(DiscoveryError(.autonatTooManyChecks, "\(configuration.maximumPendingChecks) AutoNAT checks are already running"))
        }
        defer { _ = state.withLockedValue { $0.pending.removeValue(forKey: nonce) } }
        let server = connection.remotePeerID
        do {
            let stream = try await connection.openStream(protocol: AutoNATProtocol.dialRequest)
            return try await stream.channel.executeThenClose { inbound, outbound in
                var request = PBAutoNATv2DialRequest()
                request.addrs = addresses.map { Data($0.bytes) }
                request.nonce = nonce
                try await outbound.write(try AutoNATFraming.message(.dialRequest(request)))
                var reader = AutoNATMessageReader<PBAutoNATv2Message>(
                    stream, inbound: inbound, maximumLength: configuration.maximumMessageLength, timeout: configuration.responseTimeout)
                var askedForData = false
                while true {
                    let message = try await reader.next()
                    switch message.msg {
                    case .dialDataRequest(let dataRequest) where !askedForData:
                        askedForData = true
                        try await sendDialData(dataRequest, addressCount: addresses.count, nonce: nonce, outbound: outbound)
                    case .dialResponse(let response):
                        // "The client MUST close the stream after receiving the response."
                        return try interpret(response, addresses: addresses, nonce: nonce, server: server)
                    default:
                        throw DiscoveryError(
                            .autonatUnexpectedMessage, "the server sent \(AutoNATServerStateMachine.name(message)) on the dial-request stream")
                    }
                }
            }
        } catch let error as DiscoveryError {
            return .failed(error)
        } catch {
            return .failed(DiscoveryError(.autonatStreamClosed, "the dial-request stream failed: \(error)"))
        }
    }

    /// Pays the dial data the server asked for, in chunks of at most 4096 bytes.
    private func sendDialData(
        _ request: PBAutoNATv2DialDataRequest, addressCount: Int, nonce: UInt64, outbound: NIOAsyncChannelOutboundWriter<ByteBuffer>
    ) async throws {
        guard request.addrIdx < addressCount else {
            throw DiscoveryError(.autonatMalformedMessage, "DialDataRequest names address \(request.addrIdx) of \(addressCount)")
        }
        // "If the client rejects the cost, the client resets the stream": the stream closes.
        guard request.numBytes <= UInt64(configuration.maximumDialDataBytes) else {
            throw DiscoveryError(
                .autonatDialDataRefused,
                "the server asked for \(request.numBytes) bytes of dial data; the limit is \(configuration.maximumDialDataBytes)")
        }
        var chunk = PBAutoNATv2DialDataResponse()
        chunk.data = Data(count: AutoNATProtocol.maximumDialDataChunk)
        // One serialized chunk reused for every message; the last may overshoot (the spec allows it).
        let framed = try AutoNATFraming.message(.dialDataResponse(chunk))
        var sent = 0
        while sent < Int(request.numBytes) {
            try await outbound.write(framed)
            sent += AutoNATProtocol.maximumDialDataChunk
            let total = sent
            state.withLockedValue { $0.pending[nonce]?.dialDataSent = total }
        }
    }

    private func interpret(_ response: PBAutoNATv2DialResponse, addresses: [Multiaddr], nonce: UInt64, server: PeerID) throws -> Answer {
        let pending = state.withLockedValue { $0.pending[nonce] } ?? Pending()
        switch response.status {
        case .ok:
            break
        case .eDialRefused:
            return .refusedAll
        case .eRequestRejected:
            return .rejected
        case .eInternalError:
            return .failed(DiscoveryError(.autonatMalformedMessage, "the server reported E_INTERNAL_ERROR"))
        case .UNRECOGNIZED(let value):
            // "Implementations MUST discard responses with status codes they do not understand."
            return .failed(DiscoveryError(.autonatMalformedMessage, "unknown DialResponse status \(value); discarded"))
        }
        let index = Int(response.addrIdx)
        guard index < addresses.count else {
            throw DiscoveryError(.autonatMalformedMessage, "DialResponse names address \(index) of \(addresses.count)")
        }
        var result = AutoNATCheckResult(
            address: addresses[index], status: .failed, server: server, dialDataBytes: pending.dialDataSent,
            dialBackRemoteAddress: pending.dialBackRemote, dialBackLocalAddress: pending.dialBackLocal,
            dialDataBytesBeforeDialBack: pending.dialDataBeforeDialBack)
        switch response.dialStatus {
        case .ok:
            // "The client MUST check that the nonce received in the DialBack is the same as the
            // nonce it sent in the DialRequest."
            if pending.verified {
                result.status = .reachable
            } else {
                result.error = DiscoveryError(.autonatUnverified, "the server says it dialed \(addresses[index]), but no dial-back with our nonce arrived")
            }
        case .eDialError:
            result.status = .unreachable
        case .eDialBackError:
            result.status = .dialBackFailed
        case .unused, .UNRECOGNIZED:
            result.error = DiscoveryError(.autonatMalformedMessage, "DialResponse OK with dial status \(response.dialStatus.rawValue)")
        }
        return .tested(index: index, result)
    }

    /// Answers a dial-back whose nonce is ours; discards any other unanswered.
    private static func serveDialBack(
        _ stream: HostStream, state: NIOLockedValueBox<State>, configuration: AutoNATClientConfiguration, logger: Logger
    ) async {
        let connection = stream.connection
        do {
            try await stream.channel.executeThenClose { inbound, outbound in
                var reader = AutoNATMessageReader<PBAutoNATv2DialBack>(
                    stream, inbound: inbound, maximumLength: 64, timeout: configuration.responseTimeout)
                let dialBack = try await reader.next()
                let known = state.withLockedValue { state -> Bool in
                    guard var pending = state.pending[dialBack.nonce] else {
                        state.ignoredDialBacks += 1
                        return false
                    }
                    pending.verified = true
                    pending.dialBackRemote = connection.remoteAddress
                    pending.dialBackLocal = connection.localAddress
                    pending.dialDataBeforeDialBack = pending.dialDataSent
                    state.pending[dialBack.nonce] = pending
                    return true
                }
                guard known else {
                    logger.debug("discarded a dial-back with an unknown nonce", metadata: ["from": "\(connection.remoteAddress.map { "\($0)" } ?? "?")"])
                    return
                }
                var response = PBAutoNATv2DialBackResponse()
                response.status = .ok
                try await outbound.write(try AutoNATFraming.frame(response))
                // "The client MUST close this stream after sending the response."
            }
        } catch {
            logger.debug("dial-back stream failed", metadata: ["error": "\(error)"])
        }
    }
}
