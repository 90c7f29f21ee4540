import Foundation
import NIOCore
import NIOPosix
import PunchCrypto
import PunchWire
import Testing

@testable import PunchRelay
@testable import PunchTransport

/// Circuit Relay v2 over loopback: a Punch relay, a listener that reserves on it, a dialer that
/// reaches the listener through it.
@Suite struct RelayTests {
    /// A relay, a listener A with a reservation (serving echo), and a dialer B, all on loopback.
    struct Trio {
        let relay: PunchHost
        let server: RelayServer
        let relayAddress: Multiaddr
        let a: PunchHost
        let b: PunchHost
        let reservation: RelayReservation
        let aToRelay: Connection

        static func make(_ configure: (inout RelayConfiguration) -> Void = { _ in }) async throws -> Trio {
            var configuration = RelayConfiguration()
            configure(&configuration)
            let relay = PunchHost(configuration: HostConfiguration(identity: .generate()))
            let relayAddress = try await relay.listen(Multiaddr("/ip4/127.0.0.1/tcp/0"))[0]
            let server = RelayServer(host: relay, addresses: [relayAddress.withoutPeerID()], configuration: configuration)
            let a = PunchHost(configuration: HostConfiguration(identity: .generate()))
            Echo.register(on: a)
            RelayClient.acceptCircuits(on: a)
            let aToRelay = try await a.dial(relayAddress)
            let reservation = try await RelayClient.reserve(on: aToRelay, host: a)
            let b = PunchHost(configuration: HostConfiguration(identity: .generate()))
            return Trio(relay: relay, server: server, relayAddress: relayAddress, a: a, b: b, reservation: reservation, aToRelay: aToRelay)
        }

        func close() async {
            await b.close()
            await a.close()
            await relay.close()
        }
    }

    @Test func reservationGivesCircuitAddressesAndAVerifiedVoucher() async throws {
        let trio = try await Trio.make()
        defer { Task { await trio.close() } }
        let reservation = trio.reservation
        #expect(reservation.relay == trio.relay.peerID)
        #expect(reservation.circuitAddresses == [try Multiaddr("\(trio.relayAddress)/p2p-circuit/p2p/\(trio.a.peerID)")])
        #expect(reservation.expiration.timeIntervalSinceNow > 3500)
        #expect(reservation.limitDuration == 120)
        #expect(reservation.limitBytes == 128 * 1024)
        let voucher = try #require(reservation.voucher)
        let payload = try ProtobufFraming.decode(PBRelayVoucher.self, from: voucher.payload, maximumLength: 4096)
        #expect(try PeerID(bytes: payload.peer) == trio.a.peerID)
        #expect(try PeerID(bytes: payload.relay) == trio.relay.peerID)
        #expect(trio.server.metrics.activeReservations == 1)
    }

    @Test func dialerReachesTheListenerThroughTheRelayWithNoiseEndToEnd() async throws {
        let trio = try await Trio.make()
        defer { Task { await trio.close() } }
        let toRelay = try await trio.b.dial(trio.relayAddress)
        let connection = try await RelayClient.connect(to: trio.a.peerID, via: toRelay, host: trio.b)
        #expect(connection.path == .relayed)
        #expect(connection.remotePeerID == trio.a.peerID)
        #expect(connection.remoteAddress == (try Multiaddr("\(trio.relayAddress)/p2p-circuit/p2p/\(trio.a.peerID)")))
        let rtts = try await connection.ping(count: 2)
        #expect(rtts.count == 2)
        let echo = try await connection.echo(bytes: 48 * 1024)
        #expect(echo.bytes == 48 * 1024)
        let info = try await connection.identify()
        #expect(info.agentVersion == PunchVersion.agentVersion)
        // The listener sees an inbound relayed connection from B.
        let inbound = trio.a.connections(to: trio.b.peerID)
        #expect(inbound.count == 1 && inbound.first?.path == .relayed && inbound.first?.direction == .inbound)
        #expect(trio.server.metrics.circuitsOpened == 1)
        #expect(trio.server.metrics.activeCircuits == 1)
    }

    @Test func aPeerWithoutReservationIsRefusedWithNoReservation() async throws {
        let trio = try await Trio.make()
        defer { Task { await trio.close() } }
        let toRelay = try await trio.b.dial(trio.relayAddress)
        let stranger = PrivateKey.generate().peerID
        await #expect(throws: RelayError(.refused, "")) {
            _ = try await RelayClient.connect(to: stranger, via: toRelay, host: trio.b)
        }
        do {
            _ = try await RelayClient.connect(to: stranger, via: toRelay, host: trio.b)
        } catch let error as RelayError {
            #expect(error.status == .noReservation)
        }
        #expect(trio.server.metrics.refusals["NO_RESERVATION"] == 2)
        // The relay connection still works.
        _ = try await toRelay.ping(count: 1)
    }

    @Test func theCircuitEndsAtItsByteLimit() async throws {
        let limit: UInt64 = 32 * 1024
        let trio = try await Trio.make { $0.circuitBytes = limit }
        defer { Task { await trio.close() } }
        let toRelay = try await trio.b.dial(trio.relayAddress)
        let connection = try await RelayClient.connect(to: trio.a.peerID, via: toRelay, host: trio.b)
        await #expect(throws: (any Error).self) {
            _ = try await connection.echo(bytes: 1 << 20)
        }
        try await connection.closeFuture.get()
        // Give the relay a moment to book the circuit's end.
        for _ in 0..<50 where trio.server.metrics.activeCircuits > 0 { try await Task.sleep(for: .milliseconds(20)) }
        let metrics = trio.server.metrics
        #expect(metrics.activeCircuits == 0)
        #expect(metrics.bytesRelayed <= 2 * limit)
        #expect(metrics.bytesRelayed >= limit)
    }

    @Test func reservationsBeyondThePerIPLimitAreRefused() async throws {
        let trio = try await Trio.make { $0.maximumReservationsPerIP = 1 }
        defer { Task { await trio.close() } }
        let toRelay = try await trio.b.dial(trio.relayAddress)
        do {
            _ = try await RelayClient.reserve(on: toRelay, host: trio.b)
            Issue.record("a second reservation from 127.0.0.1 was granted")
        } catch let error as RelayError {
            #expect(error.code == .refused && error.status == .reservationRefused)
        }
        #expect(trio.server.metrics.refusals["RESERVATION_REFUSED"] == 1)
        // A refresh by the holder is still granted.
        _ = try await RelayClient.reserve(on: trio.aToRelay, host: trio.a)
        #expect(trio.server.metrics.activeReservations == 1)
    }

    @Test func theReservationEndsWithItsConnection() async throws {
        let trio = try await Trio.make()
        defer { Task { await trio.close() } }
        #expect(trio.server.metrics.activeReservations == 1)
        await trio.aToRelay.close()
        for _ in 0..<100 where trio.server.metrics.activeReservations > 0 { try await Task.sleep(for: .milliseconds(20)) }
        #expect(trio.server.metrics.activeReservations == 0)
        let toRelay = try await trio.b.dial(trio.relayAddress)
        await #expect(throws: RelayError(.refused, "")) {
            _ = try await RelayClient.connect(to: trio.a.peerID, via: toRelay, host: trio.b)
        }
    }

    @Test func aMalformedHopMessageGetsMalformedMessage() async throws {
        let trio = try await Trio.make()
        defer { Task { await trio.close() } }
        let toRelay = try await trio.b.dial(trio.relayAddress)
        let stream = try await toRelay.openStream(protocol: RelayProtocol.hop)
        let answer = try await stream.channel.executeThenClose { inbound, outbound in
            // A length of 3, then bytes that are no protobuf (field 0 is invalid).
            try await outbound.write(ByteBuffer(bytes: [3, 0x00, 0x00, 0x00]))
            var received = ByteBuffer()
            for try await var chunk in inbound { received.writeBuffer(&chunk) }
            return try ProtobufFraming.readDelimited(PBRelayHopMessage.self, from: &received, maximumLength: 4096)
        }
        #expect(answer?.status == .malformedMessage)
        #expect(trio.server.metrics.refusals["MALFORMED_MESSAGE"] == 1)
    }

    @Test func aPeerFloodingHopStreamsIsCutOffAndOthersCarryOn() async throws {
        let trio = try await Trio.make {
            $0.streamBurst = 4
            $0.streamsPerSecond = 1
        }
        defer { Task { await trio.close() } }
        let flooder = try await trio.b.dial(trio.relayAddress)
        var cutOffAfter: Int?
        for attempt in 1...20 {
            do {
                _ = try await RelayClient.connect(to: PrivateKey.generate().peerID, via: flooder, host: trio.b)
            } catch let error as RelayError where error.status == .resourceLimitExceeded {
                cutOffAfter = attempt
                break
            } catch let error as RelayError where error.status == .noReservation {
                continue
            } catch {
                // The connection may close before the refusal is read.
                cutOffAfter = attempt
                break
            }
        }
        // The burst of 4 is served (each refused for want of a reservation), then the flood is cut.
        #expect((cutOffAfter ?? 0) >= 5)
        try await flooder.closeFuture.get()
        #expect(trio.server.metrics.cutOff == 1)
        #expect(trio.server.metrics.refusals["NO_RESERVATION", default: 0] >= 4)
        // Another peer's reservation and a circuit to it still work.
        _ = try await RelayClient.reserve(on: trio.aToRelay, host: trio.a)
        let other = PunchHost(configuration: HostConfiguration(identity: .generate()))
        defer { Task { await other.close() } }
        let circuit = try await RelayClient.connect(to: trio.a.peerID, via: try await other.dial(trio.relayAddress), host: other)
        #expect(try await circuit.echo(bytes: 1024).bytes == 1024)
    }

    @Test func aRelayFloodingStopStreamsIsCutOff() async throws {
        let client = PunchHost(configuration: HostConfiguration(identity: .generate()))
        var configuration = RelayConfiguration()
        configuration.streamBurst = 2
        configuration.streamsPerSecond = 1
        configuration.exchangeTimeout = .seconds(30)
        RelayClient.acceptCircuits(on: client, configuration: configuration)
        let address = try await client.listen(Multiaddr("/ip4/127.0.0.1/tcp/0"))[0]
        let flooder = PunchHost(configuration: HostConfiguration(identity: .generate()))
        defer { Task { await flooder.close(); await client.close() } }
        let connection = try await flooder.dial(address)
        // Streams that say nothing: the client waits for their STOP message, up to the limit.
        var streams: [HostStream] = []
        var refusal: PBRelayStopMessage?
        for _ in 1...10 {
            guard let stream = try? await connection.openStream(protocol: RelayProtocol.stop) else { break }
            streams.append(stream)
            if streams.count > 2 {
                refusal = try? await stream.channel.executeThenClose { inbound, _ in
                    var received = ByteBuffer()
                    for try await var chunk in inbound { received.writeBuffer(&chunk) }
                    return try ProtobufFraming.readDelimited(PBRelayStopMessage.self, from: &received, maximumLength: 4096)
                }
                break
            }
        }
        #expect(refusal?.status == .resourceLimitExceeded)
        try await connection.closeFuture.get()
        for stream in streams { try? await stream.channel.channel.close() }
    }

    /// Issue 7, "Upgrade": the direct and the relayed connection to one peer are one peer; new
    /// streams go direct; the relayed connection closes once idle for the grace period, not while
    /// a stream is open on it.
    @Test func aRelayedConnectionFallsAwayOnceADirectOneExistsAndItIsIdle() async throws {
        let trio = try await Trio.make { $0.circuitDuration = nil }
        var configuration = HostConfiguration(identity: .generate())
        configuration.relayedConnectionGrace = .milliseconds(300)
        let b = PunchHost(configuration: configuration)
        defer { Task { await b.close(); await trio.close() } }
        let aAddress = try await trio.a.listen(Multiaddr("/ip4/127.0.0.1/tcp/0"))[0]

        let relayed = try await RelayClient.connect(to: trio.a.peerID, via: try await b.dial(trio.relayAddress), host: b)
        #expect(b.connection(to: trio.a.peerID) === relayed)
        let held = try await relayed.openStream(protocol: Echo.protocolID)
        let direct = try await b.dial(aAddress)
        #expect(b.connection(to: trio.a.peerID) === direct)
        let viaHost = try await b.openStream(to: trio.a.peerID, protocol: Echo.protocolID)
        #expect(viaHost.connection === direct)
        try await viaHost.channel.channel.close()

        // Three grace periods with a stream open: the relayed connection stays.
        try await Task.sleep(for: .milliseconds(900))
        #expect(relayed.isActive)
        #expect(relayed.openStreamCount >= 1)
        try await held.channel.channel.close()
        for _ in 0..<300 where relayed.isActive { try await Task.sleep(for: .milliseconds(20)) }
        #expect(!relayed.isActive, "the idle relayed connection was not closed")
        #expect(direct.isActive)
        #expect(b.connections(to: trio.a.peerID) == [direct])
        #expect(try await direct.echo(bytes: 4096).bytes == 4096)
    }

    @Test func aRelayedConnectionStaysWhenTheDirectOneCloses() async throws {
        let trio = try await Trio.make { $0.circuitDuration = nil }
        var configuration = HostConfiguration(identity: .generate())
        configuration.relayedConnectionGrace = .milliseconds(400)
        let b = PunchHost(configuration: configuration)
        defer { Task { await b.close(); await trio.close() } }
        let aAddress = try await trio.a.listen(Multiaddr("/ip4/127.0.0.1/tcp/0"))[0]
        let relayed = try await RelayClient.connect(to: trio.a.peerID, via: try await b.dial(trio.relayAddress), host: b)
        let held = try await relayed.openStream(protocol: Echo.protocolID)
        let direct = try await b.dial(aAddress)
        await direct.close()
        try await held.channel.channel.close()
        try await Task.sleep(for: .milliseconds(1200))
        #expect(relayed.isActive, "the relayed connection is the only one left; it must stay")
        #expect(b.connection(to: trio.a.peerID) === relayed)
    }
}
