import NIOCore
import Testing

@testable import PunchWire

@Suite struct IPAddressTests {
    @Test func parsesAndFormatsIPv4() throws {
        let address = try IPAddress("203.0.113.10")
        #expect(address.bytes == [203, 0, 113, 10])
        #expect(address.description == "203.0.113.10")
        #expect(address.isIPv4)
    }

    @Test func parsesAndCompressesIPv6() throws {
        let address = try IPAddress("2001:0db8:0000:0000:0000:0000:0000:0001")
        #expect(address.description == "2001:db8::1")
        #expect(address.bytes.count == 16)
        #expect(try IPAddress(bytes: address.bytes) == address)
    }

    @Test func refusesGarbage() {
        for text in ["", "1.2.3", "1.2.3.256", "::g", "localhost", "1.2.3.4\0"] {
            #expect(throws: WireError(.malformedValue, ""), "\(text)") { try IPAddress(text) }
        }
        #expect(throws: WireError(.malformedValue, "")) { try IPAddress(bytes: [1, 2, 3]) }
    }

    @Test func endpointTextForms() throws {
        #expect(try IPEndpoint("127.0.0.1:3478").description == "127.0.0.1:3478")
        #expect(try IPEndpoint("[::1]:3478").description == "[::1]:3478")
        #expect(throws: WireError.self) { try IPEndpoint("127.0.0.1:70000") }
        #expect(throws: WireError.self) { try IPEndpoint("::1:3478") }
    }

    @Test func convertsToAndFromNIOSocketAddress() throws {
        let endpoint = try IPEndpoint("[2001:db8::5]:9")
        #expect(IPEndpoint(try endpoint.socketAddress()) == endpoint)
    }
}
