import PunchWire

// Invariants: the NAT-PMP and PCP decoders never crash on any datagram; what they decode
// re-encodes to bytes that decode to the same value (PCP also to the same bytes, since its
// options are kept verbatim and padding is zero in what Punch writes).
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzPortMapping(_ start: UnsafeRawPointer, _ count: Int) -> CInt {
    let bytes = Array(UnsafeRawBufferPointer(start: start, count: count))
    if let response = try? NATPMPResponse.decode(bytes) {
        let again = try! NATPMPResponse.decode(response.encoded)
        precondition(again == response, "NAT-PMP response does not round-trip")
    }
    if let response = try? PCPResponse.decode(bytes) {
        let again = try! PCPResponse.decode(response.encoded)
        precondition(again == response, "PCP response does not round-trip")
    }
    if let request = try? PCPRequest.decode(bytes) {
        let again = try! PCPRequest.decode(request.encoded)
        precondition(again == request, "PCP request does not round-trip")
    }
    return 0
}
