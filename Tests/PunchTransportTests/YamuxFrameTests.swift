import NIOCore
import Testing

@testable import PunchTransport

@Suite struct YamuxFrameTests {
    private func encoded(_ frame: YamuxFrame) -> [UInt8] {
        var buffer = ByteBuffer()
        frame.encode(into: &buffer)
        return Array(buffer.readableBytesView)
    }

    @Test func windowUpdateSYNForStreamOneIsTwelveBytesBigEndian() {
        let bytes = self.encoded(.windowUpdate(streamID: 1, flags: .syn, delta: 0))
        #expect(bytes == [0x00, 0x01, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00])
    }

    @Test func dataFrameCarriesLengthThenPayload() {
        let bytes = self.encoded(.data(streamID: 0x0102_0304, flags: [.ack, .fin], payload: ByteBuffer(string: "hi!")))
        #expect(bytes == [0x00, 0x00, 0x00, 0x06, 0x01, 0x02, 0x03, 0x04, 0x00, 0x00, 0x00, 0x03, 0x68, 0x69, 0x21])
    }

    @Test func pingAndGoAwayUseStreamZero() {
        #expect(
            self.encoded(.ping(flags: .ack, opaque: 0xDEAD_BEEF))
                == [0x00, 0x02, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00, 0xDE, 0xAD, 0xBE, 0xEF]
        )
        #expect(
            self.encoded(.goAway(.protocolError))
                == [0x00, 0x03, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01]
        )
        #expect(
            self.encoded(.windowUpdate(streamID: 2, flags: .rst))
                == [0x00, 0x01, 0x00, 0x08, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00]
        )
    }

    @Test func roundTripsEveryType() throws {
        let frames: [YamuxFrame] = [
            .data(streamID: 3, flags: .syn, payload: ByteBuffer(repeating: 7, count: 1000)),
            .data(streamID: 5, flags: .fin, payload: ByteBuffer()),
            .windowUpdate(streamID: 4, flags: .ack, delta: 262_144),
            .ping(flags: .syn, opaque: 42),
            .goAway(.internalError),
        ]
        var buffer = ByteBuffer()
        for frame in frames {
            frame.encode(into: &buffer)
        }
        for frame in frames {
            let decoded = try #require(try YamuxFrame.decode(from: &buffer, maximumDataLength: 1 << 20))
            #expect(decoded == frame)
            #expect(decoded.encodedLength == frame.encodedLength)
        }
        #expect(buffer.readableBytes == 0)
        #expect(try YamuxFrame.decode(from: &buffer, maximumDataLength: 1 << 20) == nil)
    }

    @Test func partialFramesDecodeToNilWithoutConsuming() throws {
        var whole = ByteBuffer()
        YamuxFrame.data(streamID: 1, payload: ByteBuffer(string: "hello world")).encode(into: &whole)
        let bytes = Array(whole.readableBytesView)
        for cut in 0..<bytes.count {
            var partial = ByteBuffer(bytes: bytes[..<cut])
            #expect(try YamuxFrame.decode(from: &partial, maximumDataLength: 1024) == nil)
            #expect(partial.readableBytes == cut)
        }
        var complete = ByteBuffer(bytes: bytes)
        let frame = try #require(try YamuxFrame.decode(from: &complete, maximumDataLength: 1024))
        #expect(frame.payload == ByteBuffer(string: "hello world"))
    }

    @Test func payloadIsASliceOfTheReceivedBytes() throws {
        var buffer = ByteBuffer()
        YamuxFrame.data(streamID: 1, payload: ByteBuffer(repeating: 1, count: 4096)).encode(into: &buffer)
        let frame = try #require(try YamuxFrame.decode(from: &buffer, maximumDataLength: 1 << 20))
        let sharesStorage = frame.payload.withUnsafeReadableBytes { payload in
            buffer.withVeryUnsafeBytes { whole in
                payload.baseAddress! == whole.baseAddress! + YamuxFrame.headerLength
            }
        }
        #expect(sharesStorage)
    }

    @Test func unknownVersionIsRejectedWithoutConsuming() {
        var buffer = ByteBuffer(bytes: [0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00])
        #expect(throws: TransportError(.yamuxInvalidVersion, "")) {
            try YamuxFrame.decode(from: &buffer, maximumDataLength: 1024)
        }
        #expect(buffer.readableBytes == 12)
    }

    @Test func unknownTypeIsRejected() {
        var buffer = ByteBuffer(bytes: [0x00, 0x04, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00])
        #expect(throws: TransportError(.yamuxInvalidFrameType, "")) {
            try YamuxFrame.decode(from: &buffer, maximumDataLength: 1024)
        }
        #expect(buffer.readableBytes == 12)
    }

    @Test func oversizedDataFrameIsRejectedFromTheHeaderAlone() {
        // Only the header is present: the error must not wait for the 2 MiB payload.
        var buffer = ByteBuffer(bytes: [0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x20, 0x00, 0x00])
        #expect(throws: TransportError(.yamuxFrameTooLarge, "")) {
            try YamuxFrame.decode(from: &buffer, maximumDataLength: 256 * 1024)
        }
        #expect(buffer.readableBytes == 12)
    }

    @Test func windowUpdateLengthIsNotLimitedByTheDataMaximum() throws {
        var buffer = ByteBuffer()
        YamuxFrame.windowUpdate(streamID: 1, delta: 16 * 1024 * 1024).encode(into: &buffer)
        let frame = try #require(try YamuxFrame.decode(from: &buffer, maximumDataLength: 1024))
        #expect(frame.length == 16 * 1024 * 1024)
    }

    @Test func unknownFlagBitsAreKept() throws {
        var buffer = ByteBuffer(bytes: [0x00, 0x01, 0x00, 0x13, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00])
        let frame = try #require(try YamuxFrame.decode(from: &buffer, maximumDataLength: 1024))
        #expect(frame.flags.contains(.syn))
        #expect(frame.flags.rawValue == 0x13)
    }

    @Test func goAwayCodesDescribeThemselves() {
        #expect(YamuxGoAwayCode.normal.description == "normal termination (0)")
        #expect(YamuxGoAwayCode(rawValue: 3).description == "code 3")
    }
}
