import NIOCore
import Testing

@testable import PunchWire

@Suite struct MultiaddrTests {
    /// Bytes from a hex string, for readable vectors.
    static func hexBytes(_ hex: String) -> [UInt8] {
        let digits = Array(hex.utf8)
        return stride(from: 0, to: digits.count, by: 2).map {
            UInt8(String(decoding: digits[$0..<$0 + 2], as: UTF8.self), radix: 16)!
        }
    }

    static let relayID = "QmcgpsyWgH8Y8ajJz1Cu72KnS5uo2Aa2LpzU7kinSupNKC"
    static let relayIDHex = "1220d52ebb89d85b02a284948203a62ff28389c57c9f42beec4ec20db76a68911c0b"
    static let targetID = "12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA"
    static let targetIDHex = "0024080112202ffa35a99d3a3cfbb17bb7c1dc5561b18a8dcca4df38dc613ea859c37eb1336b"

    /// Canonical text and binary forms that must map to each other exactly.
    static let vectors: [(String, String)] = [
        ("/ip4/127.0.0.1/udp/1234", "047f000001910204d2"),
        ("/ip4/127.0.0.1/tcp/4001", "047f000001060fa1"),
        ("/ip4/0.0.0.0/tcp/0", "0400000000060000"),
        ("/ip4/255.255.255.255/udp/65535", "04ffffffff9102ffff"),
        ("/ip6/::1/tcp/3217", "2900000000000000000000000000000001060c91"),
        ("/ip6/2001:db8::1/udp/4001/quic-v1", "2920010db80000000000000000000000019102" + "0fa1cd03"),
        ("/ip6/::ffff:1.2.3.4/tcp/1", "2900000000000000000000ffff01020304060001"),
        ("/dns/example.com/tcp/443", "350b6578616d706c652e636f6d0601bb"),
        ("/dns4/example.com/tcp/443", "360b6578616d706c652e636f6d0601bb"),
        ("/dns6/example.com/udp/53", "370b6578616d706c652e636f6d910200" + "35"),
        ("/dnsaddr/bootstrap.libp2p.io", "3813626f6f7473747261702e6c69627032702e696f"),
        ("/ip4/127.0.0.1/udp/4001/quic-v1", "047f00000191020fa1cd03"),
        ("/p2p/\(relayID)", "a50322" + relayIDHex),
        ("/p2p/\(targetID)", "a50326" + targetIDHex),
        ("/p2p-circuit", "a202"),
        (
            "/ip4/1.2.3.4/tcp/80/p2p/\(relayID)/p2p-circuit/p2p/\(targetID)",
            "0401020304060050" + "a50322" + relayIDHex + "a202" + "a50326" + targetIDHex
        ),
    ]

    @Test(arguments: vectors)
    func textToBinary(text: String, hex: String) throws {
        let address = try Multiaddr(text)
        #expect(address.bytes == Self.hexBytes(hex))
        #expect(address.description == text)
    }

    @Test(arguments: vectors)
    func binaryToText(text: String, hex: String) throws {
        let address = try Multiaddr(bytes: Self.hexBytes(hex))
        #expect(address.description == text)
        #expect(address == (try Multiaddr(text)))
        #expect(address.bytes == Self.hexBytes(hex))
    }

    @Test func componentsAreTyped() throws {
        let address = try Multiaddr("/ip4/127.0.0.1/udp/4001/quic-v1/p2p/\(Self.targetID)")
        let peer = try Multihash(bytes: Self.hexBytes(Self.targetIDHex))
        #expect(address.components == [.ip4(try IPAddress("127.0.0.1")), .udp(4001), .quicV1, .p2p(peer)])
        #expect(address.components.map(\.protocol) == [.ip4, .udp, .quicV1, .p2p])
        #expect(address.components.map(\.protocol.code) == [4, 273, 461, 421])
        #expect(try Multiaddr(components: address.components) == address)
    }

    @Test func protocolCodesMatchMulticodecTable() {
        let expected: [(MultiaddrProtocol, UInt64, String)] = [
            (.ip4, 4, "ip4"), (.tcp, 6, "tcp"), (.ip6, 41, "ip6"), (.dns, 53, "dns"), (.dns4, 54, "dns4"),
            (.dns6, 55, "dns6"), (.dnsaddr, 56, "dnsaddr"), (.udp, 273, "udp"), (.p2pCircuit, 290, "p2p-circuit"),
            (.p2p, 421, "p2p"), (.quicV1, 461, "quic-v1"),
        ]
        #expect(expected.count == MultiaddrProtocol.allCases.count)
        for (proto, code, name) in expected {
            #expect(proto.code == code)
            #expect(proto.name == name)
            #expect(MultiaddrProtocol(code: code) == proto)
            #expect(MultiaddrProtocol(name: name) == proto)
        }
    }

    @Test func cidPeerIDIsWrittenInBase58() throws {
        let cid = "bafzbeie5745rpv2m6tjyuugywy4d5ewrqgqqhfnf445he3omzpjbx5xqxe"
        let address = try Multiaddr("/ip4/1.2.3.4/tcp/80/p2p/\(cid)")
        #expect(address.description == "/ip4/1.2.3.4/tcp/80/p2p/QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N")
        #expect(address == (try Multiaddr("/ip4/1.2.3.4/tcp/80/p2p/QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N")))
    }

    @Test func ipfsIsReadAsP2P() throws {
        #expect(try Multiaddr("/ipfs/\(Self.relayID)").description == "/p2p/\(Self.relayID)")
    }

    @Test func oneTrailingSlashIsAllowed() throws {
        #expect(try Multiaddr("/ip4/1.2.3.4/tcp/80/").description == "/ip4/1.2.3.4/tcp/80")
        #expect(try Multiaddr("/p2p-circuit/").description == "/p2p-circuit")
    }

    @Test func ipv6TextIsCanonicalized() throws {
        #expect(try Multiaddr("/ip6/2001:DB8:0:0:0:0:0:1/tcp/1").description == "/ip6/2001:db8::1/tcp/1")
    }

    @Test func dnsNamesKeepUTF8() throws {
        let address = try Multiaddr("/dns/bücher.example/tcp/1")
        #expect(try Multiaddr(bytes: address.bytes).description == "/dns/bücher.example/tcp/1")
    }

    /// Found by FuzzMultiaddr: a `/` followed by a combining mark is one Character, so splitting
    /// the text by Characters lost the separator before a name starting with one.
    @Test func aNameStartingWithACombiningMarkRoundTrips() throws {
        let address = try Multiaddr(components: [.dns(":"), .tcp(65280), .dns(":"), .dns("\u{32F})")])
        #expect(try Multiaddr(address.description) == address)
        #expect(try Multiaddr("/dns/\u{301}x/tcp/1/").components == [.dns("\u{301}x"), .tcp(1)])
    }

    @Test func writesIntoByteBuffer() throws {
        let address = try Multiaddr("/ip4/127.0.0.1/tcp/4001")
        var buffer = ByteBuffer()
        #expect(buffer.writeMultiaddr(address) == 8)
        #expect(Array(buffer.readableBytesView) == Self.hexBytes("047f000001060fa1"))
        #expect(try Multiaddr(bytes: buffer.readableBytesView) == address)
    }

    // MARK: Text errors

    @Test(arguments: ["", "/", "ip4/1.2.3.4", " /ip4/1.2.3.4", "/ip4", "/ip4/", "/ip4/1.2.3.4/tcp", "/tcp/80/p2p",
                      "//ip4/1.2.3.4", "/ip4/1.2.3.4//tcp/80", "/ip4/1.2.3.4/tcp/80//"])
    func malformedText(_ text: String) {
        #expect(throws: WireError(.malformedText, "")) { try Multiaddr(text) }
    }

    @Test(arguments: ["/ip5/1.2.3.4", "/ip4/1.2.3.4/sctp/80", "/IP4/1.2.3.4", "/quic/", "/ip4/1.2.3.4/tcp/80/ws",
                      "/unix/tmp", "/ip4/1.2.3.4/tcp/80/1.2.3.4"])
    func unknownProtocolName(_ text: String) {
        #expect(throws: WireError(.unknownProtocol, "")) { try Multiaddr(text) }
    }

    @Test(arguments: [
        "/tcp/70000", "/tcp/65536", "/udp/-1", "/udp/+80", "/tcp/80a", "/tcp/ 80", "/tcp/000080", "/tcp/0x50",
        "/ip4/1.2.3", "/ip4/1.2.3.256", "/ip4/::1", "/ip4/localhost", "/ip6/1.2.3.4", "/ip6/::g", "/ip6/1:2",
        "/p2p/QmNotBase58Il0O", "/p2p/Qm", "/p2p/\(relayID)x", "/p2p/1", "/p2p/bafzbeie",
        "/p2p/bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi",
        "/dns4//tcp/80", "/dns//", "/p2p/" + String(repeating: "z", count: 257),
    ])
    func malformedValue(_ text: String) {
        #expect(throws: WireError(.malformedValue, "")) { try Multiaddr(text) }
    }

    @Test func textLimits() throws {
        let many = String(repeating: "/p2p-circuit", count: Multiaddr.maximumComponentCount)
        #expect(try Multiaddr(many).components.count == Multiaddr.maximumComponentCount)
        #expect(throws: WireError(.tooLarge, "")) { try Multiaddr(many + "/p2p-circuit") }
        let longName = String(repeating: "a", count: Multiaddr.maximumBinaryLength)
        #expect(throws: WireError(.tooLarge, "")) { try Multiaddr("/dns/\(longName)") }
        #expect(throws: WireError(.tooLarge, "")) {
            try Multiaddr(String(repeating: "/", count: Multiaddr.maximumTextLength + 1))
        }
    }

    // MARK: Binary errors

    @Test func unknownProtocolCode() {
        #expect(throws: WireError(.unknownProtocol, "")) { try Multiaddr(bytes: [0x21, 0, 1]) }  // dccp
        #expect(throws: WireError(.unknownProtocol, "")) { try Multiaddr(bytes: Self.hexBytes("047f000001" + "cc03")) }  // quic (draft-29)
        #expect(throws: WireError(.unknownProtocol, "")) { try Multiaddr(bytes: [0x00]) }
    }

    @Test(arguments: [
        "", "04", "047f0000", "047f00000106", "047f0000010600", "29000000", "91", "9102", "910200",
        "35", "350b6578616d706c65", "a503", "a50322" + "1220d52e", "a5", "047f00000191",
    ])
    func truncatedBinary(_ hex: String) {
        #expect(throws: WireError(.truncated, "")) { try Multiaddr(bytes: Self.hexBytes(hex)) }
    }

    @Test func hugeDeclaredLengthIsTruncatedNotAllocated() {
        #expect(throws: WireError(.truncated, "")) { try Multiaddr(bytes: [0x35] + Varint.encode(Varint.maximumValue)) }
    }

    @Test func malformedBinaryValues() {
        let cases: [[UInt8]] = [
            [0x35, 0x00],  // empty dns name
            [0x36, 0x02, 0xC3, 0x28],  // invalid UTF-8
            [0x38, 0x03, 0x61, 0x2F, 0x62],  // "a/b"
            [0x37, 0x02, 0x61, 0x00],  // NUL
            [0xA5, 0x03, 0x00],  // empty p2p value
            [0xA5, 0x03, 0x03, 0x12, 0x01, 0xFF],  // sha2-256 of 1 byte
            [0xA5, 0x03, 0x04, 0x00, 0x01, 0xAA, 0xBB],  // multihash with a trailing byte
            [0xA5, 0x03, 0x02, 0x00, 0x05],  // multihash declaring more than the value holds
        ]
        for bytes in cases {
            #expect(throws: WireError(.malformedValue, "")) { try Multiaddr(bytes: bytes) }
        }
    }

    @Test func badVarintsInBinary() {
        #expect(throws: WireError(.varintNotMinimal, "")) { try Multiaddr(bytes: [0x84, 0x00, 1, 2, 3, 4]) }
        #expect(throws: WireError(.varintOverflow, "")) { try Multiaddr(bytes: [UInt8](repeating: 0xFF, count: 10)) }
    }

    @Test func binaryLimits() throws {
        let many = [UInt8]([0xA2, 0x02]).repeated(Multiaddr.maximumComponentCount)
        #expect(try Multiaddr(bytes: many).components.count == Multiaddr.maximumComponentCount)
        #expect(throws: WireError(.tooLarge, "")) { try Multiaddr(bytes: many + [0xA2, 0x02]) }
        let long = [UInt8](repeating: 0xA2, count: Multiaddr.maximumBinaryLength + 1)
        #expect(throws: WireError(.tooLarge, "")) { try Multiaddr(bytes: long) }
        // A dns name filling the limit exactly is fine.
        let nameLength = Multiaddr.maximumBinaryLength - 3
        let exact = [0x35] + Varint.encode(UInt64(nameLength)) + [UInt8](repeating: 0x61, count: nameLength)
        #expect(exact.count == Multiaddr.maximumBinaryLength)
        #expect(try Multiaddr(bytes: exact).bytes == exact)
    }

    // MARK: Components built in code

    @Test func componentsAreValidated() throws {
        #expect(throws: WireError(.malformedValue, "")) { try Multiaddr(components: [.ip4(try IPAddress("::1"))]) }
        #expect(throws: WireError(.malformedValue, "")) { try Multiaddr(components: [.ip6(try IPAddress("1.2.3.4"))]) }
        #expect(throws: WireError(.malformedValue, "")) { try Multiaddr(components: [.dns("")]) }
        #expect(throws: WireError(.malformedValue, "")) { try Multiaddr(components: [.dnsaddr("a/b")]) }
        #expect(try Multiaddr(components: []).description == "")
        #expect(try Multiaddr(components: []).bytes == [])
    }
}

extension Array {
    fileprivate func repeated(_ count: Int) -> [Element] {
        (0..<count).flatMap { _ in self }
    }
}
