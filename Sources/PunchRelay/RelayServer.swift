import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore
import PunchCrypto
import PunchTransport
import PunchWire

/// The relay side of Circuit Relay v2 (libp2p/specs relay/circuit-v2.md, "Hop Protocol"):
/// serves `/libp2p/circuit/relay/0.2.0/hop` on a ``PunchHost``, grants reservations with signed
/// vouchers, and joins circuits between a peer that asks to CONNECT and a peer with a
/// reservation, through a STOP stream to the latter. Circuits carry the peers' own Noise, so the
/// relay forwards ciphertext it cannot read.
///
/// Every table is bounded by ``RelayConfiguration``; refusals answer with the spec's status and
/// are counted in ``metrics``.
public final class RelayServer: Sendable {
    /// What the relay has done, for metrics and tests.
    public struct Metrics: Sendable, Hashable {
        public var activeReservations = 0
        public var activeCircuits = 0
        public var reservationsGranted = 0
        public var circuitsOpened = 0
        /// Bytes forwarded through circuits, both directions.
        public var bytesRelayed: UInt64 = 0
        /// Refusals by the status sent.
        public var refusals: [String: Int] = [:]
        /// Connections closed because they flooded hop streams.
        public var cutOff = 0
    }

    /// An event for operators (`punch relay --json`).
    public enum Event: Sendable {
        case reserved(peer: PeerID, renewal: Bool)
        case reservationEnded(peer: PeerID)
        case circuitOpened(from: PeerID, to: PeerID)
        case circuitClosed(from: PeerID, to: PeerID, bytes: UInt64, reason: String)
        case refused(peer: PeerID, request: String, status: PBRelayStatus)
        /// The peer opened hop streams faster than ``RelayConfiguration/streamsPerSecond``: its
        /// connection was closed.
        case cutOff(peer: PeerID, reason: String)
    }

    private struct Reservation {
        let connection: Connection
        var expiration: Date
        let ip: String
    }

    private struct State {
        var reservations: [PeerID: Reservation] = [:]
        var circuitsPerPeer: [PeerID: Int] = [:]
        var metrics = Metrics()
    }

    public let configuration: RelayConfiguration
    private let host: PunchHost
    private let state = NIOLockedValueBox(State())
    private let onEvent: @Sendable (Event) -> Void
    private let logger = Logger(label: "punch.relay")
    /// The relay's public addresses, ending in its `/p2p/` PeerID, given to clients in reservations.
    private let advertisedAddresses: NIOLockedValueBox<[Multiaddr]>
    private let floodGuard: StreamFloodGuard

    /// Starts serving the hop protocol on `host`.
    ///
    /// - Parameters:
    ///   - host: the relay's host; it must listen on a public address.
    ///   - addresses: the relay's public addresses (without `/p2p/`), given to clients in
    ///     reservations. Can be changed with ``setAdvertisedAddresses(_:)``.
    ///   - onEvent: called for every ``Event``, on any thread.
    public init(
        host: PunchHost, addresses: [Multiaddr] = [], configuration: RelayConfiguration = RelayConfiguration(),
        onEvent: @escaping @Sendable (Event) -> Void = { _ in }
    ) {
        self.host = host
        self.configuration = configuration
        self.onEvent = onEvent
        self.advertisedAddresses = NIOLockedValueBox(addresses.map { $0.appendingPeerID(host.peerID.multihash) })
        self.floodGuard = StreamFloodGuard(burst: configuration.streamBurst, perSecond: configuration.streamsPerSecond)
        // The host keeps the relay: it serves for as long as the host does (a caller need not hold it).
        host.setChannelHandler(for: RelayProtocol.hop) { stream, connection in
            self.serveHop(stream, connection: connection)
        }
    }

    /// Replaces the addresses given to clients in reservations.
    public func setAdvertisedAddresses(_ addresses: [Multiaddr]) {
        let peer = host.peerID.multihash
        advertisedAddresses.withLockedValue { $0 = addresses.map { $0.appendingPeerID(peer) } }
    }

    /// A snapshot of the counters.
    public var metrics: Metrics {
        state.withLockedValue { state in
            var metrics = state.metrics
            metrics.activeReservations = state.reservations.count
            return metrics
        }
    }

    // MARK: Hop

    private func serveHop(_ stream: Channel, connection: Connection) -> EventLoopFuture<Void> {
        guard floodGuard.admit(connection) else {
            let peer = connection.remotePeerID
            state.withLockedValue { $0.metrics.cutOff += 1 }
            refuse(stream, peer: peer, request: "hop stream", status: .resourceLimitExceeded)
            onEvent(.cutOff(peer: peer, reason: "more than \(configuration.streamBurst) hop streams at once, then \(configuration.streamsPerSecond)/s"))
            Task { await connection.close() }
            return stream.eventLoop.makeSucceededVoidFuture()
        }
        let reader = RelayMessageReader(maximumMessageLength: configuration.maximumMessageLength, eventLoop: stream.eventLoop)
        do {
            try stream.pipeline.syncOperations.addHandler(reader)
        } catch {
            return stream.eventLoop.makeFailedFuture(error)
        }
        let bound = NIOLoopBound(reader, eventLoop: stream.eventLoop)
        reader.next(PBRelayHopMessage.self, timeout: configuration.exchangeTimeout).whenComplete { result in
            switch result {
            case .success(let message):
                switch message.type {
                case .reserve:
                    self.reserve(stream, connection: connection)
                case .connect:
                    self.connect(stream, reader: bound, connection: connection, request: message)
                case .status:
                    self.refuse(stream, peer: connection.remotePeerID, request: "STATUS", status: .unexpectedMessage)
                }
            case .failure(let error):
                if let error = error as? RelayError, error.code == .malformedMessage {
                    self.refuse(stream, peer: connection.remotePeerID, request: "malformed", status: .malformedMessage)
                } else {
                    stream.close(promise: nil)
                }
            }
        }
        return stream.eventLoop.makeSucceededVoidFuture()
    }

    private func reserve(_ stream: Channel, connection: Connection) {
        let peer = connection.remotePeerID
        guard connection.path == .direct else {
            // A reservation through another relay would make this relay a relay of relays.
            refuse(stream, peer: peer, request: "RESERVE", status: .permissionDenied)
            return
        }
        let ip = connection.remoteAddress?.transport.map { "\($0.host)" } ?? "?"
        let expiration = Date().addingTimeInterval(Double(configuration.reservationDuration.nanoseconds) / 1e9)
        let outcome = state.withLockedValue { state -> (granted: Bool, renewal: Bool) in
            if var existing = state.reservations[peer], existing.connection === connection {
                existing.expiration = expiration
                state.reservations[peer] = existing
                return (true, true)
            }
            let fromIP = state.reservations.values.filter { $0.ip == ip }.count
            let replacing = state.reservations[peer] != nil
            guard replacing || (state.reservations.count < configuration.maximumReservations && fromIP < configuration.maximumReservationsPerIP)
            else { return (false, false) }
            state.reservations[peer] = Reservation(connection: connection, expiration: expiration, ip: ip)
            state.metrics.reservationsGranted += 1
            return (true, false)
        }
        guard outcome.granted else {
            refuse(stream, peer: peer, request: "RESERVE", status: .reservationRefused)
            return
        }
        if !outcome.renewal {
            // The spec: "If the peer disconnects, the reservation is no longer valid."
            connection.closeFuture.whenComplete { _ in self.dropReservation(peer: peer, connection: connection) }
        }
        var response = PBRelayHopMessage()
        response.type = .status
        response.status = .ok
        var reservation = PBRelayReservation()
        let expire = UInt64(expiration.timeIntervalSince1970)
        reservation.expire = expire
        reservation.addrs = advertisedAddresses.withLockedValue { $0 }.map { Data($0.bytes) }
        if let voucher = try? Self.voucher(relay: host.peerID, peer: peer, expiration: expire, key: host.configuration.identity) {
            reservation.voucher = Data(voucher)
        }
        response.reservation = reservation
        if let limit = limitMessage { response.limit = limit }
        send(response, on: stream, thenClose: true)
        onEvent(.reserved(peer: peer, renewal: outcome.renewal))
    }

    /// The voucher: a signed envelope over the canonical `Voucher` (circuit-v2.md, "Reservation Vouchers").
    static func voucher(relay: PeerID, peer: PeerID, expiration: UInt64, key: PrivateKey) throws -> [UInt8] {
        var voucher = PBRelayVoucher()
        voucher.relay = Data(relay.bytes)
        voucher.peer = Data(peer.bytes)
        voucher.expiration = expiration
        let envelope = try SignedEnvelope.seal(
            payload: try ProtobufFraming.encode(voucher), payloadType: SignedEnvelope.PayloadType.relayVoucher,
            domain: SignedEnvelope.Domain.relayVoucher, with: key)
        return envelope.encoded
    }

    private func dropReservation(peer: PeerID, connection: Connection) {
        let dropped = state.withLockedValue { state -> Bool in
            guard let existing = state.reservations[peer], existing.connection === connection else { return false }
            state.reservations[peer] = nil
            return true
        }
        if dropped { onEvent(.reservationEnded(peer: peer)) }
    }

    private var limitMessage: PBRelayLimit? {
        guard configuration.circuitDuration != nil || configuration.circuitBytes != nil else { return nil }
        var limit = PBRelayLimit()
        if let duration = configuration.circuitDuration { limit.duration = UInt32(clamping: duration.nanoseconds / 1_000_000_000) }
        if let bytes = configuration.circuitBytes { limit.data = bytes }
        return limit
    }

    private func connect(
        _ hop: Channel, reader: NIOLoopBound<RelayMessageReader>, connection: Connection, request: PBRelayHopMessage
    ) {
        let configuration = self.configuration
        let initiator = connection.remotePeerID
        guard request.hasPeer, let target = try? PeerID(bytes: request.peer.id) else {
            refuse(hop, peer: initiator, request: "CONNECT", status: .malformedMessage)
            return
        }
        let now = Date()
        let admission = state.withLockedValue { state -> Result<Connection, RelayError> in
            guard let reservation = state.reservations[target], reservation.expiration > now, reservation.connection.isActive else {
                return .failure(RelayError(.refused, "no reservation", status: .noReservation))
            }
            guard state.metrics.activeCircuits < configuration.maximumCircuits,
                state.circuitsPerPeer[initiator, default: 0] < configuration.maximumCircuitsPerPeer,
                state.circuitsPerPeer[target, default: 0] < configuration.maximumCircuitsPerPeer
            else {
                return .failure(RelayError(.refused, "circuit limit", status: .resourceLimitExceeded))
            }
            state.circuitsPerPeer[initiator, default: 0] += 1
            state.circuitsPerPeer[target, default: 0] += 1
            state.metrics.activeCircuits += 1
            return .success(reservation.connection)
        }
        let targetConnection: Connection
        switch admission {
        case .failure(let error):
            refuse(hop, peer: initiator, request: "CONNECT", status: error.status ?? .connectionFailed)
            return
        case .success(let connection):
            targetConnection = connection
        }
        let release: @Sendable () -> Void = {
            self.state.withLockedValue { state in
                for peer in [initiator, target] {
                    state.circuitsPerPeer[peer, default: 1] -= 1
                    if state.circuitsPerPeer[peer] == 0 { state.circuitsPerPeer[peer] = nil }
                }
                state.metrics.activeCircuits -= 1
            }
        }
        let limit = limitMessage
        // The relay's half: a STOP stream to the target (circuit-v2.md, "Stop Protocol").
        let stopStream = Task {
            try await targetConnection.openChannel(protocol: RelayProtocol.stop) { stop in
                stop.eventLoop.makeCompletedFuture {
                    let stopReader = RelayMessageReader(maximumMessageLength: configuration.maximumMessageLength, eventLoop: stop.eventLoop)
                    try stop.pipeline.syncOperations.addHandler(stopReader)
                    return StopSide(channel: stop, reader: NIOLoopBound(stopReader, eventLoop: stop.eventLoop))
                }
            }
        }
        let hopLoop = hop.eventLoop
        let stopReady = hopLoop.makeFutureWithTask { try await stopStream.value }
        stopReady.flatMap { side -> EventLoopFuture<StopSide> in
            side.channel.eventLoop.flatSubmit {
                var message = PBRelayStopMessage()
                message.type = .connect
                var peer = PBRelayPeer()
                peer.id = Data(initiator.bytes)
                message.peer = peer
                if let limit { message.limit = limit }
                return side.channel.writeRelayMessage(message).flatMap {
                    side.reader.value.next(PBRelayStopMessage.self, timeout: configuration.exchangeTimeout)
                }.flatMapThrowing { answer in
                    guard answer.type == .status, answer.status == .ok else {
                        throw RelayError(.refused, "the target answered \(answer.status.name)", status: answer.status)
                    }
                    return side
                }
            }
        }.hop(to: hopLoop).whenComplete { result in
            switch result {
            case .failure(let error):
                release()
                stopReady.whenSuccess { $0.channel.close(promise: nil) }
                self.logger.debug("circuit refused", metadata: ["from": "\(initiator)", "to": "\(target)", "error": "\(error)"])
                self.refuse(hop, peer: initiator, request: "CONNECT", status: .connectionFailed)
            case .success(let side):
                var response = PBRelayHopMessage()
                response.type = .status
                response.status = .ok
                if let limit { response.limit = limit }
                self.send(response, on: hop, thenClose: false)
                self.state.withLockedValue { $0.metrics.circuitsOpened += 1 }
                self.onEvent(.circuitOpened(from: initiator, to: target))
                CircuitGlue.join(
                    hop, side.channel, readers: (reader, side.reader),
                    byteLimit: configuration.circuitBytes, duration: configuration.circuitDuration
                ).whenComplete { outcome in
                    release()
                    let carried = (try? outcome.get()).map { $0.bytesAToB + $0.bytesBToA } ?? 0
                    let reason = (try? outcome.get())?.reason ?? "failed"
                    self.state.withLockedValue { $0.metrics.bytesRelayed += carried }
                    self.onEvent(.circuitClosed(from: initiator, to: target, bytes: carried, reason: reason))
                }
            }
        }
    }

    private struct StopSide: Sendable {
        let channel: Channel
        let reader: NIOLoopBound<RelayMessageReader>
    }

    private func refuse(_ stream: Channel, peer: PeerID, request: String, status: PBRelayStatus) {
        state.withLockedValue { $0.metrics.refusals[status.name, default: 0] += 1 }
        onEvent(.refused(peer: peer, request: request, status: status))
        var response = PBRelayHopMessage()
        response.type = .status
        response.status = status
        send(response, on: stream, thenClose: true)
    }

    private func send(_ message: PBRelayHopMessage, on stream: Channel, thenClose: Bool) {
        let written = stream.writeRelayMessage(message)
        written.whenFailure { _ in stream.close(promise: nil) }
        if thenClose {
            written.whenComplete { _ in stream.close(promise: nil) }
        }
    }
}
