import NIOCore
import Testing

@testable import PunchWire

@Suite struct VarintTests {
    // Examples from the multiformats unsigned-varint README.
    static let examples: [(UInt64, [UInt8])] = [
        (1, [0x01]), (127, [0x7F]), (128, [0x80, 0x01]), (255, [0xFF, 0x01]),
        (300, [0xAC, 0x02]), (16384, [0x80, 0x80, 0x01]),
        ((1 << 63) - 1, [0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F]),
    ]

    @Test func encodesSpecExamples() {
        for (value, bytes) in Self.examples {
            #expect(Varint.encode(value) == bytes, "\(value)")
            #expect(Varint.encodedLength(value) == bytes.count)
        }
    }

    @Test func decodesSpecExamples() throws {
        for (value, bytes) in Self.examples {
            let decoded = try #require(try Varint.decode(prefixOf: bytes + [0xAA]))
            #expect(decoded.value == value)
            #expect(decoded.length == bytes.count)
        }
    }

    @Test func incompleteVarintNeedsMoreBytes() throws {
        #expect(try Varint.decode(prefixOf: [UInt8]()) == nil)
        #expect(try Varint.decode(prefixOf: [0x80, 0x80]) == nil)
    }

    @Test func tenthByteIsOverflow() {
        let tooLong: [UInt8] = Array(repeating: 0xFF, count: 9) + [0x01]
        #expect(throws: WireError(.varintOverflow, "")) { try Varint.decode(prefixOf: tooLong) }
        // Nine continuation bytes can never complete: refused without waiting for more input.
        #expect(throws: WireError(.varintOverflow, "")) { try Varint.decode(prefixOf: Array(repeating: 0x80, count: 9)) }
    }

    @Test func nonMinimalEncodingIsRefused() {
        #expect(throws: WireError(.varintNotMinimal, "")) { try Varint.decode(prefixOf: [0x81, 0x00]) }
        #expect(throws: WireError(.varintNotMinimal, "")) { try Varint.decode(prefixOf: [0x80, 0x80, 0x00]) }
    }

    @Test func zeroIsOneByte() throws {
        #expect(Varint.encode(0) == [0x00])
        #expect(try Varint.decode(prefixOf: [0x00])?.value == 0)
    }

    @Test func byteBufferReadLeavesReaderIndexOnIncompleteOrBadInput() throws {
        var buffer = ByteBuffer(bytes: [0x80, 0x80])
        #expect(try buffer.readVarint() == nil)
        #expect(buffer.readerIndex == 0)

        var bad = ByteBuffer(bytes: [0x81, 0x00])
        #expect(throws: WireError.self) { try bad.readVarint() }
        #expect(bad.readerIndex == 0)

        var good = ByteBuffer()
        good.writeVarint(300)
        good.writeInteger(UInt8(9))
        #expect(try good.readVarint() == 300)
        #expect(good.readableBytes == 1)
    }

    @Test func lengthPrefixedMessageIsAllOrNothing() throws {
        var buffer = ByteBuffer()
        buffer.writeVarint(5)
        buffer.writeBytes([1, 2, 3])
        #expect(try buffer.readLengthPrefixedMessage(maximumLength: 100) == nil)
        #expect(buffer.readerIndex == 0)
        buffer.writeBytes([4, 5, 6])
        let message = try #require(try buffer.readLengthPrefixedMessage(maximumLength: 100))
        #expect(Array(message.readableBytesView) == [1, 2, 3, 4, 5])
        #expect(buffer.readableBytes == 1)
    }

    @Test func lengthPrefixAboveMaximumIsRefusedBeforeReading() {
        var buffer = ByteBuffer()
        buffer.writeVarint(4097)
        #expect(throws: WireError(.tooLarge, "")) { try buffer.readLengthPrefixedMessage(maximumLength: 4096) }
        #expect(buffer.readerIndex == 0)
    }
}
