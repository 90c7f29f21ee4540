"""py-libp2p side of Punch's identity interop tests (Tests/PunchInteropTests).

Each subcommand prints one JSON object and exits 0 on success, 1 on a mismatch.

  check-peer-id PEER_ID PUBLIC_KEY_B64
      Parses PEER_ID with py-libp2p, derives the PeerID from the PublicKey protobuf, compares,
      and computes the CIDv1 text form with py-cid for Punch to compare with its own.
  open-peer-record FILE
      Verifies a signed envelope (domain libp2p-peer-record) written by Punch, prints the record.
  seal-peer-record ADDR...
      Creates a new py-libp2p identity, seals a peer record with ADDRs, prints the envelope.
"""

import base64
import json
import sys

import multiaddr
from cid import make_cid

from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.crypto.serialization import deserialize_public_key
from libp2p.peer.envelope import consume_envelope, seal_record
from libp2p.peer.id import ID
from libp2p.peer.peer_record import PeerRecord


def check_peer_id(peer_id_text: str, public_key_b64: str) -> int:
    parsed = ID.from_base58(peer_id_text)
    key = deserialize_public_key(base64.b64decode(public_key_b64))
    derived = ID.from_pubkey(key)
    cid = make_cid(1, "libp2p-key", parsed.to_bytes()).encode("base32").decode()
    result = {
        "parsed": parsed.to_base58(),
        "derived_from_key": derived.to_base58(),
        "extracted_key_matches": parsed.extract_public_key() is not None
        and parsed.extract_public_key().serialize() == key.serialize(),
        "cid": cid,
    }
    print(json.dumps(result))
    return 0 if parsed == derived and result["extracted_key_matches"] else 1


def open_peer_record(path: str) -> int:
    with open(path, "rb") as f:
        data = f.read()
    envelope, record = consume_envelope(data, "libp2p-peer-record")
    print(
        json.dumps(
            {
                "signer": ID.from_pubkey(envelope.public_key).to_base58(),
                "record_peer_id": record.peer_id.to_base58(),
                "seq": record.seq,
                "addrs": [str(a) for a in record.addrs],
            }
        )
    )
    return 0


def seal_peer_record(addrs: list[str]) -> int:
    key_pair = create_new_key_pair()
    peer_id = ID.from_pubkey(key_pair.public_key)
    record = PeerRecord(peer_id, [multiaddr.Multiaddr(a) for a in addrs], 7)
    envelope = seal_record(record, key_pair.private_key)
    print(
        json.dumps(
            {
                "peer_id": peer_id.to_base58(),
                "envelope": base64.b64encode(envelope.marshal_envelope()).decode(),
            }
        )
    )
    return 0


def main() -> int:
    command, args = sys.argv[1], sys.argv[2:]
    if command == "check-peer-id":
        return check_peer_id(*args)
    if command == "open-peer-record":
        return open_peer_record(*args)
    if command == "seal-peer-record":
        return seal_peer_record(args)
    print(f"unknown command {command}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
