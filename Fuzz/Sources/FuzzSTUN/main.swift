import NIOCore
import PunchWire

// Invariants: the stream decoder either returns a whole message, returns nil without moving the
// reader, or throws without moving the reader; a decoded message re-encodes (with its integrity
// and fingerprint attributes recomputed) into a message that decodes to the same value; integrity
// verification never crashes on hostile input.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzSTUN(_ start: UnsafeRawPointer, _ count: Int) -> CInt {
    let bytes = Array(UnsafeRawBufferPointer(start: start, count: count))
    var buffer = ByteBuffer(bytes: bytes)
    do {
        guard let message = try STUNMessage.decode(from: &buffer, maximumLength: 4096) else {
            precondition(buffer.readerIndex == 0, "reader moved on an incomplete message")
            return 0
        }
        _ = try? message.verifyIntegrity(key: .shortTerm(password: "fuzz"))
        _ = message.unknownComprehensionRequiredAttributes
        if let encoded = try? message.encoded(integrity: nil, fingerprint: message.hasFingerprint) {
            let again = try STUNMessage.decode(datagram: encoded, maximumLength: 1 << 16)
            precondition(again.type == message.type && again.transactionID == message.transactionID, "header does not round-trip")
        }
    } catch {
        precondition(buffer.readerIndex == 0, "reader moved on a bad message")
    }
    if STUNMessage.looksLikeSTUN(bytes) == false {
        precondition((try? STUNMessage.decode(datagram: bytes)) == nil, "decoded a datagram that does not look like STUN")
    }
    return 0
}
