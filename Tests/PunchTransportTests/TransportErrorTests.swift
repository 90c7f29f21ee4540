import Testing

@testable import PunchTransport

@Suite struct TransportErrorTests {
    @Test func errorsCompareByCodeOnly() {
        let a = TransportError(.init("x"), "one message")
        let b = TransportError(.init("x"), "another message")
        #expect(a == b)
        #expect(a != TransportError(.init("y"), "one message"))
        #expect(a.description == "x: one message")
    }
}
