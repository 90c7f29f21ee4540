import Testing

@testable import PunchWire

@Suite struct STUNMessageTypeTests {
    @Test func bindingTypesInterleaveAsRFC8489Says() {
        #expect(STUNMessageType.bindingRequest.rawValue == 0x0001)
        #expect(STUNMessageType.bindingIndication.rawValue == 0x0011)
        #expect(STUNMessageType.bindingSuccessResponse.rawValue == 0x0101)
        #expect(STUNMessageType.bindingErrorResponse.rawValue == 0x0111)
        #expect(STUNMessageType(rawValue: 0x0101) == .bindingSuccessResponse)
        #expect(STUNMessageType(rawValue: 0x0111) == .bindingErrorResponse)
    }

    @Test func everyMethodAndClassRoundTrips() throws {
        for method in [UInt16(0x000), 0x001, 0x003, 0x00F, 0x010, 0x070, 0x080, 0xF80, 0xABC, 0xFFF] {
            for messageClass in STUNMessageClass.allCases {
                let type = STUNMessageType(method: try #require(STUNMethod(rawValue: method)), class: messageClass)
                #expect(type.rawValue & 0xC000 == 0)
                #expect(STUNMessageType(rawValue: type.rawValue) == type, "\(method) \(messageClass)")
            }
        }
        // TURN Allocate (0x003): request 0x0003, error response 0x0113 (RFC 8656).
        let allocate = try #require(STUNMethod(rawValue: 0x003))
        #expect(STUNMessageType(method: allocate, class: .errorResponse).rawValue == 0x0113)
        // Every 14-bit value decodes and re-encodes to itself.
        for raw in UInt16(0)...0x3FFF {
            #expect(STUNMessageType(rawValue: raw)?.rawValue == raw)
        }
    }

    @Test func leadingBitsAndOversizedMethodsAreRefused() {
        #expect(STUNMessageType(rawValue: 0x4001) == nil)
        #expect(STUNMessageType(rawValue: 0x8001) == nil)
        #expect(STUNMethod(rawValue: 0x1000) == nil)
    }

    @Test func transactionIDRoundTripsAndIsRandom() throws {
        let bytes: [UInt8] = [0xB7, 0xE7, 0xA7, 0x01, 0xBC, 0x34, 0xD6, 0x86, 0xFA, 0x87, 0xDF, 0xAE]
        let id = try STUNTransactionID(bytes: bytes)
        #expect(id.bytes == bytes)
        #expect(id.description == "b7e7a701bc34d686fa87dfae")
        #expect(throws: WireError(.malformedValue, "")) { try STUNTransactionID(bytes: bytes.dropLast()) }
        let ids = Set((0..<100).map { _ in STUNTransactionID.random() })
        #expect(ids.count == 100)
    }

    @Test func crc32MatchesTheStandardCheckValue() {
        #expect(STUNCRC32.checksum(Array("123456789".utf8)) == 0xCBF4_3926)
        #expect(STUNCRC32.checksum([UInt8]()) == 0)
    }
}
