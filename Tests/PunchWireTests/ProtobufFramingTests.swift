import Foundation
import NIOCore
import Testing

@testable import PunchWire

@Suite struct ProtobufFramingTests {
    @Test func identifyRoundTripsDelimited() throws {
        var identify = PBIdentify()
        identify.agentVersion = "punch/0.1.0"
        identify.protocols = ["/ipfs/ping/1.0.0", "/ipfs/id/1.0.0"]
        identify.observedAddr = Data([4, 127, 0, 0, 1, 6, 0x0F, 0xA1])
        var buffer = ByteBuffer()
        try ProtobufFraming.writeDelimited(identify, into: &buffer)
        let decoded = try #require(try ProtobufFraming.readDelimited(PBIdentify.self, from: &buffer, maximumLength: 4096))
        #expect(decoded == identify)
        #expect(buffer.readableBytes == 0)
    }

    @Test func partialFrameReturnsNilAndKeepsReaderIndex() throws {
        var message = PBHolePunch()
        message.type = .connect
        message.obsAddrs = [Data([4, 1, 2, 3, 4])]
        var full = ByteBuffer()
        try ProtobufFraming.writeDelimited(message, into: &full)
        var partial = full.getSlice(at: 0, length: full.readableBytes - 1)!
        #expect(try ProtobufFraming.readDelimited(PBHolePunch.self, from: &partial, maximumLength: 4096) == nil)
        #expect(partial.readerIndex == 0)
    }

    @Test func oversizedFrameIsRefusedBeforeDecoding() {
        var buffer = ByteBuffer()
        buffer.writeVarint(4097)
        buffer.writeRepeatingByte(0, count: 4097)
        #expect(throws: WireError(.tooLarge, "")) {
            try ProtobufFraming.readDelimited(PBHolePunch.self, from: &buffer, maximumLength: 4096)
        }
        #expect(buffer.readerIndex == 0)
    }

    @Test func garbageIsMalformedAndReaderIndexKept() {
        var buffer = ByteBuffer()
        buffer.writeVarint(3)
        buffer.writeBytes([0x0A, 0x05, 0x01])  // field 1, length 5, but only one byte follows
        #expect(throws: WireError(.malformedProtobuf, "")) {
            try ProtobufFraming.readDelimited(PBIdentify.self, from: &buffer, maximumLength: 4096)
        }
        #expect(buffer.readerIndex == 0)
    }

    @Test func missingRequiredFieldIsMalformed() {
        // A PublicKey with only its Type field: Data is required (peer-ids spec).
        #expect(throws: WireError(.malformedProtobuf, "")) {
            try ProtobufFraming.decode(PBPublicKey.self, from: [0x08, 0x01], maximumLength: 64)
        }
    }

    // py-libp2p 0.8.1 defines circuit messages in proto3 and leaves out `type = RESERVE` (0).
    // Punch must still read such a message, and must itself always write the type.
    @Test func hopReserveWithoutTypeFieldDecodesAsReserve() throws {
        let decoded = try ProtobufFraming.decode(PBRelayHopMessage.self, from: [], maximumLength: 64)
        #expect(decoded.type == .reserve)
        var reserve = PBRelayHopMessage()
        reserve.type = .reserve
        #expect(try ProtobufFraming.encode(reserve) == [0x08, 0x00])
    }

    @Test func autonatDialRequestWireBytes() throws {
        var request = PBAutoNATv2DialRequest()
        request.addrs = [Data([4, 1, 2, 3, 4])]
        request.nonce = 0x0102030405060708
        var message = PBAutoNATv2Message()
        message.dialRequest = request
        let bytes = try ProtobufFraming.encode(message)
        // field 1 (dialRequest), then addrs (field 1, bytes) and nonce (field 2, fixed64, little endian).
        #expect(bytes == [0x0A, 0x10, 0x0A, 0x05, 4, 1, 2, 3, 4, 0x11, 8, 7, 6, 5, 4, 3, 2, 1])
    }
}
