import Punch
import SwiftProtobuf

// Every libp2p message Punch reads from the network, through the same bounded entry point the
// protocols use, plus the decoders built on them (keys, envelopes). The first byte picks the
// message type so one corpus covers all of them.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzProtobuf(_ start: UnsafeRawPointer, _ count: Int) -> CInt {
    guard count > 0 else { return 0 }
    let raw = UnsafeRawBufferPointer(start: start, count: count)
    let selector = raw[0]
    let bytes = Array(raw.dropFirst())
    switch selector % 11 {
    case 0: roundTrip(PBIdentify.self, bytes)
    case 1: roundTrip(PBRelayHopMessage.self, bytes)
    case 2: roundTrip(PBRelayStopMessage.self, bytes)
    case 3: roundTrip(PBRelayVoucher.self, bytes)
    case 4: roundTrip(PBHolePunch.self, bytes)
    case 5: roundTrip(PBAutoNATv2Message.self, bytes)
    case 6: roundTrip(PBAutoNATv2DialBack.self, bytes)
    case 7: roundTrip(PBNoiseHandshakePayload.self, bytes)
    case 8: roundTrip(PBPeerRecord.self, bytes)
    case 9:
        if let key = try? PublicKey(protobufEncoded: bytes) {
            precondition((try? PublicKey(protobufEncoded: key.protobufEncoded)) == key)
        }
        _ = try? PrivateKey(protobufEncoded: bytes)
    default:
        if let envelope = try? SignedEnvelope.open(bytes, domain: "fuzz", payloadType: [0x03, 0x01]) {
            precondition((try? SignedEnvelope.open(envelope.encoded, domain: "fuzz", payloadType: [0x03, 0x01])) == envelope)
        }
    }
    return 0
}

/// Decodes, re-encodes and decodes again: the two decoded values must be equal.
func roundTrip<Message: SwiftProtobuf.Message>(_ type: Message.Type, _ bytes: [UInt8]) {
    guard let message = try? ProtobufFraming.decode(type, from: bytes, maximumLength: 4096) else { return }
    guard let encoded = try? ProtobufFraming.encode(message) else { return }
    let again = try? ProtobufFraming.decode(type, from: encoded, maximumLength: 1 << 20)
    precondition(again.map { message.isEqualTo(message: $0) } == true, "\(Message.protoMessageName) does not round-trip")
}
