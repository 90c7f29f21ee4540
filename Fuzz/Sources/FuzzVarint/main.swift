import NIOCore
import PunchWire

// Invariants: a decoded varint re-encodes to exactly the bytes it was read from (the decoder
// accepts only minimal encodings), and the ByteBuffer reader never moves on failure.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzVarint(_ start: UnsafeRawPointer, _ count: Int) -> CInt {
    let bytes = Array(UnsafeRawBufferPointer(start: start, count: count))
    if let (value, length) = try? Varint.decode(prefixOf: bytes) {
        precondition(Varint.encode(value) == Array(bytes[0..<length]), "varint does not round-trip")
        precondition(length <= Varint.maximumLength)
    }
    var buffer = ByteBuffer(bytes: bytes)
    do {
        if try buffer.readLengthPrefixedMessage(maximumLength: 4096) == nil {
            precondition(buffer.readerIndex == 0, "reader moved on an incomplete frame")
        }
    } catch {
        precondition(buffer.readerIndex == 0, "reader moved on a bad frame")
    }
    return 0
}
