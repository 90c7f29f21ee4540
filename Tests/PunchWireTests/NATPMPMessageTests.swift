import Testing

@testable import PunchWire

/// NAT-PMP codec against byte layouts written out by hand from RFC 6886 §3.2-§3.5.
@Suite struct NATPMPMessageTests {
    @Test func externalAddressRequestIsVersionZeroOpcodeZero() {
        // RFC 6886 §3.2: | Vers = 0 | OP = 0 |
        #expect(NATPMPRequest.externalAddress.encoded == [0x00, 0x00])
    }

    @Test func mapRequestsFollowTheRFCLayout() {
        // RFC 6886 §3.3: vers, op (1 UDP / 2 TCP), reserved (16), internal port, suggested
        // external port, requested lifetime (32).
        let udp = NATPMPRequest.map(.udp, internalPort: 4001, suggestedExternalPort: 4002, lifetime: 7200).encoded
        #expect(udp == [0x00, 0x01, 0x00, 0x00, 0x0F, 0xA1, 0x0F, 0xA2, 0x00, 0x00, 0x1C, 0x20])
        let tcpDelete = NATPMPRequest.map(.tcp, internalPort: 80, suggestedExternalPort: 0, lifetime: 0).encoded
        #expect(tcpDelete == [0x00, 0x02, 0x00, 0x00, 0x00, 0x50, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00])
    }

    @Test func decodesAnExternalAddressResponse() throws {
        // RFC 6886 §3.2: vers 0, op 128, result 0, epoch, external IPv4.
        let bytes: [UInt8] = [0x00, 0x80, 0x00, 0x00, 0x00, 0x00, 0x01, 0x2C, 203, 0, 113, 1]
        let response = try NATPMPResponse.decode(bytes)
        #expect(response.resultCode == .success)
        #expect(response.epoch == 300)
        #expect(response.body == .externalAddress(.init(203, 0, 113, 1)))
        #expect(response.encoded == bytes)
    }

    @Test func decodesUDPAndTCPMappingResponses() throws {
        let udp: [UInt8] = [0x00, 0x81, 0x00, 0x00, 0x00, 0x00, 0x00, 0x10, 0x0F, 0xA1, 0xBB, 0x80, 0x00, 0x00, 0x0E, 0x10]
        let response = try NATPMPResponse.decode(udp)
        #expect(response.body == .mapping(.udp, internalPort: 4001, externalPort: 48000, lifetime: 3600))
        #expect(response.epoch == 16)
        #expect(response.encoded == udp)
        var tcp = udp
        tcp[1] = 0x82
        #expect(try NATPMPResponse.decode(tcp).body == .mapping(.tcp, internalPort: 4001, externalPort: 48000, lifetime: 3600))
    }

    @Test func decodesResultCodesFromShortErrorResponses() throws {
        // RFC 6886 §3.5: fields after the epoch are undefined on error; an 8-byte reply is accepted.
        let refused = try NATPMPResponse.decode([0x00, 0x81, 0x00, 0x02, 0x00, 0x00, 0x00, 0x05])
        #expect(refused.resultCode == .notAuthorized)
        #expect(refused.body == .failure(requestOpcode: 1))
        let unsupported = try NATPMPResponse.decode([0x00, 0x80, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0, 0, 0, 0])
        #expect(unsupported.resultCode == .unsupportedVersion)
        #expect(NATPMPResultCode(rawValue: 4) == .outOfResources)
        #expect(NATPMPResultCode(rawValue: 99).description == "RESULT_99")
    }

    @Test func refusesTruncatedOversizedAndForeignInput() {
        let full: [UInt8] = [0x00, 0x81, 0x00, 0x00, 0x00, 0x00, 0x00, 0x10, 0x0F, 0xA1, 0xBB, 0x80, 0x00, 0x00, 0x0E, 0x10]
        for length in 0..<full.count {
            #expect(throws: WireError(.truncated, ""), "length \(length)") { try NATPMPResponse.decode(full.prefix(length)) }
        }
        #expect(throws: WireError(.tooLarge, "")) { try NATPMPResponse.decode(full + [0]) }
        #expect(throws: WireError(.trailingBytes, "")) {
            try NATPMPResponse.decode([0x00, 0x80, 0x00, 0x00, 0, 0, 0, 1, 1, 2, 3, 4, 0, 0])
        }
        var pcp = full
        pcp[0] = 2
        #expect(throws: WireError(.wrongVersion, "")) { try NATPMPResponse.decode(pcp) }
        var request = full
        request[1] = 0x01
        #expect(throws: WireError(.unexpectedOpcode, "")) { try NATPMPResponse.decode(request) }
        request[1] = 0x83
        #expect(throws: WireError(.unexpectedOpcode, "")) { try NATPMPResponse.decode(request) }
    }

    @Test func neverCrashesOnArbitraryBytes() {
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<2000 {
            let length = Int.random(in: 0...20, using: &generator)
            var bytes = (0..<length).map { _ in UInt8.random(in: 0...255, using: &generator) }
            if !bytes.isEmpty, Bool.random(using: &generator) { bytes[0] = 0 }
            if bytes.count > 1, Bool.random(using: &generator) { bytes[1] = 0x80 | (bytes[1] & 3) }
            _ = try? NATPMPResponse.decode(bytes)
        }
    }
}
