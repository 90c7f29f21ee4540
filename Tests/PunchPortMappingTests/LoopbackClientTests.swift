import Foundation
import NIOCore
import NIOPosix
import Testing

@testable import PunchPortMapping
@testable import PunchWire

/// The NAT-PMP and PCP clients against fake gateways on 127.0.0.1: good answers, spoofed
/// sources, wrong nonces, truncated and oversized replies, refusals.
@Suite struct LoopbackClientTests {
    /// Short enough for quick tests, long enough that a loaded machine (parallel tests, builds)
    /// does not retransmit a request whose answer is merely late.
    static let quick = RetransmissionPolicy(initialTimeout: .milliseconds(400), maximumAttempts: 2)
    static let loopback = try! IPAddress("127.0.0.1")
    static let external = IPAddress.IPv4Bytes(203, 0, 113, 1)

    /// A correct NAT-PMP gateway: external address, and mappings granted on the suggested port.
    static func natpmpAnswer(epoch: UInt32 = 100) -> @Sendable ([UInt8]) -> [FakeUDPGateway.Reply] {
        { request in
            guard request.count >= 2 else { return [] }
            if request[1] == 0 {
                return [.fromGateway(NATPMPResponse(resultCode: .success, epoch: epoch, body: .externalAddress(external)).encoded)]
            }
            guard request.count == 12 else { return [] }
            let transport: PortMappingTransport = request[1] == 1 ? .udp : .tcp
            let internalPort = UInt16(request[4]) << 8 | UInt16(request[5])
            let suggested = UInt16(request[6]) << 8 | UInt16(request[7])
            let lifetime = BigEndianBytes.uint32(request, at: 8)
            return [.fromGateway(NATPMPResponse(resultCode: .success, epoch: epoch, body: .mapping(transport, internalPort: internalPort, externalPort: suggested, lifetime: lifetime)).encoded)]
        }
    }

    @Test func natpmpMapsThroughAGoodGateway() async throws {
        let gateway = try await FakeUDPGateway(answer: Self.natpmpAnswer())
        let client = try await NATPMPClient(gateway: Self.loopback, port: gateway.port, policy: Self.quick)
        let reply = try await client.map(.tcp, internalPort: 4001, suggestedExternalPort: 40001, lifetime: 60)
        #expect(reply.mapping.external == IPEndpoint(address: .v4(Self.external), port: 40001))
        #expect(reply.mapping.lifetime == 60)
        #expect(reply.epoch == 100)
        try await client.unmap(.tcp, internalPort: 4001)
        #expect(gateway.requests.last == NATPMPRequest.map(.tcp, internalPort: 4001, suggestedExternalPort: 0, lifetime: 0).encoded)
        await client.close()
        await gateway.close()
    }

    @Test func natpmpIgnoresRepliesFromAnotherSource() async throws {
        let gateway = try await FakeUDPGateway { request in
            [.fromElsewhere(NATPMPResponse(resultCode: .success, epoch: 1, body: .externalAddress(.init(6, 6, 6, 6))).encoded)]
        }
        let client = try await NATPMPClient(gateway: Self.loopback, port: gateway.port, policy: Self.quick)
        await #expect(throws: PortMappingError(.unexpectedSource, "")) { try await client.externalAddress() }
        // The client sent both before giving up; the gateway's loop may read the second a little later.
        for _ in 0..<500 where gateway.requests.count < 2 { try await Task.sleep(for: .milliseconds(10)) }
        #expect(gateway.requests.count == 2, "retransmitted per the policy")
        await client.close()
        await gateway.close()
    }

    @Test func natpmpSpoofFirstThenTheRealAnswerWins() async throws {
        let gateway = try await FakeUDPGateway { request in
            [.fromElsewhere(NATPMPResponse(resultCode: .success, epoch: 1, body: .externalAddress(.init(6, 6, 6, 6))).encoded)]
                + Self.natpmpAnswer()(request)
        }
        let client = try await NATPMPClient(gateway: Self.loopback, port: gateway.port, policy: Self.quick)
        #expect(try await client.externalAddress().address == .v4(Self.external))
        await client.close()
        await gateway.close()
    }

    @Test func natpmpRefusesTruncatedAndOversizedReplies() async throws {
        for bad in [[0x00, 0x80, 0x00, 0x00, 0, 0, 0, 1, 203, 0], [UInt8](repeating: 0, count: 40)] as [[UInt8]] {
            let gateway = try await FakeUDPGateway { _ in [.fromGateway(bad)] }
            let client = try await NATPMPClient(gateway: Self.loopback, port: gateway.port, policy: Self.quick)
            await #expect(throws: PortMappingError(.malformedResponse, "")) { try await client.externalAddress() }
            await client.close()
            await gateway.close()
        }
    }

    @Test func natpmpResultCodesAreTypedErrors() async throws {
        let gateway = try await FakeUDPGateway { request in
            request[1] == 0
                ? [.fromGateway(NATPMPResponse(resultCode: .success, epoch: 1, body: .externalAddress(Self.external)).encoded)]
                : [.fromGateway(NATPMPResponse(resultCode: .notAuthorized, epoch: 1, body: .failure(requestOpcode: request[1])).encoded)]
        }
        let client = try await NATPMPClient(gateway: Self.loopback, port: gateway.port, policy: Self.quick)
        await #expect(throws: PortMappingError(.gatewayRefused, "")) { try await client.map(.udp, internalPort: 1, lifetime: 10) }
        await #expect(throws: PortMappingError(.invalidArgument, "")) { try await client.map(.udp, internalPort: 1, lifetime: 0) }
        await client.close()
        await gateway.close()
    }

    @Test func natpmpSilenceIsATimeout() async throws {
        let gateway = try await FakeUDPGateway { _ in [] }
        let client = try await NATPMPClient(gateway: Self.loopback, port: gateway.port, policy: Self.quick)
        await #expect(throws: PortMappingError(.timedOut, "")) { try await client.externalAddress() }
        await client.close()
        await gateway.close()
    }

    // MARK: - PCP

    /// A correct PCP server: echoes the MAP data with the external address filled in.
    static func pcpAnswer(epoch: UInt32 = 7, nonceOverride: PCPNonce? = nil, from spoofed: Bool = false) -> @Sendable ([UInt8]) -> [FakeUDPGateway.Reply] {
        { bytes in
            guard let request = try? PCPRequest.decode(bytes) else { return [] }
            var map = request.map
            map?.externalAddress = .v4(external)
            if map?.externalPort == 0 { map?.externalPort = 50000 }
            if let nonceOverride { map?.nonce = nonceOverride }
            let response = PCPResponse(opcode: request.opcode, resultCode: .success, lifetime: request.lifetime, epoch: epoch, map: map).encoded
            return [spoofed ? .fromElsewhere(response) : .fromGateway(response)]
        }
    }

    @Test func pcpMapsAndSendsTheClientAddressAsIPv4Mapped() async throws {
        let gateway = try await FakeUDPGateway(answer: Self.pcpAnswer())
        let client = try await PCPClient(gateway: Self.loopback, port: gateway.port, policy: Self.quick)
        #expect(client.clientAddress == Self.loopback)
        let nonce = PCPNonce.random()
        let reply = try await client.map(.udp, internalPort: 4001, suggestedExternalPort: 4001, lifetime: 30, nonce: nonce)
        #expect(reply.mapping.external == IPEndpoint(address: .v4(Self.external), port: 4001))
        #expect(reply.mapping.mappingProtocol == .pcp)
        #expect(reply.epoch == 7)
        let sent = try PCPRequest.decode(try #require(gateway.requests.first))
        #expect(sent.clientAddress == Self.loopback)
        #expect(Array(gateway.requests.first![8..<24]) == [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF, 127, 0, 0, 1])
        #expect(sent.map?.nonce == nonce)
        try await client.unmap(.udp, internalPort: 4001, nonce: nonce)
        let deletion = try PCPRequest.decode(try #require(gateway.requests.last))
        #expect(deletion.lifetime == 0)
        #expect(deletion.map?.nonce == nonce)
        #expect(try await client.announce() == 7)
        await client.close()
        await gateway.close()
    }

    @Test func pcpRefusesAWrongNonce() async throws {
        let gateway = try await FakeUDPGateway(answer: Self.pcpAnswer(nonceOverride: .random()))
        let client = try await PCPClient(gateway: Self.loopback, port: gateway.port, policy: Self.quick)
        await #expect(throws: PortMappingError(.nonceMismatch, "")) {
            try await client.map(.udp, internalPort: 4001, lifetime: 30, nonce: .random())
        }
        await client.close()
        await gateway.close()
    }

    @Test func pcpRefusesASpoofedSource() async throws {
        let gateway = try await FakeUDPGateway(answer: Self.pcpAnswer(from: true))
        let client = try await PCPClient(gateway: Self.loopback, port: gateway.port, policy: Self.quick)
        await #expect(throws: PortMappingError(.unexpectedSource, "")) {
            try await client.map(.udp, internalPort: 4001, lifetime: 30, nonce: .random())
        }
        await client.close()
        await gateway.close()
    }

    @Test func pcpRefusesTruncatedAndOversizedReplies() async throws {
        let valid = PCPResponse(opcode: .map, resultCode: .success, lifetime: 1, epoch: 1,
                                map: PCPMapData(nonce: .random(), transport: .udp, internalPort: 1)).encoded
        for bad in [Array(valid.prefix(40)), valid + [UInt8](repeating: 0, count: 1200)] {
            let gateway = try await FakeUDPGateway { _ in [.fromGateway(bad)] }
            let client = try await PCPClient(gateway: Self.loopback, port: gateway.port, policy: Self.quick)
            await #expect(throws: PortMappingError(.malformedResponse, "")) {
                try await client.map(.udp, internalPort: 1, lifetime: 30, nonce: .random())
            }
            await client.close()
            await gateway.close()
        }
    }

    @Test func pcpSeesANATPMPOnlyGatewayAsUnsupportedVersion() async throws {
        // RFC 6887 §9: a NAT-PMP server answers version 2 with version 0, UNSUPPORTED_VERSION.
        let natpmpOnly = try await FakeUDPGateway { _ in [.fromGateway([0x00, 0x81, 0x00, 0x01, 0, 0, 0, 9])] }
        let client = try await PCPClient(gateway: Self.loopback, port: natpmpOnly.port, policy: Self.quick)
        await #expect(throws: PortMappingError(.unsupportedVersion, "")) {
            try await client.map(.udp, internalPort: 1, lifetime: 30, nonce: .random())
        }
        await client.close()
        await natpmpOnly.close()
        // A PCP server of another version answers with UNSUPP_VERSION in a PCP header.
        let other = try await FakeUDPGateway { _ in [.fromGateway(PCPResponse(opcode: .map, resultCode: .unsupportedVersion, lifetime: 0, epoch: 0).encoded)] }
        let second = try await PCPClient(gateway: Self.loopback, port: other.port, policy: Self.quick)
        await #expect(throws: PortMappingError(.unsupportedVersion, "")) {
            try await second.map(.udp, internalPort: 1, lifetime: 30, nonce: .random())
        }
        await second.close()
        await other.close()
    }
}
