import Testing

@testable import PunchWire

/// PCP codec against byte layouts written out by hand from RFC 6887 §7 and §11.1.
@Suite struct PCPMessageTests {
    static let nonce = try! PCPNonce(bytes: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12])
    static let mappedClient: [UInt8] = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF, 10, 0, 1, 2]

    @Test func encodesIPv4AsIPv4MappedIPv6AndBack() throws {
        let address = try IPAddress("10.0.1.2")
        #expect(address.pcpEncoded == Self.mappedClient)
        #expect(try IPAddress(pcpEncoded: Self.mappedClient) == address)
        let v6 = try IPAddress("2001:db8::1")
        #expect(try IPAddress(pcpEncoded: v6.pcpEncoded) == v6)
        #expect(throws: WireError(.malformedValue, "")) { try IPAddress(pcpEncoded: [UInt8](repeating: 0, count: 15)) }
    }

    @Test func mapRequestFollowsTheRFCLayout() throws {
        let request = PCPRequest.map(
            clientAddress: try IPAddress("10.0.1.2"), lifetime: 7200,
            PCPMapData(nonce: Self.nonce, transport: .udp, internalPort: 4001, externalPort: 4001))
        // RFC 6887 §7.1: version 2, R=0 + opcode 1, reserved 16 bits, lifetime, client address.
        var expected: [UInt8] = [0x02, 0x01, 0x00, 0x00, 0x00, 0x00, 0x1C, 0x20] + Self.mappedClient
        // RFC 6887 §11.1: nonce, protocol 17, reserved 24 bits, internal port, suggested
        // external port, suggested external address (::ffff:0.0.0.0 = no preference).
        expected += Self.nonce.bytes + [17, 0, 0, 0, 0x0F, 0xA1, 0x0F, 0xA1]
        expected += [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0, 0, 0, 0]
        #expect(request.encoded == expected)
        #expect(request.encoded.count == 60)
        #expect(try PCPRequest.decode(expected) == request)
    }

    @Test func announceRequestIsAHeaderOnly() throws {
        let bytes = PCPRequest.announce(clientAddress: try IPAddress("10.0.1.2")).encoded
        #expect(bytes == [0x02, 0x00, 0x00, 0x00, 0, 0, 0, 0] + Self.mappedClient)
    }

    @Test func decodesAMapResponse() throws {
        // RFC 6887 §7.2: version, R=1 + opcode, reserved, result, lifetime, epoch, 96 reserved bits.
        var bytes: [UInt8] = [0x02, 0x81, 0x00, 0x00, 0x00, 0x00, 0x00, 0x78, 0x00, 0x00, 0x00, 0x2A] + [UInt8](repeating: 0, count: 12)
        bytes += Self.nonce.bytes + [6, 0, 0, 0, 0x0F, 0xA1, 0xBB, 0x80]
        bytes += [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF, 203, 0, 113, 1]
        let response = try PCPResponse.decode(bytes)
        #expect(response.opcode == .map)
        #expect(response.resultCode == .success)
        #expect(response.lifetime == 120)
        #expect(response.epoch == 42)
        let map = try #require(response.map)
        #expect(map.nonce == Self.nonce)
        #expect(map.transport == .tcp)
        #expect(map.internalPort == 4001)
        #expect(map.externalPort == 48000)
        #expect(map.externalAddress == (try IPAddress("203.0.113.1")))
        #expect(response.encoded == bytes)
    }

    @Test func decodesOptionsWithPadding() throws {
        let option = PCPOption(code: PCPOption.preferFailure, data: [])
        let filter = PCPOption(code: PCPOption.filter, data: [1, 2, 3, 4, 5])
        let response = PCPResponse(opcode: .announce, resultCode: .success, lifetime: 0, epoch: 7, options: [option, filter])
        let bytes = response.encoded
        #expect(bytes.count == 24 + 4 + 12)
        #expect(Array(bytes[24...]) == [2, 0, 0, 0, 3, 0, 0, 5, 1, 2, 3, 4, 5, 0, 0, 0])
        #expect(try PCPResponse.decode(bytes) == response)
        #expect(option.isMandatory)
    }

    @Test func decodesErrorResponsesWithAndWithoutOpcodeData() throws {
        var header: [UInt8] = [0x02, 0x81, 0x00, 0x02, 0x00, 0x00, 0x00, 0x1E, 0x00, 0x00, 0x00, 0x01] + [UInt8](repeating: 0, count: 12)
        let short = try PCPResponse.decode(header)
        #expect(short.resultCode == .notAuthorized)
        #expect(short.map == nil)
        header[3] = 1
        #expect(try PCPResponse.decode(header).resultCode == .unsupportedVersion)
        #expect(PCPResultCode.networkFailure.isShortLifetimeError)
        #expect(!PCPResultCode.notAuthorized.isShortLifetimeError)
        #expect(PCPResultCode(rawValue: 12).description == "ADDRESS_MISMATCH")
    }

    @Test func refusesTruncatedOversizedMisalignedAndForeignInput() throws {
        let valid = PCPResponse(
            opcode: .map, resultCode: .success, lifetime: 120, epoch: 1,
            map: PCPMapData(nonce: Self.nonce, transport: .udp, internalPort: 1, externalPort: 2)).encoded
        for length in stride(from: 0, to: valid.count, by: 4) {
            #expect(throws: WireError(.truncated, ""), "length \(length)") { try PCPResponse.decode(valid.prefix(length)) }
        }
        #expect(throws: WireError(.malformedValue, "")) { try PCPResponse.decode(valid + [0]) }
        #expect(throws: WireError(.tooLarge, "")) { try PCPResponse.decode(valid + [UInt8](repeating: 0, count: 1100)) }
        // An option whose length runs past the end.
        #expect(throws: WireError(.truncated, "")) { try PCPResponse.decode(valid + [1, 0, 0, 9, 0, 0, 0, 0]) }
        // Too many options (each empty option is 4 bytes).
        let emptyOption: [UInt8] = [0x80, 0, 0, 0]
        let manyOptions = valid + Array((0...PCP.maximumOptionCount).map { _ in emptyOption }.joined())
        #expect(throws: WireError(.tooLarge, "")) { try PCPResponse.decode(manyOptions) }
        // A NAT-PMP gateway answers a PCP request with version 0 (RFC 6887 §9).
        #expect(throws: WireError(.wrongVersion, "")) { try PCPResponse.decode([0x00, 0x80, 0x00, 0x01, 0, 0, 0, 0]) }
        var request = valid
        request[1] = 0x01
        #expect(throws: WireError(.unexpectedOpcode, "")) { try PCPResponse.decode(request) }
        var peer = valid
        peer[1] = 0x82
        #expect(throws: WireError(.unexpectedOpcode, "")) { try PCPResponse.decode(peer) }
        var protocolNumber = valid
        protocolNumber[24 + 12] = 1
        #expect(throws: WireError(.malformedValue, "")) { try PCPResponse.decode(protocolNumber) }
    }

    @Test func neverCrashesOnArbitraryBytes() {
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<2000 {
            let length = Int.random(in: 0...30, using: &generator) * 4
            var bytes = (0..<length).map { _ in UInt8.random(in: 0...255, using: &generator) }
            if !bytes.isEmpty { bytes[0] = 2 }
            if bytes.count > 1 { bytes[1] = 0x80 | (bytes[1] & 1) }
            _ = try? PCPResponse.decode(bytes)
            _ = try? PCPRequest.decode(bytes)
        }
    }

    @Test func randomNoncesDiffer() {
        #expect(PCPNonce.random() != PCPNonce.random())
        #expect(throws: WireError(.malformedValue, "")) { try PCPNonce(bytes: [1]) }
    }
}
