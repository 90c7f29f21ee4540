import Punch

// Invariants: binary -> Multiaddr -> binary is the identity, text form round-trips, and any
// /p2p value decoded as a PeerID gives the same bytes back.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzMultiaddr(_ start: UnsafeRawPointer, _ count: Int) -> CInt {
    let bytes = Array(UnsafeRawBufferPointer(start: start, count: count))
    if let address = try? Multiaddr(bytes: bytes) {
        precondition(address.bytes == bytes, "binary multiaddr does not round-trip")
        let reparsed = try? Multiaddr(address.description)
        precondition(reparsed == address, "text multiaddr does not round-trip: \(address)")
        if let peer = address.peerID, let id = try? PeerID(multihash: peer) {
            precondition(id.bytes == peer.bytes)
        }
    }
    // The same bytes as text, for the text parser.
    if let text = String(validating: bytes, as: UTF8.self), let address = try? Multiaddr(text) {
        precondition((try? Multiaddr(bytes: address.bytes)) == address, "text-parsed multiaddr does not round-trip")
    }
    _ = try? PeerID(bytes: bytes)
    return 0
}
