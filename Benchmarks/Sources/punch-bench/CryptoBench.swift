import Crypto
import PunchCrypto

/// The CPU-only measurements: ChaChaPoly on libp2p Noise's largest frames, and whole Noise XX
/// handshakes. Each runs on the calling thread, so on one core.
enum CryptoBench {
    /// The largest plaintext of one libp2p Noise transport message (65535 minus the tag).
    static let framePlaintext = NoiseTransportState.maximumPlaintextLength

    /// Runs `batch` until `seconds` have passed; returns (batches, elapsed seconds).
    private static func timed(seconds: Double, _ batch: () throws -> Void) rethrows -> (Int, Double) {
        let budget = UInt64(seconds * 1e9)
        let start = nanoseconds()
        var batches = 0
        var elapsed: UInt64 = 0
        repeat {
            try batch()
            batches += 1
            elapsed = nanoseconds() - start
        } while elapsed < budget
        return (batches, Double(elapsed) / 1e9)
    }

    /// swift-crypto's `ChaChaPoly.seal` on 65519-byte plaintexts with Noise nonces, MiB/s: the
    /// same call `NoiseCipherState` makes (raw bytes in, empty associated data), without the
    /// Noise bookkeeping around it.
    static func seal(seconds: Double) -> Double {
        let key = SymmetricKey(size: .bits256)
        let plaintext = [UInt8](repeating: 0x5A, count: framePlaintext)
        var counter: UInt64 = 0
        var sink: UInt8 = 0
        let perBatch = 16
        let (batches, elapsed) = timed(seconds: seconds) {
            for _ in 0..<perBatch {
                var nonce = [UInt8](repeating: 0, count: 12)
                withUnsafeBytes(of: counter.littleEndian) { nonce.replaceSubrange(4..<12, with: $0) }
                counter += 1
                let box = try! plaintext.withUnsafeBytes { try ChaChaPoly.seal($0, using: key, nonce: ChaChaPoly.Nonce(data: nonce), authenticating: [UInt8]()) }
                sink ^= box.combined.withUnsafeBytes { $0[$0.count - 1] }
            }
        }
        blackHole(sink)
        return Double(batches * perBatch * framePlaintext) / mebibyte / elapsed
    }

    /// A transport state pair from a real libp2p Noise handshake: initiator's, responder's.
    static func transportPair() throws -> (NoiseTransportState, NoiseTransportState) {
        let initiatorKey = PrivateKey.generate()
        let responderKey = PrivateKey.generate()
        var initiator = LibP2PNoiseHandshake(role: .initiator, identity: initiatorKey, expectedRemotePeerID: responderKey.peerID)
        var responder = LibP2PNoiseHandshake(role: .responder, identity: responderKey)
        guard case .send(let message1) = try initiator.start(), case .wait = try responder.start(),
            case .send(let message2) = try responder.receive(message1),
            case .sendAndComplete(let message3, let initiatorOutcome) = try initiator.receive(message2),
            case .complete(let responderOutcome) = try responder.receive(message3)
        else {
            throw BenchmarkError("the in-process Noise handshake took an unexpected turn")
        }
        return (initiatorOutcome.transport, responderOutcome.transport)
    }

    /// The project's send path, `NoiseCipherState.encrypt(_:into:)` (what `NoiseHandler` calls per
    /// frame: sealed straight into the frame buffer), on 65519-byte plaintexts, MiB/s.
    static func encrypt(seconds: Double) throws -> Double {
        var (transport, _) = try transportPair()
        let plaintext = [UInt8](repeating: 0x5A, count: framePlaintext)
        let frame = UnsafeMutableRawBufferPointer.allocate(byteCount: framePlaintext + NoiseCipherState.tagLength, alignment: 16)
        defer { frame.deallocate() }
        var sink: UInt8 = 0
        let perBatch = 16
        let (batches, elapsed) = try timed(seconds: seconds) {
            try plaintext.withUnsafeBytes { bytes in
                for _ in 0..<perBatch {
                    try transport.sender.encrypt(bytes, into: frame)
                    sink ^= frame[frame.count - 1]
                }
            }
        }
        blackHole(sink)
        return Double(batches * perBatch * framePlaintext) / mebibyte / elapsed
    }

    /// The project's receive path, `NoiseCipherState.decrypt(_:into:)` (frame to plaintext
    /// buffer), on 65519-byte plaintexts, MiB/s. Frames are encrypted by the peer's state in
    /// batches outside the timed part.
    static func decrypt(seconds: Double) throws -> Double {
        var (sender, receiver) = try transportPair()
        let plaintext = [UInt8](repeating: 0x5A, count: framePlaintext)
        let perBatch = 16
        let frameSize = framePlaintext + NoiseCipherState.tagLength
        let frames = UnsafeMutableRawBufferPointer.allocate(byteCount: perBatch * frameSize, alignment: 16)
        defer { frames.deallocate() }
        let output = UnsafeMutableRawBufferPointer.allocate(byteCount: framePlaintext, alignment: 16)
        defer { output.deallocate() }
        var sink: UInt8 = 0
        var timedNanoseconds: UInt64 = 0
        var decrypted = 0
        let budget = UInt64(seconds * 1e9)
        func frame(_ index: Int) -> UnsafeMutableRawBufferPointer {
            UnsafeMutableRawBufferPointer(rebasing: frames[(index * frameSize)..<((index + 1) * frameSize)])
        }
        while timedNanoseconds < budget {
            try plaintext.withUnsafeBytes { bytes in
                for index in 0..<perBatch {
                    try sender.sender.encrypt(bytes, into: frame(index))
                }
            }
            let start = nanoseconds()
            for index in 0..<perBatch {
                try receiver.receiver.decrypt(UnsafeRawBufferPointer(frame(index)), into: output)
                sink ^= output[output.count - 1]
            }
            timedNanoseconds += nanoseconds() - start
            decrypted += perBatch
        }
        blackHole(sink)
        return Double(decrypted * framePlaintext) / mebibyte / (Double(timedNanoseconds) / 1e9)
    }

    /// Whole libp2p Noise XX handshakes per second, both sides in this thread: fresh static
    /// X25519 keys, three messages, Ed25519 signing and verifying of both payloads, PeerID check.
    static func handshakes(seconds: Double) throws -> Double {
        let initiatorKey = PrivateKey.generate()
        let responderKey = PrivateKey.generate()
        let responderPeer = responderKey.peerID
        let (batches, elapsed) = try timed(seconds: seconds) {
            var initiator = LibP2PNoiseHandshake(role: .initiator, identity: initiatorKey, expectedRemotePeerID: responderPeer)
            var responder = LibP2PNoiseHandshake(role: .responder, identity: responderKey)
            guard case .send(let message1) = try initiator.start(), case .wait = try responder.start(),
                case .send(let message2) = try responder.receive(message1),
                case .sendAndComplete(let message3, let outcome) = try initiator.receive(message2),
                case .complete(let answer) = try responder.receive(message3),
                outcome.transport.handshakeHash == answer.transport.handshakeHash
            else {
                throw BenchmarkError("the in-process Noise handshake took an unexpected turn")
            }
        }
        return Double(batches) / elapsed
    }
}
