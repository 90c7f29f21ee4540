"""py-libp2p 0.8.1 Circuit Relay v2 and DCUtR peers for Punch's relay interop tests.

Hosts are built as in host.py (Noise only, yamux only, TCP); relay, reservation, circuit dial
and DCUtR use py-libp2p's own classes from libp2p.relay.circuit_v2 (CircuitV2Protocol,
CircuitV2Transport, DCUtRProtocol). Every command prints one JSON object per stdout line.

  relay [--ip 127.0.0.1] [--port 0] [--seed HEX] [--reservation-ttl S] [--ignore-stdin]
      A relay (hop and stop, /libp2p/circuit/relay/0.2.0/hop) with generous limits: 64
      reservations, 64 circuits per reservation, 1 hour and 1 GiB per circuit. py-libp2p's
      default allows 4 reservations and keeps those of departed peers for an hour.
      Reservations last S seconds (default 3600) unless refreshed.
        {"event":"listening","peer_id":...,"addrs":["/ip4/IP/tcp/PORT/p2p/PEER"]}
        {"event":"connected","peer_id":...,"remote_addr":...} per connection
      Runs until stdin reaches EOF or SIGTERM/SIGINT (--ignore-stdin: SIGTERM/SIGINT only, for
      a stdin of /dev/null, as in the NAT lab).
  listen --relay RELAY_ADDR [--ip 127.0.0.1] [--port 0] [--seed HEX] [--dcutr] [--ignore-stdin]
      Connects to the relay, reserves a slot (refreshed by py-libp2p before expiry), accepts
      circuits (stop) and serves /punch/echo/1.0.0. With --dcutr it also runs py-libp2p's DCUtR
      service, which tries to upgrade every relayed connection (it initiates by itself every
      2 s: a plain dial of the peer's known addresses first, then CONNECT/SYNC).
        {"event":"listening","peer_id":...,"addrs":[...]}
        {"event":"reserved","relay":RELAY_PEER,"circuit_addrs":[".../p2p-circuit/p2p/US"],"expires_in_s":N}
        {"event":"direct","peer_id":...,"remote_addr":...}   a direct connection to a peer appeared
        {"event":"echo","bytes":N,"path":"relayed"|"direct"|"unknown"} per completed echo stream
      or {"event":"error","step":"reserve","message":...} and exit 1.
  dial CIRCUIT_ADDR [--bytes N] [--seed HEX] [--timeout S] [--ip IP --port P] [--dcutr] [--wait-direct S]
      CIRCUIT_ADDR is /ip4/IP/tcp/PORT/p2p/RELAY/p2p-circuit/p2p/PEER. Listens on IP:P (default
      127.0.0.1, any port), dials through the relay (HOP CONNECT, without reserving first),
      checks the peer's identity in Noise, and prints {"event":"connected","path":"relayed",...}.
      With --dcutr py-libp2p's DCUtR service answers (and after 2 s starts) a hole punch; with
      --wait-direct it waits up to S s for a direct connection ({"event":"direct",...}). Then it
      echoes N random bytes (default 64 KiB) on the connection py-libp2p picks for a new stream
      (direct before relayed) and prints
        {"event":"result","ok":true,"peer_id":...,"path":"relayed"|"direct","echo_bytes":N,"echo_seconds":S}
      or {"event":"error","step":"connect|upgrade|echo","message":...} and exits 1.

py-libp2p behaviour this relies on (read from the 0.8.1 source):
- CircuitV2Protocol.run registers the stop handler (and the hop handler with allow_hop); an
  inbound circuit becomes a connection of the host (upgrade_inbound_connection) tagged with a
  /p2p/RELAY/p2p-circuit/p2p/PEER transport address.
- CircuitV2Transport.dial makes a reservation before CONNECT when the CLIENT role is on; the
  dialer runs with the STOP role only, so it does not take a reservation slot.
- CircuitV2Transport.reserve starts a refresher that reserves again 30 s before expiry.
- The hop handler reads messages in a loop until the stream fails: when a client closes the
  reservation stream, the relay answers with an extra STATUS MALFORMED_MESSAGE.
"""

import argparse
import sys
import time

import multiaddr
import trio

from libp2p.network.config import ConnectionConfig
from libp2p.peer.peerinfo import info_from_p2p_addr
from libp2p.relay.circuit_v2.config import RelayConfig, RelayRole
from libp2p.relay.circuit_v2.dcutr import DCUtRProtocol
from libp2p.relay.circuit_v2.protocol import PROTOCOL_ID as HOP_PROTOCOL, CircuitV2Protocol
from libp2p.relay.circuit_v2.resources import RelayLimits
from libp2p.relay.circuit_v2.transport import CircuitV2Transport
from libp2p.tools.anyio_service import background_trio_service

# host.py sits next to this file; Python puts the script's directory on sys.path.
from host import (
    CHUNK,
    ECHO_PROTOCOL,
    DialFailure,
    describe,
    echo,
    echo_over,
    emit,
    key_pair_from,
    make_host,
    stop_auto_connector,
    wait_for_signal,
    wait_for_stdin_eof,
)
from libp2p.network.stream.exceptions import StreamEOF

def generous_limits(reservation_ttl: int = 3600) -> RelayLimits:
    return RelayLimits(
        duration=3600,
        data=1 << 30,
        max_circuit_conns=64,
        max_reservations=64,
        reservation_ttl=reservation_ttl,
    )


def is_relayed(conn) -> bool:
    try:
        addrs = conn.get_transport_addresses() or []
    except Exception:
        return False
    return any("/p2p-circuit" in str(a) for a in addrs)


def path_of(host, muxed_conn) -> str:
    """relayed or direct: the swarm connection that carries `muxed_conn`."""
    for conns in list(host.get_network().connections.values()):
        for conn in conns if isinstance(conns, list) else [conns]:
            if getattr(conn, "muxed_conn", None) is muxed_conn:
                return "relayed" if is_relayed(conn) else "direct"
    return "unknown"


def remote_text(conn) -> str | None:
    try:
        remote = conn.muxed_conn.get_remote_address()
    except Exception:
        remote = None
    if remote is None:
        addrs = conn.get_transport_addresses() or []
        return str(addrs[0]) if addrs else None
    host, port = remote
    return f"/ip{'6' if ':' in host else '4'}/{host}/tcp/{port}"


def echo_reporting_path(host):
    """/punch/echo/1.0.0: echoes every byte until the remote half-closes, then reports the path."""

    async def handle(stream) -> None:
        total = 0
        path = path_of(host, stream.muxed_conn)
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
        emit({"event": "echo", "bytes": total, "path": path, "peer_id": stream.muxed_conn.peer_id.to_base58()})

    return handle


async def run_until_stopped(watch_stdin: bool) -> None:
    async with trio.open_nursery() as nursery:

        async def stop_when(waiter) -> None:
            await waiter()
            nursery.cancel_scope.cancel()

        if watch_stdin:
            nursery.start_soon(stop_when, wait_for_stdin_eof)
        nursery.start_soon(stop_when, wait_for_signal)


async def relay(ip: str, port: int, key_pair, reservation_ttl: int, watch_stdin: bool) -> int:
    host = make_host(key_pair)
    protocol = CircuitV2Protocol(host, limits=generous_limits(reservation_ttl), allow_hop=True)
    async with host.run(listen_addrs=[multiaddr.Multiaddr(f"/ip4/{ip}/tcp/{port}")]):
        await stop_auto_connector(host)
        async with background_trio_service(protocol):
            await protocol.event_started.wait()
            addrs = [str(a) for a in host.get_addrs()]
            if not addrs:
                emit({"event": "error", "step": "listen", "message": f"cannot listen on {ip} port {port}"})
                return 1
            emit({"event": "listening", "peer_id": host.get_id().to_base58(), "addrs": addrs})
            await run_until_stopped(watch_stdin)
    return 0


async def watch_direct(host, relay_peer) -> None:
    """Prints a `direct` line when a direct (not relayed) connection to a peer other than the
    relay appears, once per peer."""
    reported = set()
    while True:
        for peer_id, conns in list(host.get_network().connections.items()):
            if peer_id == relay_peer or peer_id in reported:
                continue
            for conn in conns if isinstance(conns, list) else [conns]:
                addrs = conn.get_transport_addresses() or []
                if addrs and not is_relayed(conn):
                    reported.add(peer_id)
                    emit({"event": "direct", "peer_id": peer_id.to_base58(), "remote_addr": remote_text(conn)})
                    break
        await trio.sleep(0.1)


async def listen(relay_address: str, ip: str, port: int, key_pair, dcutr: bool, watch_stdin: bool) -> int:
    relay_info = info_from_p2p_addr(multiaddr.Multiaddr(relay_address))
    host = make_host(key_pair)
    host.set_stream_handler(ECHO_PROTOCOL, echo_reporting_path(host))
    protocol = CircuitV2Protocol(host, limits=generous_limits(), allow_hop=False)
    transport = CircuitV2Transport(host, protocol, RelayConfig(roles=RelayRole.STOP | RelayRole.CLIENT))
    async with host.run(listen_addrs=[multiaddr.Multiaddr(f"/ip4/{ip}/tcp/{port}")]):
        await stop_auto_connector(host)
        async with background_trio_service(protocol):
            await protocol.event_started.wait()
            addrs = [str(a) for a in host.get_addrs()]
            emit({"event": "listening", "peer_id": host.get_id().to_base58(), "addrs": addrs})
            async with trio.open_nursery() as nursery:
                try:
                    with trio.fail_after(30):
                        await host.connect(relay_info)
                        stream = await host.new_stream(relay_info.peer_id, [HOP_PROTOCOL])
                        reserved = await transport.reserve(stream, relay_info.peer_id, nursery)
                        await stream.close()
                except Exception as error:
                    return fail("reserve", describe(error))
                if not reserved:
                    return fail("reserve", "the relay did not grant the reservation (see stderr)")
                expires = transport._reservations.get(relay_info.peer_id, 0)
                emit(
                    {
                        "event": "reserved",
                        "relay": relay_info.peer_id.to_base58(),
                        "circuit_addrs": [f"{relay_address}/p2p-circuit/p2p/{host.get_id().to_base58()}"],
                        "expires_in_s": max(0, int(expires - time.time())),
                    }
                )
                nursery.start_soon(watch_direct, host, relay_info.peer_id)
                if dcutr:
                    service = DCUtRProtocol(host)
                    async with background_trio_service(service):
                        await service.event_started.wait()
                        await run_until_stopped(watch_stdin)
                else:
                    await run_until_stopped(watch_stdin)
                nursery.cancel_scope.cancel()
    return 0


async def echo_on_best_connection(host, peer_id, size: int) -> tuple[float, str]:
    """host.py's echo, on the connection py-libp2p picks for a new stream (its default strategy
    prefers a direct connection to a relayed one); returns the seconds and that connection's path."""
    stream = await host.new_stream(peer_id, [ECHO_PROTOCOL])
    path = path_of(host, stream.muxed_conn)
    return await echo_over(stream, size), path


async def wait_for_direct(host, peer_id, seconds: float) -> bool:
    with trio.move_on_after(seconds):
        while True:
            conns = host.get_network().connections.get(peer_id, [])
            for conn in conns if isinstance(conns, list) else [conns]:
                addrs = conn.get_transport_addresses() or []
                if addrs and not is_relayed(conn):
                    return True
            await trio.sleep(0.1)
    return False


async def dial(address: str, size: int, key_pair, timeout: float, ip: str, port: int, dcutr: bool, wait_direct: float) -> int:
    try:
        target = multiaddr.Multiaddr(address)
        peer_text = target.get_peer_id()
    except Exception as error:
        return fail("connect", f"bad multiaddr {address!r}: {describe(error)}")
    # Without DCUtR one connection per peer is all the dialer wants (see host.py's dial); with it
    # the direct connection is a second one.
    host = make_host(key_pair, None if dcutr else ConnectionConfig(max_connections_per_peer=1))
    protocol = CircuitV2Protocol(host, limits=generous_limits(), allow_hop=False)
    # STOP only: with CLIENT, CircuitV2Transport.dial reserves on the relay before each CONNECT.
    transport = CircuitV2Transport(host, protocol, RelayConfig(roles=RelayRole.STOP))
    step = "connect"
    result = None
    error_message = None
    with trio.move_on_after(timeout) as deadline:
        try:
            async with host.run(listen_addrs=[multiaddr.Multiaddr(f"/ip4/{ip}/tcp/{port}")]):
                await stop_auto_connector(host)
                async with background_trio_service(protocol):
                    await protocol.event_started.wait()
                    service = DCUtRProtocol(host) if dcutr else None
                    async with (background_trio_service(service) if service else _nothing()):
                        try:
                            if service:
                                await service.event_started.wait()
                            conn = await transport.dial(target)
                            peer_id = conn.muxed_conn.peer_id
                            if peer_id.to_base58() != peer_text:
                                raise DialFailure(f"the circuit reached {peer_id}, not {peer_text}")
                            emit({"event": "connected", "peer_id": peer_text, "path": "relayed" if is_relayed(conn) else "direct"})
                            if wait_direct > 0:
                                step = "upgrade"
                                if await wait_for_direct(host, peer_id, wait_direct):
                                    emit({"event": "direct", "peer_id": peer_text})
                            step = "echo"
                            seconds, path = await echo_on_best_connection(host, peer_id, size)
                            result = {
                                "event": "result",
                                "ok": True,
                                "peer_id": peer_text,
                                "path": path,
                                "echo_bytes": size,
                                "echo_seconds": round(seconds, 6),
                            }
                        except Exception as error:
                            error_message = describe(error)
        except Exception as error:
            if error_message is None and result is None:
                error_message = describe(error)
    if result is not None:
        emit(result)
        return 0
    if error_message is None and deadline.cancelled_caught:
        error_message = f"timed out after {timeout:g} s"
    return fail(step, error_message or "unknown failure")


class _nothing:
    async def __aenter__(self):
        return None

    async def __aexit__(self, *exc):
        return False


def fail(step: str, message: str) -> int:
    emit({"event": "error", "step": step, "message": message})
    print(f"relay.py: {step} failed: {message}", file=sys.stderr, flush=True)
    return 1


def main() -> int:
    parser = argparse.ArgumentParser(description="py-libp2p relay peers for Punch interop tests")
    commands = parser.add_subparsers(dest="command", required=True)
    relay_parser = commands.add_parser("relay", help="a Circuit Relay v2 relay")
    listen_parser = commands.add_parser("listen", help="reserve on a relay and serve echo")
    listen_parser.add_argument("--relay", required=True, help="/ip4/IP/tcp/PORT/p2p/RELAY")
    listen_parser.add_argument("--dcutr", action="store_true", help="run py-libp2p's DCUtR service")
    relay_parser.add_argument(
        "--reservation-ttl", type=int, default=3600, help="seconds a reservation lasts unless refreshed (default 3600)"
    )
    for sub in (relay_parser, listen_parser):
        sub.add_argument("--ip", default="127.0.0.1")
        sub.add_argument("--port", type=int, default=0)
        sub.add_argument("--ignore-stdin", action="store_true", help="run until SIGTERM/SIGINT only (stdin may be /dev/null)")
    dial_parser = commands.add_parser("dial", help="echo through a relay circuit")
    dial_parser.add_argument("multiaddr", help="/ip4/IP/tcp/PORT/p2p/RELAY/p2p-circuit/p2p/PEER")
    dial_parser.add_argument("--bytes", type=int, default=64 * 1024, dest="size")
    dial_parser.add_argument("--timeout", type=float, default=60.0)
    dial_parser.add_argument("--ip", default="127.0.0.1", help="listen here (the punch dials from this port)")
    dial_parser.add_argument("--port", type=int, default=0)
    dial_parser.add_argument("--dcutr", action="store_true", help="run py-libp2p's DCUtR service")
    dial_parser.add_argument("--wait-direct", type=float, default=0.0, help="wait up to S s for a direct connection before the echo")
    for sub in (relay_parser, listen_parser, dial_parser):
        sub.add_argument("--seed", help="32-byte Ed25519 seed, hex")
    args = parser.parse_args()
    try:
        key_pair = key_pair_from(args.seed)
    except ValueError as error:
        print(f"relay.py: {error}", file=sys.stderr)
        return 2
    if args.command == "relay":
        return trio.run(relay, args.ip, args.port, key_pair, args.reservation_ttl, not args.ignore_stdin)
    if args.command == "listen":
        return trio.run(listen, args.relay, args.ip, args.port, key_pair, args.dcutr, not args.ignore_stdin)
    if args.size < 0:
        print("relay.py: --bytes must not be negative", file=sys.stderr)
        return 2
    return trio.run(dial, args.multiaddr, args.size, key_pair, args.timeout, args.ip, args.port, args.dcutr, args.wait_direct)


if __name__ == "__main__":
    sys.exit(main())
