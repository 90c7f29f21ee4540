import PunchDiscovery
import PunchWire
import Testing

@Suite struct STUNServerAddressTests {
    @Test func parsesTheUsualForms() throws {
        #expect(try STUNServerAddress("203.0.113.10:3490") == STUNServerAddress(host: "203.0.113.10", port: 3490))
        #expect(try STUNServerAddress("stun.example.net") == STUNServerAddress(host: "stun.example.net", port: 3478))
        #expect(try STUNServerAddress("[2001:db8::1]:19302") == STUNServerAddress(host: "2001:db8::1", port: 19302))
        #expect(try STUNServerAddress("[::1]") == STUNServerAddress(host: "::1", port: 3478))
        #expect(try STUNServerAddress("2001:db8::1") == STUNServerAddress(host: "2001:db8::1", port: 3478))
        #expect(try STUNServerAddress("[2001:db8::1]:19302").description == "[2001:db8::1]:19302")
    }

    @Test func refusesNonsense() {
        for text in ["", ":3478", "host:0", "host:99999", "host:x", "[1.2.3.4]:1", "[::1", "a b:1", "2001:db8::zz"] {
            #expect(throws: DiscoveryError.self, "\(text)") { try STUNServerAddress(text) }
        }
    }

    @Test func resolvesLiteralsAndNames() async throws {
        #expect(try await STUNServerAddress("127.0.0.1:9").resolve(ipv4: true) == (try IPEndpoint("127.0.0.1:9")))
        #expect(try await STUNServerAddress("localhost:9").resolve(ipv4: true) == (try IPEndpoint("127.0.0.1:9")))
        await #expect(throws: DiscoveryError(.stunAddressFamilyMismatch, "")) { try await STUNServerAddress("[::1]:9").resolve(ipv4: true) }
    }
}
