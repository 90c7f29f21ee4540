import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore
import PunchCrypto
import PunchTransport
import PunchWire

/// What a successful upgrade produced.
public struct HolePunchOutcome: Sendable {
    /// The direct connection (TCP simultaneous open, Noise and yamux on it).
    public let connection: Connection
    /// The attempt that succeeded, from 1; 0 for a direct dial of the addresses the peer advertises,
    /// without a DCUtR exchange (``HolePuncher/dialAdvertisedAddresses(of:host:configuration:)``).
    public let attempt: Int
    /// The relayed round trip measured in that attempt (CONNECT to CONNECT), for the initiator.
    public let roundTrip: Duration?
    /// From the start of the exchange to the direct connection.
    public let elapsed: Duration
    /// The peer's addresses that were dialed.
    public let dialed: [Multiaddr]

    /// An outcome; also for a direct connection the peer opened to us by itself (`attempt` 0).
    public init(connection: Connection, attempt: Int, roundTrip: Duration?, elapsed: Duration, dialed: [Multiaddr]) {
        self.connection = connection
        self.attempt = attempt
        self.roundTrip = roundTrip
        self.elapsed = elapsed
        self.dialed = dialed
    }
}

/// Direct Connection Upgrade through Relay (libp2p/specs relay/DCUtR.md) over TCP: two peers on a
/// relayed connection swap their public addresses and dial each other at the same moment, so
/// their NATs see outgoing SYNs both ways and let a TCP simultaneous open through.
///
/// The peer that accepted the relayed connection ("B" in the spec) calls ``initiate(over:host:localAddresses:configuration:)``;
/// the other serves the protocol with ``serve(on:configuration:localAddresses:onOutcome:)``. In a
/// simultaneous open both sides dial, so the roles of the direct connection come from DCUtR, not
/// from the socket: the side that serves ("A", which dialed through the relay and dials at SYNC)
/// is the client, the Noise initiator and the yamux client; the initiator ("B") is the server
/// py-libp2p 0.8.1 does the same ("the original dialer (DCUtR responder) is the
/// client/initiator and the inbound peer (DCUtR initiator) is the server/responder"), and so does
/// rust-libp2p (the DCUtR initiator dials with `override_role`, as a listener). go-libp2p's
/// holepuncher marks its initiator as the client (`WithSimultaneousConnect(ctx, true, ...)`);
/// against go-libp2p only a punch where one SYN reaches the other side's listener (which then
/// accepts as the server) would work — untested. With mismatched roles both ends run Noise as
/// initiators (or both wait as responders) and the punch fails.
public enum HolePuncher {
    /// Whether our side of the punched connection is the Noise initiator (the client): only
    /// when we are "A", the side that serves DCUtR (DCUtR.md, step 5 and the roles after it).
    static func isSecurityInitiator(asDCUtRInitiator: Bool) -> Bool { !asDCUtRInitiator }

    /// Runs the exchange as its initiator, up to ``HolePunchConfiguration/attempts`` times.
    ///
    /// - Parameters:
    ///   - relayed: the relayed connection to the peer.
    ///   - localAddresses: our public addresses as others observe them (identify's observed
    ///     address from a relay, STUN); filtered before they are sent.
    /// - Throws: ``HolePunchError`` `.failed` after the last attempt, `.noAddresses`, and the
    ///   exchange's errors.
    public static func initiate(
        over relayed: Connection, host: PunchHost, localAddresses: [Multiaddr],
        configuration: HolePunchConfiguration = HolePunchConfiguration()
    ) async throws -> HolePunchOutcome {
        guard relayed.path == .relayed else { throw HolePunchError(.notRelayed, "DCUtR runs over a relayed connection") }
        let ours = HolePunchAddressFilter.usable(
            localAddresses, allowPrivate: configuration.allowPrivateAddresses, allowLoopback: configuration.allowLoopbackAddresses,
            limit: configuration.maximumAddresses)
        let clock = ContinuousClock()
        let started = clock.now
        let logger = configuration.logger.with(peer: relayed.remotePeerID, role: "initiator")
        logger.debug("opening a DCUtR stream", metadata: ["ours": "\(ours)"])
        let stream = try await relayed.openStream(protocol: HolePunchProtocol.id)
        guard !ours.isEmpty else {
            // Close the stream at once, so the peer learns now rather than waiting for a CONNECT.
            try? await stream.channel.channel.close()
            throw HolePunchError(.noAddresses, "no public address of ours to offer (have: \(localAddresses.map { "\($0)" }))")
        }
        return try await stream.channel.executeThenClose { inbound, outbound in
            var reader = MessageReader(inbound, channel: stream.channel.channel, configuration: configuration)
            var lastError: (any Error)?
            for attempt in 1...configuration.attempts {
                // Steps 2-4 of the spec: CONNECT, CONNECT back (RTT), SYNC.
                let sent = clock.now
                logger.debug("sending CONNECT", metadata: ["attempt": "\(attempt)", "since_start": "\(sent - started)"])
                try await outbound.write(try message(.connect, ours))
                let answer = try await reader.next()
                guard answer.type == .connect else {
                    throw HolePunchError(.malformedMessage, "expected CONNECT, got \(answer.type)")
                }
                let roundTrip = clock.now - sent
                let theirs = HolePunchAddressFilter.usable(
                    answer.obsAddrs.compactMap { try? Multiaddr(bytes: Array($0)) },
                    allowPrivate: configuration.allowPrivateAddresses, allowLoopback: configuration.allowLoopbackAddresses,
                    limit: configuration.maximumAddresses)
                logger.debug(
                    "CONNECT answered", metadata: ["attempt": "\(attempt)", "rtt": "\(roundTrip)", "theirs": "\(theirs)"])
                guard !theirs.isEmpty else {
                    throw HolePunchError(.noAddresses, "the peer offered no usable public address")
                }
                // The peer dials the moment SYNC arrives: its SYN may reach our listener first.
                host.expectHolePunch(
                    from: theirs, peer: relayed.remotePeerID, noiseInitiator: isSecurityInitiator(asDCUtRInitiator: true),
                    for: configuration.dialTimeout + .seconds(1))
                try await outbound.write(try message(.sync, []))
                // Step 5: dial after half the round trip, so both SYNs leave at about the same time.
                try await Task.sleep(for: roundTrip / 2)
                do {
                    logger.debug("SYNC sent; dialing", metadata: ["attempt": "\(attempt)"])
                    let connection = try await dialAny(
                        theirs, peer: relayed.remotePeerID, host: host, noiseInitiator: isSecurityInitiator(asDCUtRInitiator: true),
                        configuration: configuration)
                    logger.debug("punched", metadata: ["attempt": "\(attempt)", "remote": "\(connection.remoteAddress.map { "\($0)" } ?? "?")"])
                    return HolePunchOutcome(connection: connection, attempt: attempt, roundTrip: roundTrip, elapsed: clock.now - started, dialed: theirs)
                } catch {
                    logger.debug("attempt failed", metadata: ["attempt": "\(attempt)", "error": "\(error)"])
                    lastError = error
                }
            }
            throw HolePunchError(
                .failed, "no direct connection after \(configuration.attempts) attempts: \(lastError.map { "\($0)" } ?? "no dial")")
        }
    }

    /// Serves DCUtR: answers CONNECT with our addresses and dials the peer's as soon as SYNC
    /// arrives. Only over relayed connections; at most ``HolePunchConfiguration/attempts``
    /// exchanges per stream and ``HolePunchConfiguration/maximumConcurrentExchanges`` at once.
    ///
    /// - Parameters:
    ///   - localAddresses: our public addresses, asked for each exchange.
    ///   - onOutcome: told of each exchange's end, with the relayed connection it ran on.
    public static func serve(
        on host: PunchHost, configuration: HolePunchConfiguration = HolePunchConfiguration(),
        localAddresses: @escaping @Sendable (Connection) async -> [Multiaddr],
        onOutcome: @escaping @Sendable (Connection, Result<HolePunchOutcome, any Error>) -> Void = { _, _ in }
    ) {
        serve(on: host, configuration: configuration, localAddresses: localAddresses, onStart: { _ in }, onOutcome: onOutcome)
    }

    /// As ``serve(on:configuration:localAddresses:onOutcome:)``, and `onStart` is told when an
    /// admitted exchange starts, with its relayed connection (each start is followed by one
    /// `onOutcome`).
    public static func serve(
        on host: PunchHost, configuration: HolePunchConfiguration = HolePunchConfiguration(),
        localAddresses: @escaping @Sendable (Connection) async -> [Multiaddr],
        onStart: @escaping @Sendable (Connection) -> Void,
        onOutcome: @escaping @Sendable (Connection, Result<HolePunchOutcome, any Error>) -> Void
    ) {
        let active = NIOLockedValueBox(0)
        host.setStreamHandler(for: HolePunchProtocol.id) { stream in
            let relayed = stream.connection
            guard relayed.path == .relayed else {
                onOutcome(relayed, .failure(HolePunchError(.notRelayed, "a DCUtR stream on a direct connection was refused")))
                return
            }
            let admitted = active.withLockedValue { count -> Bool in
                guard count < configuration.maximumConcurrentExchanges else { return false }
                count += 1
                return true
            }
            guard admitted else {
                onOutcome(relayed, .failure(HolePunchError(.busy, "too many DCUtR exchanges at once")))
                return
            }
            defer { active.withLockedValue { $0 -= 1 } }
            onStart(relayed)
            let result: Result<HolePunchOutcome, any Error>
            do {
                result = .success(try await respond(on: stream, host: host, configuration: configuration, localAddresses: localAddresses))
            } catch {
                result = .failure(error)
            }
            onOutcome(relayed, result)
        }
    }

    private static func respond(
        on stream: HostStream, host: PunchHost, configuration: HolePunchConfiguration,
        localAddresses: @escaping @Sendable (Connection) async -> [Multiaddr]
    ) async throws -> HolePunchOutcome {
        let clock = ContinuousClock()
        let started = clock.now
        let relayed = stream.connection
        let logger = configuration.logger.with(peer: relayed.remotePeerID, role: "responder")
        logger.debug("serving a DCUtR stream")
        return try await stream.channel.executeThenClose { inbound, outbound in
            var reader = MessageReader(inbound, channel: stream.channel.channel, configuration: configuration)
            var lastError: (any Error)?
            // The initiator retries on the same stream; more CONNECTs than it may send are refused.
            for attempt in 1...configuration.attempts {
                let connect: PBHolePunch
                do {
                    // The initiator's failed attempt may end later than ours: its punched
                    // connection may still be upgrading (host's upgrade timeout) after our dial gave up.
                    connect = try await reader.next(
                        within: attempt == 1 ? configuration.exchangeTimeout
                            : configuration.exchangeTimeout + configuration.dialTimeout + host.configuration.upgradeTimeout)
                } catch let error as HolePunchError where error.code == .streamClosed && attempt > 1 {
                    break
                }
                guard connect.type == .connect else {
                    throw HolePunchError(.malformedMessage, "expected CONNECT, got \(connect.type)")
                }
                logger.debug("CONNECT received", metadata: ["attempt": "\(attempt)", "since_start": "\(clock.now - started)"])
                let theirs = HolePunchAddressFilter.usable(
                    connect.obsAddrs.compactMap { try? Multiaddr(bytes: Array($0)) },
                    allowPrivate: configuration.allowPrivateAddresses, allowLoopback: configuration.allowLoopbackAddresses,
                    limit: configuration.maximumAddresses)
                let ours = HolePunchAddressFilter.usable(
                    await localAddresses(relayed), allowPrivate: configuration.allowPrivateAddresses,
                    allowLoopback: configuration.allowLoopbackAddresses, limit: configuration.maximumAddresses)
                // Our SYN leaves at SYNC, the initiator's half a round trip later; but be ready early.
                if !theirs.isEmpty {
                    host.expectHolePunch(
                        from: theirs, peer: relayed.remotePeerID, noiseInitiator: isSecurityInitiator(asDCUtRInitiator: false),
                        for: configuration.dialTimeout + configuration.exchangeTimeout)
                }
                try await outbound.write(try message(.connect, ours))
                let sync = try await reader.next()
                guard sync.type == .sync else {
                    throw HolePunchError(.malformedMessage, "expected SYNC, got \(sync.type)")
                }
                guard !theirs.isEmpty else {
                    lastError = HolePunchError(.noAddresses, "the peer offered no usable public address")
                    continue
                }
                // Step 5: dial at once on SYNC.
                do {
                    logger.debug("SYNC received; dialing", metadata: ["attempt": "\(attempt)", "theirs": "\(theirs)"])
                    let connection = try await dialAny(
                        theirs, peer: relayed.remotePeerID, host: host, noiseInitiator: isSecurityInitiator(asDCUtRInitiator: false),
                        configuration: configuration)
                    logger.debug("punched", metadata: ["attempt": "\(attempt)", "remote": "\(connection.remoteAddress.map { "\($0)" } ?? "?")"])
                    return HolePunchOutcome(connection: connection, attempt: attempt, roundTrip: nil, elapsed: clock.now - started, dialed: theirs)
                } catch {
                    logger.debug("attempt failed", metadata: ["attempt": "\(attempt)", "error": "\(error)"])
                    lastError = error
                }
            }
            throw HolePunchError(.failed, "no direct connection: \(lastError.map { "\($0)" } ?? "the initiator stopped")")
        }
    }

    /// Dials every address at once; the first to finish its upgrade wins, the others are closed.
    static func dialAny(
        _ addresses: [Multiaddr], peer: PeerID, host: PunchHost, noiseInitiator: Bool, configuration: HolePunchConfiguration
    ) async throws -> Connection {
        try await withThrowingTaskGroup(of: Connection?.self) { group in
            for address in addresses {
                group.addTask {
                    try await host.dial(
                        address.appendingPeerID(peer.multihash), noiseInitiator: noiseInitiator, timeout: configuration.dialTimeout)
                }
            }
            var lastError: (any Error)?
            var winner: Connection?
            while let result = await group.nextResult() {
                switch result {
                case .success(let connection?):
                    if winner == nil { winner = connection } else { await connection.close() }
                case .success(nil):
                    break
                case .failure(let error):
                    lastError = error
                }
                if winner != nil { group.cancelAll() }
            }
            if let winner { return winner }
            throw lastError ?? HolePunchError(.failed, "nothing to dial")
        }
    }

    static func message(_ type: PBHolePunch.TypeEnum, _ addresses: [Multiaddr]) throws -> ByteBuffer {
        var message = PBHolePunch()
        message.type = type
        message.obsAddrs = addresses.map { Data($0.bytes) }
        var buffer = ByteBuffer()
        try ProtobufFraming.writeDelimited(message, into: &buffer)
        return buffer
    }

    /// Reads varint-delimited DCUtR messages from a stream (``DelimitedMessageReader``), each
    /// within ``HolePunchConfiguration/maximumMessageLength``: a message that does not arrive
    /// within ``HolePunchConfiguration/exchangeTimeout`` closes the stream.
    struct MessageReader {
        private var reader: DelimitedMessageReader<PBHolePunch>

        init(_ inbound: NIOAsyncChannelInboundStream<ByteBuffer>, channel: Channel, configuration: HolePunchConfiguration) {
            reader = DelimitedMessageReader(
                inbound, channel: channel, maximumLength: configuration.maximumMessageLength, timeout: configuration.exchangeTimeout)
        }

        /// The next message, within `timeout` (default: the exchange timeout).
        mutating func next(within timeout: TimeAmount? = nil) async throws -> PBHolePunch {
            let limit = timeout ?? reader.timeout
            do {
                return try await reader.next(within: limit)
            } catch .malformed(let error) {
                throw HolePunchError(.malformedMessage, "a DCUtR message is malformed or over \(reader.maximumLength) bytes: \(error)")
            } catch .timedOut {
                throw HolePunchError(.timeout, "no DCUtR message arrived within \(limit)")
            } catch .ended {
                throw HolePunchError(.streamClosed, "the DCUtR stream ended")
            }
        }
    }
}

extension Logger {
    /// This logger with the peer and our DCUtR role as metadata.
    fileprivate func with(peer: PeerID, role: String) -> Logger {
        var logger = self
        logger[metadataKey: "peer"] = "\(peer)"
        logger[metadataKey: "role"] = "\(role)"
        return logger
    }
}
