"""py-libp2p 0.8.1 peer for Punch's connection interop tests (Tests/PunchInteropTests).

The host is built by hand so that it speaks exactly what Punch speaks: an Ed25519 identity, TCP,
Noise (`/noise`) as the ONLY security protocol (py-libp2p's new_host() would also offer TLS,
`/secio/1.0.0` and `/plaintext/2.0.0`), and yamux (`/yamux/1.0.0`) as the ONLY muxer (no mplex).
It serves ping (`/ipfs/ping/1.0.0`), identify (`/ipfs/id/1.0.0`, plus py-libp2p's identify push
handler) and `/punch/echo/1.0.0`.

  listen [--port 0] [--seed HEX]
      Listens on /ip4/127.0.0.1/tcp/PORT. Prints one line once listening:
        {"event":"listening","peer_id":...,"addrs":["/ip4/127.0.0.1/tcp/PORT/p2p/PEER"]}
      (addrs carry the /p2p suffix so each one can be dialed as is), then
        {"event":"connected","peer_id":...,"direction":...,"remote_addr":...} per connection and
        {"event":"echo","bytes":N} per completed echo stream.
      Runs until stdin reaches EOF or SIGTERM/SIGINT, then exits 0.
  dial MULTIADDR [--bytes N] [--seed HEX] [--timeout S]
      MULTIADDR is /ip4/127.0.0.1/tcp/PORT/p2p/PEER. Connects, pings 3 times, opens identify and
      checks the remote's public key against PEER, echoes N random bytes (default 1 MiB), prints
        {"event":"result","ok":true,"peer_id":...,"ping_rtt_ms":[...],"identify":{...},
         "echo_bytes":N,"echo_seconds":S}
      and exits 0; on failure prints {"event":"error","step":"connect|ping|identify|echo",
      "message":...}, a human message on stderr, and exits 1. Exit 2: bad arguments.

--seed HEX is a 32-byte Ed25519 seed (64 hex digits); without it the identity is random.

py-libp2p behaviour this relies on (read from the 0.8.1 source, see also the comments below):
- BasicHost runs identify by itself on every new connection, inbound and outbound (its network
  notifee `_IdentifyNotifee.connected` and `BasicHost.connect`), and answers identify with the
  observed address built from the socket's remote (ip, port) as /ip4/IP/tcp/PORT. Identify push
  (`/ipfs/id/push/1.0.0`) is only sent when the host starts listening on a new address while
  peers are connected, never on connect.
- Each inbound stream is handled in its own trio task (SwarmConn._handle_new_streams), so
  handlers run concurrently.
"""

import argparse
import json
import os
import signal
import socket
import sys
import time

import multiaddr
import trio

from libp2p import new_host
from libp2p.abc import INotifee
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.crypto.serialization import deserialize_public_key
from libp2p.crypto.x25519 import create_new_key_pair as create_new_x25519_key_pair
from libp2p.custom_types import TProtocol
from libp2p.host.ping import ID as PING_PROTOCOL, PING_LENGTH
from libp2p.identity.identify.identify import ID as IDENTIFY_PROTOCOL
from libp2p.identity.identify.pb.identify_pb2 import Identify
from libp2p.io.utils import read_exactly
from libp2p.network.config import ConnectionConfig
from libp2p.network.stream.exceptions import StreamEOF
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import info_from_p2p_addr
from libp2p.security.noise.transport import (
    PROTOCOL_ID as NOISE_PROTOCOL_ID,
    Transport as NoiseTransport,
)
from libp2p.stream_muxer.yamux.yamux import PROTOCOL_ID as YAMUX_PROTOCOL_ID, Yamux
from libp2p.transport.tcp.tcp import TCP
from libp2p.utils.varint import read_length_prefixed_protobuf

ECHO_PROTOCOL = TProtocol("/punch/echo/1.0.0")
CHUNK = 64 * 1024
PING_ROUNDS = 3


def emit(event: dict) -> None:
    """One JSON object per stdout line, flushed at once (the Swift side reads line by line)."""
    try:
        print(json.dumps(event), flush=True)
    except BrokenPipeError:
        pass


def key_pair_from(seed_hex: str | None):
    if seed_hex is None:
        return create_new_key_pair()
    seed = bytes.fromhex(seed_hex)
    if len(seed) != 32:
        raise ValueError(f"--seed must be 32 bytes (64 hex digits), got {len(seed)} bytes")
    return create_new_key_pair(seed)


def make_host(key_pair, connection_config: ConnectionConfig | None = None):
    """A BasicHost with Noise as its only security and yamux as its only muxer, over TCP.

    Passing sec_opt and muxer_opt replaces new_host()'s defaults outright (it uses
    `sec_opt or {...defaults...}`), so /secio/1.0.0, /plaintext/2.0.0, TLS and /mplex/6.7.0 are
    not registered with the upgrader at all: multistream-select answers `na` to them.
    """
    return new_host(
        connection_config=connection_config,
        key_pair=key_pair,
        sec_opt={
            NOISE_PROTOCOL_ID: NoiseTransport(
                key_pair, noise_privkey=create_new_x25519_key_pair().private_key
            )
        },
        muxer_opt={TProtocol(YAMUX_PROTOCOL_ID): Yamux},
        transports=[TCP()],
    )


async def stop_auto_connector(host) -> None:
    """A test peer dials only what it is told to.

    py-libp2p's swarm has an AutoConnector that, below min_connections (50), dials peers from
    the peerstore (e.g. the listen addrs a peer announced in identify) whenever a connection
    closes and every 30 s: a listener would dial back every dialer that has gone. Its stop()
    makes maybe_connect() a no-op.
    """
    await host.get_network().auto_connector.stop()


def port_taken(port: int) -> bool:
    """py-libp2p's TCP listener binds with SO_REUSEPORT, so listening on a port another
    SO_REUSEPORT listener holds succeeds and the kernel splits connections between the two.
    A bind without SO_REUSEPORT (SO_REUSEADDR only skips TIME_WAIT) tells whether it is free."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def remote_addr_of(conn) -> str | None:
    remote = conn.muxed_conn.get_remote_address()
    if remote is None:
        return None
    host, port = remote
    return f"/ip{'6' if ':' in host else '4'}/{host}/tcp/{port}"


class ConnectionEvents(INotifee):
    """Prints a `connected` line for each new connection."""

    async def connected(self, network, conn) -> None:
        direction = getattr(conn, "direction", None)  # rcmgr Direction (IntEnum) on SwarmConn
        emit(
            {
                "event": "connected",
                "peer_id": conn.muxed_conn.peer_id.to_base58(),
                "direction": getattr(direction, "name", str(direction)).lower(),
                "remote_addr": remote_addr_of(conn),
            }
        )

    async def disconnected(self, network, conn) -> None:
        pass

    async def opened_stream(self, network, stream) -> None:
        pass

    async def closed_stream(self, network, stream) -> None:
        pass

    async def listen(self, network, addr) -> None:
        pass

    async def listen_close(self, network, addr) -> None:
        pass


def echo_handler(report: bool):
    """The /punch/echo/1.0.0 handler; `report` prints an echo line per completed stream.

    yamux in py-libp2p: YamuxStream.close() is a half-close (it sends a FIN flag and keeps the
    read side open), and NetStream.close_write() calls it (yamux streams have no close_write of
    their own). A FIN from the remote marks the stream recv_closed; once the buffered data is
    drained, read() raises StreamEOF (MuxedStreamEOF underneath). read(n) returns whatever is
    buffered (up to n), not exactly n. So closing after EOF sends our FIN and the stream is then
    closed in both directions. (NetStream.close() also drops the stream from the connection's
    table and calls its state CLOSE_BOTH, even though yamux only half-closed it.)
    """

    async def handle_echo(stream) -> None:
        total = 0
        try:
            while True:
                try:
                    chunk = await stream.read(CHUNK)
                except StreamEOF:
                    break
                if not chunk:
                    break
                await stream.write(chunk)
                total += len(chunk)
            await stream.close()
        except Exception as error:
            print(f"echo stream failed after {total} bytes: {error!r}", file=sys.stderr, flush=True)
            try:
                await stream.reset()
            except Exception:
                pass
            return
        if report:
            emit({"event": "echo", "bytes": total})

    return handle_echo


async def wait_for_stdin_eof() -> None:
    # A blocking read in a worker thread: stdin may be a pipe, a file or a terminal, and trio's
    # FdStream would set O_NONBLOCK on a descriptor shared with the parent. The thread is
    # abandoned on cancellation (trio's worker threads are daemons, so exit does not wait).
    def read_to_eof() -> None:
        while os.read(sys.stdin.fileno(), 65536):
            pass

    try:
        await trio.to_thread.run_sync(read_to_eof, abandon_on_cancel=True)
    except OSError:
        # No usable stdin (closed descriptor): only a signal ends the listener.
        await trio.sleep_forever()


async def wait_for_signal() -> None:
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for _ in signals:
            return


async def listen(port: int, key_pair) -> int:
    if port != 0 and port_taken(port):
        return listen_failed(port)
    host = make_host(key_pair)
    host.set_stream_handler(ECHO_PROTOCOL, echo_handler(report=True))
    host.get_network().register_notifee(ConnectionEvents())
    async with host.run(listen_addrs=[multiaddr.Multiaddr(f"/ip4/127.0.0.1/tcp/{port}")]):
        await stop_auto_connector(host)
        addrs = [str(a) for a in host.get_addrs()]
        if not addrs:
            # Swarm.listen() logs and swallows bind errors; an empty address list is the sign.
            return listen_failed(port)
        emit({"event": "listening", "peer_id": host.get_id().to_base58(), "addrs": addrs})
        async with trio.open_nursery() as nursery:

            async def stop_when(waiter) -> None:
                await waiter()
                nursery.cancel_scope.cancel()

            nursery.start_soon(stop_when, wait_for_stdin_eof)
            nursery.start_soon(stop_when, wait_for_signal)
    return 0


def listen_failed(port: int) -> int:
    message = f"cannot listen on 127.0.0.1 port {port} (in use?)"
    emit({"event": "error", "step": "listen", "message": message})
    print(f"host.py listen: {message}", file=sys.stderr)
    return 1


class DialFailure(Exception):
    pass


async def ping(host, peer_id: ID) -> list[float]:
    """PING_ROUNDS round trips of 32 random bytes on one ping stream, RTTs in ms (float).

    py-libp2p's PingService.ping() reports whole milliseconds (0 on loopback), so the rounds are
    done here with its protocol constants and read_exactly.
    """
    stream = await host.new_stream(peer_id, [PING_PROTOCOL])
    rtts = []
    for _ in range(PING_ROUNDS):
        payload = os.urandom(PING_LENGTH)
        start = time.perf_counter()
        await stream.write(payload)
        reply = await read_exactly(stream, PING_LENGTH)
        rtts.append(round((time.perf_counter() - start) * 1000, 3))
        if reply != payload:
            await stream.reset()
            raise DialFailure("ping reply differs from the payload sent")
    await stream.close()
    return rtts


def multiaddr_text(data: bytes) -> str:
    try:
        return str(multiaddr.Multiaddr(data))
    except Exception:
        return "0x" + data.hex()


async def identify(host, peer_id: ID) -> dict:
    """Opens /ipfs/id/1.0.0 and reads the remote's one varint-length-prefixed Identify message."""
    stream = await host.new_stream(peer_id, [IDENTIFY_PROTOCOL])
    try:
        data = await read_length_prefixed_protobuf(stream, use_varint_format=True)
    finally:
        await stream.close()
    message = Identify()
    message.ParseFromString(data)
    if not message.HasField("public_key"):
        raise DialFailure("identify message has no public key")
    key_peer = ID.from_pubkey(deserialize_public_key(message.public_key))
    if key_peer != peer_id:
        raise DialFailure(f"identify public key is {key_peer}, not the dialed peer {peer_id}")
    return {
        "protocol_version": message.protocol_version,
        "agent_version": message.agent_version,
        "listen_addrs": [multiaddr_text(a) for a in message.listen_addrs],
        "observed_addr": multiaddr_text(message.observed_addr) if message.observed_addr else None,
        "protocols": list(message.protocols),
    }


async def echo(host, peer_id: ID, size: int) -> float:
    """Writes `size` random bytes, half-closes, reads until EOF, compares; returns seconds.

    Writing and reading run concurrently: yamux flow control would otherwise stall once the
    echoed bytes fill our receive window (py-libp2p's yamux write gives up with
    "Timed out waiting for window update after 5 seconds").
    """
    stream = await host.new_stream(peer_id, [ECHO_PROTOCOL])
    return await echo_over(stream, size)


async def echo_over(stream, size: int) -> float:
    """The echo of `echo` on a stream already negotiated for ECHO_PROTOCOL; closes it."""
    payload = os.urandom(size)
    received = bytearray()
    start = time.perf_counter()

    async def write_all() -> None:
        view = memoryview(payload)
        for offset in range(0, size, CHUNK):
            await stream.write(bytes(view[offset : offset + CHUNK]))
        await stream.close_write()  # yamux FIN; the read side stays open

    async def read_all() -> None:
        while True:
            try:
                chunk = await stream.read(CHUNK)
            except StreamEOF:
                return
            if not chunk:
                return
            received.extend(chunk)
            if len(received) > size:
                raise DialFailure(f"echo returned more than the {size} bytes sent")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(write_all)
        nursery.start_soon(read_all)
    seconds = time.perf_counter() - start
    await stream.close()
    if len(received) != size:
        raise DialFailure(f"echo returned {len(received)} bytes of {size}")
    if received != payload:
        first = next(i for i in range(size) if received[i] != payload[i])
        raise DialFailure(f"echo returned different bytes (first difference at offset {first})")
    return seconds


def describe(error: BaseException) -> str:
    """The innermost useful message, through trio's exception groups and `raise ... from`."""
    while isinstance(error, BaseExceptionGroup) and error.exceptions:
        error = error.exceptions[0]
    text = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
    cause = error.__cause__
    if cause is not None and not isinstance(error, DialFailure):
        text += f" ({describe(cause)})"
    return text


async def dial(address: str, size: int, key_pair, timeout: float) -> int:
    try:
        info = info_from_p2p_addr(multiaddr.Multiaddr(address))
    except Exception as error:
        return fail("connect", f"bad multiaddr {address!r}: {describe(error)}")
    # Swarm.dial_peer (happy eyeballs) waits 250 ms after starting each address's dial unless a
    # success has already filled max_connections_per_peer (default 3), so with the default every
    # connect() takes at least 250 ms even when the only address connects in a few ms. One
    # connection per peer is all the dialer wants, and it makes connect() return at once.
    host = make_host(key_pair, ConnectionConfig(max_connections_per_peer=1))
    # The dialer serves echo too, silently: its stdout is the one result line.
    host.set_stream_handler(ECHO_PROTOCOL, echo_handler(report=False))
    step = "connect"
    result = None
    error_message = None
    # The dialer listens too (on an ephemeral loopback port): py-libp2p's identify handler
    # waits up to 0.5 s for the host to have a listen address before answering the remote's
    # identify, and a listening host answers at once.
    with trio.move_on_after(timeout) as deadline:
        try:
            async with host.run(listen_addrs=[multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")]):
                try:
                    await stop_auto_connector(host)
                    await host.connect(info)
                    step = "ping"
                    rtts = await ping(host, info.peer_id)
                    step = "identify"
                    identified = await identify(host, info.peer_id)
                    step = "echo"
                    seconds = await echo(host, info.peer_id, size)
                    result = {
                        "event": "result",
                        "ok": True,
                        "peer_id": info.peer_id.to_base58(),
                        "ping_rtt_ms": rtts,
                        "identify": identified,
                        "echo_bytes": size,
                        "echo_seconds": round(seconds, 6),
                    }
                except Exception as error:
                    error_message = describe(error)
        except Exception as error:
            if error_message is None and result is None:
                error_message = describe(error)
    if result is not None:
        # Even if the timeout fired while the host was shutting down, every step completed.
        emit(result)
        return 0
    if error_message is None and deadline.cancelled_caught:
        error_message = f"timed out after {timeout:g} s"
    return fail(step, error_message or "unknown failure")


def fail(step: str, message: str) -> int:
    emit({"event": "error", "step": step, "message": message})
    print(f"host.py dial: {step} failed: {message}", file=sys.stderr, flush=True)
    return 1


def main() -> int:
    parser = argparse.ArgumentParser(description="py-libp2p peer for Punch interop tests")
    commands = parser.add_subparsers(dest="command", required=True)
    listen_parser = commands.add_parser("listen", help="serve ping, identify and echo")
    listen_parser.add_argument("--port", type=int, default=0)
    listen_parser.add_argument("--seed", help="32-byte Ed25519 seed, hex")
    dial_parser = commands.add_parser("dial", help="ping, identify and echo a peer")
    dial_parser.add_argument("multiaddr", help="/ip4/127.0.0.1/tcp/PORT/p2p/PEER")
    dial_parser.add_argument("--bytes", type=int, default=1 << 20, dest="size")
    dial_parser.add_argument("--seed", help="32-byte Ed25519 seed, hex")
    dial_parser.add_argument("--timeout", type=float, default=30.0, help="seconds (default 30)")
    args = parser.parse_args()

    try:
        key_pair = key_pair_from(args.seed)
    except ValueError as error:
        print(f"host.py: {error}", file=sys.stderr)
        return 2
    if args.command == "listen":
        return trio.run(listen, args.port, key_pair)
    if args.size < 0:
        print("host.py: --bytes must not be negative", file=sys.stderr)
        return 2
    return trio.run(dial, args.multiaddr, args.size, key_pair, args.timeout)


if __name__ == "__main__":
    sys.exit(main())
