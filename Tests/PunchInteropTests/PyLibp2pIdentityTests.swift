import Foundation
import Punch
import Testing

/// Punch's identities and envelopes against the real py-libp2p 0.8.1.
@Suite struct PyLibp2pIdentityTests {
    let script = ExternalTools.repositoryRoot.appendingPathComponent("Interop/py/identity.py").path

    func temporaryDirectory() throws -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("punch-interop-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }

    @Test func peerIDFromPunchIdParsesInPyLibp2pAndMatchesItsKey() throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let keyFile = directory.appendingPathComponent("identity.key").path

        let punch = try ExternalTools.run(try ExternalTools.punchBinary(), ["id", "--identity", keyFile, "--json"])
        #expect(punch.status == 0, "punch id failed: \(punch.stderr)")
        let printed = try ExternalTools.jsonObject(punch.stdout)
        let peerID = try #require(printed["peer_id"] as? String)
        let publicKey = try #require(printed["public_key"] as? String)
        #expect(printed["created"] as? Bool == true)

        let python = try ExternalTools.run(try ExternalTools.python(), [script, "check-peer-id", peerID, publicKey])
        #expect(python.status == 0, "py-libp2p disagrees: \(python.stdout) \(python.stderr)")
        let checked = try ExternalTools.jsonObject(python.stdout)
        #expect(checked["parsed"] as? String == peerID)
        #expect(checked["derived_from_key"] as? String == peerID)
        #expect(checked["extracted_key_matches"] as? Bool == true)
        // py-cid's CIDv1 text form of the same PeerID equals Punch's.
        #expect(checked["cid"] as? String == (try PeerID(peerID)).cidString)

        // The identity persists: a second run prints the same PeerID from the same file.
        let again = try ExternalTools.jsonObject(try ExternalTools.run(try ExternalTools.punchBinary(), ["id", "--identity", keyFile, "--json"]).stdout)
        #expect(again["peer_id"] as? String == peerID)
        #expect(again["created"] as? Bool == false)
    }

    @Test func peerRecordSealedByPunchVerifiesInPyLibp2p() throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let key = PrivateKey.generate()
        var record = PBPeerRecord()
        record.peerID = Data(key.peerID.bytes)
        record.seq = 42
        var address = PBPeerRecord.AddressInfo()
        address.multiaddr = Data(try Multiaddr("/ip4/203.0.113.10/tcp/4001").bytes)
        record.addresses = [address]
        let envelope = try SignedEnvelope.seal(
            payload: try ProtobufFraming.encode(record), payloadType: SignedEnvelope.PayloadType.peerRecord,
            domain: SignedEnvelope.Domain.peerRecord, with: key)
        let file = directory.appendingPathComponent("record.envelope")
        try Data(envelope.encoded).write(to: file)

        let python = try ExternalTools.run(try ExternalTools.python(), [script, "open-peer-record", file.path])
        #expect(python.status == 0, "py-libp2p refused Punch's envelope: \(python.stderr)")
        let opened = try ExternalTools.jsonObject(python.stdout)
        #expect(opened["signer"] as? String == key.peerID.description)
        #expect(opened["record_peer_id"] as? String == key.peerID.description)
        #expect(opened["seq"] as? Int == 42)
        #expect(opened["addrs"] as? [String] == ["/ip4/203.0.113.10/tcp/4001"])
    }

    @Test func peerRecordSealedByPyLibp2pOpensInPunch() throws {
        let python = try ExternalTools.run(try ExternalTools.python(), [script, "seal-peer-record", "/ip4/198.51.100.7/udp/4001/quic-v1"])
        #expect(python.status == 0, "py-libp2p failed: \(python.stderr)")
        let sealed = try ExternalTools.jsonObject(python.stdout)
        let envelopeText = try #require(sealed["envelope"] as? String)
        let envelopeBytes = try #require(Data(base64Encoded: envelopeText))
        let envelope = try SignedEnvelope.open(
            Array(envelopeBytes), domain: SignedEnvelope.Domain.peerRecord, payloadType: SignedEnvelope.PayloadType.peerRecord)
        #expect(envelope.signer.description == sealed["peer_id"] as? String)
        let record = try ProtobufFraming.decode(PBPeerRecord.self, from: envelope.payload, maximumLength: 4096)
        #expect(try PeerID(bytes: record.peerID) == envelope.signer)
        #expect(record.seq == 7)
        #expect(try record.addresses.map { try Multiaddr(bytes: $0.multiaddr).description } == ["/ip4/198.51.100.7/udp/4001/quic-v1"])
        // The same envelope must not verify in another domain.
        #expect(throws: PunchCryptoError(.invalidSignature, "")) {
            try SignedEnvelope.open(Array(envelopeBytes), domain: SignedEnvelope.Domain.relayVoucher, payloadType: SignedEnvelope.PayloadType.peerRecord)
        }
    }
}
