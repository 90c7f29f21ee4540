import NIOCore
import Testing

@testable import PunchTransport

@Suite struct NoiseFrameAssemblerTests {
    static func frames(_ messages: [[UInt8]]) -> ByteBuffer {
        var wire = ByteBuffer()
        for message in messages {
            wire.writeInteger(UInt16(message.count))
            wire.writeBytes(message)
        }
        return wire
    }

    /// Feeds `wire` in pieces cut at `cuts` and returns the messages assembled.
    static func assemble(_ wire: ByteBuffer, cuts: [Int], maximumLength: Int = 65535) throws -> [[UInt8]] {
        var assembler = NoiseFrameAssembler(allocator: ByteBufferAllocator())
        var messages: [[UInt8]] = []
        var start = 0
        for end in cuts + [wire.readableBytes] where end >= start {
            var piece = wire.getSlice(at: start, length: end - start)!
            start = end
            while try assembler.consume(&piece, maximumLength: maximumLength) {
                messages.append(assembler.message)
                assembler.reset()
            }
            #expect(piece.readableBytes == 0)
        }
        return messages
    }

    @Test func everySplitPointYieldsTheSameMessages() throws {
        let messages: [[UInt8]] = [[1, 2, 3], [], Array(repeating: 7, count: 300), [9]]
        let wire = Self.frames(messages)
        for cut in 0...wire.readableBytes {
            #expect(try Self.assemble(wire, cuts: [cut]) == messages, "cut at \(cut)")
        }
        #expect(try Self.assemble(wire, cuts: Array(1..<wire.readableBytes)) == messages)
    }

    @Test func bytesOfTheNextFrameStayInTheCallersBuffer() throws {
        var assembler = NoiseFrameAssembler(allocator: ByteBufferAllocator())
        var wire = Self.frames([[1, 2], [3, 4, 5]])
        #expect(try assembler.consume(&wire, maximumLength: 100))
        #expect(assembler.message == [1, 2])
        #expect(wire.readableBytes == 2 + 3)
        // Until reset, the finished message stays and nothing more is taken.
        #expect(try assembler.consume(&wire, maximumLength: 100))
        #expect(wire.readableBytes == 5)
        assembler.reset()
        #expect(try assembler.consume(&wire, maximumLength: 100))
        #expect(assembler.message == [3, 4, 5])
    }

    @Test func lendsTheWholeMessageAndKnowsFrameBoundaries() throws {
        var assembler = NoiseFrameAssembler(allocator: ByteBufferAllocator())
        #expect(assembler.isAtFrameBoundary)
        var wire = Self.frames([[0xAA, 0xBB]])
        var head = wire.readSlice(length: 3)!
        #expect(try !assembler.consume(&head, maximumLength: 100))
        #expect(!assembler.isAtFrameBoundary)
        #expect(try assembler.consume(&wire, maximumLength: 100))
        #expect(assembler.withMessage { Array($0) } == [0xAA, 0xBB])
        assembler.reset()
        #expect(assembler.isAtFrameBoundary)
    }

    @Test func oversizedLengthIsRefusedBeforeTheBody() throws {
        var assembler = NoiseFrameAssembler(allocator: ByteBufferAllocator())
        var header = ByteBuffer(bytes: [0x01])
        #expect(try !assembler.consume(&header, maximumLength: 256))
        var second = ByteBuffer(bytes: [0x01])
        #expect(throws: TransportError(.noiseFrameTooLarge, "")) { try assembler.consume(&second, maximumLength: 256) }
        var exact = ByteBuffer(bytes: [0x01, 0x00])
        var fresh = NoiseFrameAssembler(allocator: ByteBufferAllocator())
        #expect(try !fresh.consume(&exact, maximumLength: 256))
    }
}
