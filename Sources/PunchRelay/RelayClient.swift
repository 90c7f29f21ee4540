import Foundation
import NIOCore
import PunchCrypto
import PunchTransport
import PunchWire

/// A reservation on a relay (circuit-v2.md, "Reservation").
public struct RelayReservation: Sendable, Hashable {
    /// The relay.
    public var relay: PeerID
    /// When the reservation ends unless refreshed.
    public var expiration: Date
    /// The relay's addresses as it gave them (ending in its `/p2p/`).
    public var relayAddresses: [Multiaddr]
    /// Our circuit addresses through this relay: `…/p2p/RELAY/p2p-circuit/p2p/US`.
    public var circuitAddresses: [Multiaddr]
    /// The relay's signed voucher, when it gave one (verified).
    public var voucher: SignedEnvelope?
    /// The relay's limit per circuit: seconds and bytes per direction (`nil`: none).
    public var limitDuration: UInt32?
    public var limitBytes: UInt64?
}

/// The client side of Circuit Relay v2: reserving a slot, connecting to a peer through a relay,
/// and accepting circuits the relay opens to us (the stop protocol).
public enum RelayClient {
    /// Asks the relay at the other end of `connection` for a reservation.
    ///
    /// - Parameter relayAddress: the address we reached the relay at, used for our circuit
    ///   address when the relay gives no addresses.
    /// - Throws: ``RelayError`` `.refused` with the relay's status, `.malformedMessage`, `.timeout`.
    public static func reserve(
        on connection: Connection, host: PunchHost, relayAddress: Multiaddr? = nil,
        configuration: RelayConfiguration = RelayConfiguration()
    ) async throws -> RelayReservation {
        var request = PBRelayHopMessage()
        request.type = .reserve
        let (answer, stream) = try await exchange(request, on: connection, configuration: configuration)
        stream.close(promise: nil)
        guard answer.type == .status else { throw RelayError(.malformedMessage, "the relay answered RESERVE with \(answer.type)") }
        guard answer.status == .ok else {
            throw RelayError(.refused, "the relay refused the reservation: \(answer.status.name)", status: answer.status)
        }
        let relay = connection.remotePeerID
        let reservation = answer.reservation
        var relayAddresses = reservation.addrs.compactMap { try? Multiaddr(bytes: Array($0)) }
            .filter { !$0.isCircuit }
            .map { $0.peerID == nil ? $0.appendingPeerID(relay.multihash) : $0 }
        if relayAddresses.isEmpty, let relayAddress {
            relayAddresses = [relayAddress.peerID == nil ? relayAddress.appendingPeerID(relay.multihash) : relayAddress]
        }
        let circuit = relayAddresses.compactMap { address -> Multiaddr? in
            try? Multiaddr(components: address.components + [.p2pCircuit, .p2p(host.peerID.multihash)])
        }
        var voucher: SignedEnvelope?
        if reservation.hasVoucher {
            voucher = try? SignedEnvelope.open(
                Array(reservation.voucher), domain: SignedEnvelope.Domain.relayVoucher,
                payloadType: SignedEnvelope.PayloadType.relayVoucher)
            if let envelope = voucher, PeerID(publicKey: envelope.publicKey) != relay { voucher = nil }
        }
        return RelayReservation(
            relay: relay,
            expiration: Date(timeIntervalSince1970: TimeInterval(reservation.expire)),
            relayAddresses: relayAddresses,
            circuitAddresses: circuit,
            voucher: voucher,
            limitDuration: answer.hasLimit && answer.limit.hasDuration && answer.limit.duration > 0 ? answer.limit.duration : nil,
            limitBytes: answer.hasLimit && answer.limit.hasData && answer.limit.data > 0 ? answer.limit.data : nil)
    }

    /// Connects to `target` through the relay at the other end of `relayConnection`, then runs
    /// Noise and yamux end to end over the circuit (we are the Noise initiator).
    ///
    /// - Returns: the relayed connection (``Connection/path`` `.relayed`).
    /// - Throws: ``RelayError`` `.refused` with the relay's status (for example NO_RESERVATION),
    ///   and the upgrade's ``TransportError``s (a wrong PeerID at the far end among them).
    public static func connect(
        to target: PeerID, via relayConnection: Connection, host: PunchHost,
        configuration: RelayConfiguration = RelayConfiguration()
    ) async throws -> Connection {
        var request = PBRelayHopMessage()
        request.type = .connect
        var peer = PBRelayPeer()
        peer.id = Data(target.bytes)
        request.peer = peer
        let (answer, stream) = try await exchange(request, on: relayConnection, configuration: configuration)
        guard answer.type == .status, answer.status == .ok else {
            stream.channel.close(promise: nil)
            throw RelayError(
                .refused, "the relay refused to connect us to \(target): \(answer.status.name)", status: answer.status)
        }
        let circuitAddress = try? Multiaddr(
            components: (relayConnection.remoteAddress?.components ?? []) + [.p2p(relayConnection.remotePeerID.multihash), .p2pCircuit, .p2p(target.multihash)])
        return try await stream.channel.eventLoop.flatSubmit {
            let upgraded = host.upgradeCircuit(stream.channel, direction: .outbound, remotePeer: target, remoteAddress: circuitAddress)
            stream.reader.value.handOff()
            return upgraded
        }.get()
    }

    /// Accepts circuits that relays open to us (`/libp2p/circuit/relay/0.2.0/stop`): each becomes
    /// an inbound relayed connection of `host`, announced by its events. Only relays we hold a
    /// connection to can reach us, and `accept` decides per relay (default: all).
    public static func acceptCircuits(
        on host: PunchHost, configuration: RelayConfiguration = RelayConfiguration(),
        accept: @escaping @Sendable (_ relay: PeerID) -> Bool = { _ in true }
    ) {
        let floodGuard = StreamFloodGuard(burst: configuration.streamBurst, perSecond: configuration.streamsPerSecond)
        host.setChannelHandler(for: RelayProtocol.stop) { stream, relayConnection in
            guard floodGuard.admit(relayConnection) else {
                // A relay that floods us with STOP streams is cut off (its circuits go with it).
                var message = PBRelayStopMessage()
                message.type = .status
                message.status = .resourceLimitExceeded
                stream.writeRelayMessage(message).whenComplete { _ in stream.close(promise: nil) }
                Task { await relayConnection.close() }
                return stream.eventLoop.makeSucceededVoidFuture()
            }
            let reader = RelayMessageReader(maximumMessageLength: configuration.maximumMessageLength, eventLoop: stream.eventLoop)
            do {
                try stream.pipeline.syncOperations.addHandler(reader)
            } catch {
                return stream.eventLoop.makeFailedFuture(error)
            }
            reader.next(PBRelayStopMessage.self, timeout: configuration.exchangeTimeout).assumeIsolated().whenComplete { result in
                func answer(_ status: PBRelayStatus) -> EventLoopFuture<Void> {
                    var message = PBRelayStopMessage()
                    message.type = .status
                    message.status = status
                    return stream.writeRelayMessage(message)
                }
                guard case .success(let message) = result, message.type == .connect, message.hasPeer,
                    let initiator = try? PeerID(bytes: message.peer.id)
                else {
                    answer(.malformedMessage).whenComplete { _ in stream.close(promise: nil) }
                    return
                }
                guard accept(relayConnection.remotePeerID) else {
                    answer(.permissionDenied).whenComplete { _ in stream.close(promise: nil) }
                    return
                }
                let circuitAddress = try? Multiaddr(
                    components: (relayConnection.remoteAddress?.components ?? [])
                        + [.p2p(relayConnection.remotePeerID.multihash), .p2pCircuit, .p2p(initiator.multihash)])
                answer(.ok).assumeIsolated().whenComplete { _ in
                    host.upgradeCircuit(stream, direction: .inbound, remotePeer: initiator, remoteAddress: circuitAddress)
                        .whenFailure { _ in stream.close(promise: nil) }
                    reader.handOff()
                }
            }
            return stream.eventLoop.makeSucceededVoidFuture()
        }
    }

    /// Opens a hop stream, sends `request`, and reads the relay's answer; the stream stays open
    /// with its reader, for a circuit.
    static func exchange(
        _ request: PBRelayHopMessage, on connection: Connection, configuration: RelayConfiguration
    ) async throws -> (PBRelayHopMessage, HopStream) {
        let stream = try await connection.openChannel(protocol: RelayProtocol.hop) { channel in
            channel.eventLoop.makeCompletedFuture {
                let reader = RelayMessageReader(maximumMessageLength: configuration.maximumMessageLength, eventLoop: channel.eventLoop)
                try channel.pipeline.syncOperations.addHandler(reader)
                return HopStream(channel: channel, reader: NIOLoopBound(reader, eventLoop: channel.eventLoop))
            }
        }
        do {
            let answer = try await stream.channel.eventLoop.flatSubmit {
                stream.channel.writeRelayMessage(request).flatMap {
                    stream.reader.value.next(PBRelayHopMessage.self, timeout: configuration.exchangeTimeout)
                }
            }.get()
            return (answer, stream)
        } catch {
            stream.channel.close(promise: nil)
            throw error
        }
    }

    struct HopStream: Sendable {
        let channel: Channel
        let reader: NIOLoopBound<RelayMessageReader>

        func close(promise: EventLoopPromise<Void>?) { channel.close(promise: promise) }
    }
}
