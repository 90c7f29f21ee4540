#!/usr/bin/env python3
"""The NAT lab's probe client: measures what a NAT does, with plain sockets.

Part of Punch's NAT lab (PunchLab). It checks the lab's NATs independently of Punch's own code,
so it uses nothing but the Python standard library. It talks to probes/server.py in `srv`.
Every subcommand prints one JSON line with its result (listen prints a "listening" line first).

  mapping      RFC 4787 mapping and filtering: one UDP socket binds to PRIMARY:PORT,
               PRIMARY:ALT_PORT and ALTERNATE:PORT (mapping); a fresh one asks PRIMARY:PORT for
               answers from the other address, then from the other port (filtering).
  filter       one filtering test from a fresh mapping; --after delays the answer, so an
               idle mapping that expires meanwhile drops it (mapping-timeout checks).
  udp-punch    UDP simultaneous send: registers at the rendezvous, then sends to the peer's
               reflexive address (and to any address the peer's packets came from) every 100 ms.
  tcp-punch    TCP simultaneous open: keeps the rendezvous connection open and, at the start
               time the rendezvous gives both sides, connects to the peer from the same local
               port (SO_REUSEADDR + SO_REUSEPORT), retrying until the deadline.
  rtt          UDP echo round trips and loss.
  unsolicited  what an address answers to an unexpected UDP datagram and TCP SYN.
  listen/send  one UDP datagram or TCP line from `send` to `listen` (port-mapping checks).
"""

import argparse
import errno
import json
import os
import random
import select
import socket
import statistics
import sys
import time


def endpoint(value):
    host, _, port = value.rpartition(":")
    return host, int(port)


def text(address):
    return f"{address[0]}:{address[1]}"


def emit(obj):
    print(json.dumps(obj, sort_keys=True), flush=True)


def receive_json(sock, deadline):
    """The next (object, source) on a UDP socket before the deadline, or (None, None)."""
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return None, None
        readable, _, _ = select.select([sock], [], [], remaining)
        if not readable:
            return None, None
        try:
            data, source = sock.recvfrom(65536)
        except ConnectionRefusedError:
            continue
        try:
            obj = json.loads(data)
        except ValueError:
            continue
        if isinstance(obj, dict):
            return obj, source


# ---- mapping and filtering (RFC 4787 sections 4.1 and 5) ---------------------------------------

class Reflector:
    def __init__(self, sock, wait):
        self.sock = sock
        self.wait = wait
        self.next_id = 0

    def transact(self, server, request, expected_op, tries=4):
        """Sends a request until the reply with its id arrives; returns the reply or None."""
        self.next_id += 1
        request = dict(request, id=self.next_id)
        for _ in range(tries):
            self.sock.sendto(json.dumps(request).encode(), server)
            deadline = time.monotonic() + self.wait
            while True:
                reply, source = receive_json(self.sock, deadline)
                if reply is None:
                    break
                if reply.get("op") == expected_op and reply.get("id") == self.next_id and source == server:
                    return reply
        return None

    def filtered_answer(self, server, kind, after=0.0):
        """Asks the server to answer from another address or port (`after` seconds later);
        True if that answer arrives."""
        self.next_id += 1
        request = {"op": "filter", "id": self.next_id, "from": kind}
        if after > 0:
            request["after"] = after
        for _ in range(4):
            self.sock.sendto(json.dumps(request).encode(), server)
            deadline = time.monotonic() + self.wait + after
            acknowledged = False
            while True:
                reply, source = receive_json(self.sock, deadline)
                if reply is None:
                    break
                if reply.get("id") != self.next_id:
                    continue
                if reply.get("op") == "filtered" and source != server:
                    return True
                if reply.get("op") == "ack":
                    acknowledged = True
            if acknowledged:
                return False
        raise TimeoutError(f"the server at {text(server)} did not acknowledge a filtering test")


def mapping(args):
    primary, alternate = args.server, args.alternate
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("0.0.0.0", args.local_port))
    local_port = sock.getsockname()[1]
    reflector = Reflector(sock, args.wait)
    servers = [(primary, args.port), (primary, args.alt_port), (alternate, args.port)]
    mapped = []
    for server in servers:
        reply = reflector.transact(server, {"op": "bind"}, "bound")
        if reply is None:
            emit({"error": f"no answer from {text(server)}", "local_port": local_port})
            return 1
        mapped.append(reply["observed"])
    if mapped[0] == mapped[1] == mapped[2]:
        mapping_kind = "endpoint-independent"
    elif mapped[0] == mapped[1]:
        mapping_kind = "address-dependent"
    else:
        mapping_kind = "address-and-port-dependent"
    # Filtering needs a mapping that has talked to PRIMARY:PORT only: the mapping test above
    # also sent to PRIMARY:ALT_PORT, whose answers any NAT lets in (RFC 5780 section 4.4 also
    # starts the filtering tests from a fresh binding).
    filter_sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    filter_sock.bind(("0.0.0.0", 0))
    filter_reflector = Reflector(filter_sock, args.wait)
    if filter_reflector.filtered_answer(servers[0], "other-address"):
        filtering = "endpoint-independent"
    elif filter_reflector.filtered_answer(servers[0], "other-port"):
        filtering = "address-dependent"
    else:
        filtering = "address-and-port-dependent"
    ports = {endpoint(address)[1] for address in mapped}
    emit({"local_port": local_port, "mapped": mapped, "mapping": mapping_kind, "filtering": filtering,
          "port_preserved": ports == {local_port}})
    return 0


def filter_once(args):
    """One filtering test from a fresh mapping, optionally with the answer delayed (a mapping
    that expires in the meantime drops it)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("0.0.0.0", 0))
    reflector = Reflector(sock, args.wait)
    server = (args.server, args.port)
    started = time.monotonic()
    try:
        received = reflector.filtered_answer(server, args.source, after=args.after)
    except TimeoutError as error:
        emit({"error": str(error)})
        return 1
    emit({"from": args.source, "after": args.after, "received": received, "local_port": sock.getsockname()[1],
          "elapsed_ms": round((time.monotonic() - started) * 1000)})
    return 0


# ---- UDP simultaneous send ---------------------------------------------------------------------

def udp_punch(args):
    server = endpoint(args.server)
    started = time.monotonic()
    deadline = started + args.timeout
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("0.0.0.0", 0))
    public = peer = None
    register = json.dumps({"op": "register", "session": args.session, "role": args.role}).encode()
    next_send = 0.0
    while peer is None and time.monotonic() < deadline:
        if time.monotonic() >= next_send:
            sock.sendto(register, server)
            next_send = time.monotonic() + 0.1
        reply, source = receive_json(sock, min(deadline, next_send))
        if reply is not None and source == server and reply.get("op") in ("registered", "peer"):
            public = reply.get("observed")
            if reply.get("op") == "peer":
                peer = endpoint(reply["peer"])
    result = {"role": args.role, "public": public, "peer": text(peer) if peer else None,
              "received": False, "confirmed": False, "seen_from": None}
    if peer is None:
        result.update(direct=False, error="no peer from the rendezvous", elapsed_ms=0)
        emit(result)
        return 0
    targets = [peer]
    received = confirmed = False
    finish = None  # after both are true, a few more rounds so the peer is confirmed too
    next_send = 0.0
    while time.monotonic() < deadline and (finish is None or time.monotonic() < finish):
        now = time.monotonic()
        if now >= next_send:
            punch = json.dumps({"op": "punch", "session": args.session, "from": args.role,
                                "seen": received}).encode()
            for target in targets:
                try:
                    sock.sendto(punch, target)
                except OSError:
                    pass
            next_send = now + 0.1
        message, source = receive_json(sock, min(deadline, next_send))
        if message is None or source == server:
            continue
        if message.get("op") != "punch" or message.get("session") != args.session or message.get("from") == args.role:
            continue
        if not received:
            received = True
            result["seen_from"] = text(source)
            result["elapsed_ms"] = round((time.monotonic() - started) * 1000)
            next_send = 0.0  # answer at once, telling the peer it was seen
        if source not in targets:
            targets.append(source)
        confirmed = confirmed or bool(message.get("seen"))
        if received and confirmed and finish is None:
            finish = time.monotonic() + 0.35
    result.update(received=received, confirmed=confirmed, direct=received and confirmed)
    result.setdefault("elapsed_ms", round((time.monotonic() - started) * 1000))
    emit(result)
    return 0


# ---- TCP simultaneous open ---------------------------------------------------------------------

def reusable_socket(port):
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(("0.0.0.0", port))
    return sock


def read_line(sock, buffer, deadline):
    while b"\n" not in buffer:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return None, buffer
        sock.settimeout(remaining)
        try:
            data = sock.recv(4096)
        except socket.timeout:
            return None, buffer
        if not data:
            return None, buffer
        buffer += data
    line, buffer = buffer.split(b"\n", 1)
    return json.loads(line), buffer


def tcp_punch(args):
    server = endpoint(args.server)
    started = time.monotonic()
    deadline = started + args.timeout
    rendezvous = reusable_socket(0)
    local_port = rendezvous.getsockname()[1]
    result = {"role": args.role, "local_port": local_port, "public": None, "peer": None,
              "direct": False, "attempts": 0, "error": None}
    try:
        rendezvous.settimeout(max(0.1, deadline - time.monotonic()))
        rendezvous.connect(server)
        rendezvous.sendall(json.dumps({"op": "register", "session": args.session, "role": args.role}).encode() + b"\n")
        buffer = b""
        peer = None
        while peer is None:
            message, buffer = read_line(rendezvous, buffer, deadline)
            if message is None:
                break
            result["public"] = message.get("observed", result["public"])
            if message.get("op") == "peer":
                peer = endpoint(message["peer"])
                start = message.get("start")
                if isinstance(start, (int, float)):
                    # Both sides connect at the same instant (same kernel clock in the lab).
                    time.sleep(min(1.0, max(0.0, start - time.time())))
    except (OSError, ValueError) as error:
        result["error"] = f"rendezvous: {error}"
        peer = None
    if peer is None:
        result["error"] = result["error"] or "no peer from the rendezvous"
        emit(result)
        rendezvous.close()
        return 0
    result["peer"] = text(peer)
    last_error = None
    while time.monotonic() < deadline and not result["direct"]:
        result["attempts"] += 1
        sock = reusable_socket(local_port)
        try:
            sock.settimeout(max(0.05, deadline - time.monotonic()))
            sock.connect(peer)
            sock.sendall(json.dumps({"op": "hello", "session": args.session, "from": args.role}).encode() + b"\n")
            hello, _ = read_line(sock, b"", deadline)
            if hello and hello.get("session") == args.session and hello.get("from") != args.role:
                result["direct"] = True
                result["elapsed_ms"] = round((time.monotonic() - started) * 1000)
                # Let the peer read our hello before the connection closes.
                time.sleep(0.05)
            else:
                last_error = "no hello from the peer"
        except (OSError, ValueError) as error:
            last_error = str(error) or type(error).__name__
            if isinstance(error, OSError) and error.errno in (errno.ECONNREFUSED, errno.ECONNRESET):
                # The peer's kernel reset our SYN: it was not connecting yet (a full cone let the
                # SYN in early). Connect again at once, so that both sides are almost always in
                # SYN-SENT and the next crossing SYNs meet; a pause here lets two full cones
                # reset each other's SYNs in turn for ever.
                time.sleep(random.uniform(0.001, 0.005))
        finally:
            sock.close()
    if not result["direct"]:
        result["error"] = last_error or "timed out"
    rendezvous.close()
    emit(result)
    return 0


# ---- round trips and loss ----------------------------------------------------------------------

def rtt(args):
    server = endpoint(args.server)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("0.0.0.0", 0))
    sent = {}
    rtts = []
    next_send = time.monotonic()
    sequence = 0
    end = None
    while True:
        now = time.monotonic()
        if sequence < args.count and now >= next_send:
            sent[sequence] = now
            sock.sendto(json.dumps({"op": "echo", "seq": sequence}).encode(), server)
            sequence += 1
            next_send += args.interval
            if sequence == args.count:
                end = time.monotonic() + args.wait
        if end is not None and now >= end:
            break
        wake = end if sequence >= args.count else next_send
        reply, source = receive_json(sock, wake)
        if reply is None or source != server or reply.get("op") != "echo":
            continue
        sent_at = sent.pop(reply.get("seq"), None)
        if sent_at is not None:
            rtts.append((time.monotonic() - sent_at) * 1000)
    result = {"sent": args.count, "received": len(rtts), "loss": round(1 - len(rtts) / args.count, 4)}
    if rtts:
        result["rtt_ms"] = {"median": round(statistics.median(rtts), 2), "min": round(min(rtts), 2),
                            "max": round(max(rtts), 2), "mean": round(statistics.fmean(rtts), 2)}
    emit(result)
    return 0


# ---- unsolicited traffic -----------------------------------------------------------------------

def unsolicited(args):
    target = endpoint(args.to)
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.connect(target)
    udp_answer = "silent"
    for _ in range(args.tries):
        try:
            udp.send(b"unsolicited")
        except ConnectionRefusedError:
            udp_answer = "refused"
            break
        readable, _, _ = select.select([udp], [], [], args.wait)
        if readable:
            try:
                udp.recv(65536)
                udp_answer = "answered"
            except ConnectionRefusedError:
                udp_answer = "refused"
            break
    tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    tcp.settimeout(args.wait * args.tries)
    try:
        tcp.connect(target)
        tcp_answer = "accepted"
    except ConnectionRefusedError:
        tcp_answer = "reset"
    except (socket.timeout, OSError):
        tcp_answer = "silent"
    finally:
        tcp.close()
    emit({"to": args.to, "udp": udp_answer, "tcp": tcp_answer})
    return 0


# ---- one message through a port mapping --------------------------------------------------------

def listen(args):
    deadline = time.monotonic() + args.timeout
    if args.tcp:
        server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("0.0.0.0", args.port))
        server.listen(8)
        emit({"event": "listening", "port": args.port, "tcp": True})
        server.settimeout(args.timeout)
        try:
            client, source = server.accept()
            message, _ = read_line(client, b"", deadline)
            client.close()
            emit({"received": message is not None, "from": text(source), "message": message})
        except socket.timeout:
            emit({"received": False})
        return 0
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("0.0.0.0", args.port))
    emit({"event": "listening", "port": args.port, "tcp": False})
    message, source = receive_json(sock, deadline)
    emit({"received": message is not None, "from": text(source) if source else None, "message": message})
    return 0


def send(args):
    target = endpoint(args.to)
    payload = {"op": "hello", "from": socket.gethostname(), "pid": os.getpid()}
    if args.tcp:
        deadline = time.monotonic() + args.timeout
        error = None
        while time.monotonic() < deadline:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.settimeout(max(0.05, deadline - time.monotonic()))
            try:
                sock.connect(target)
                sock.sendall(json.dumps(payload).encode() + b"\n")
                sock.close()
                emit({"connected": True, "to": args.to})
                return 0
            except OSError as failure:
                error = str(failure)
                sock.close()
                time.sleep(args.interval)
        emit({"connected": False, "to": args.to, "error": error})
        return 0
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for _ in range(args.count):
        try:
            sock.sendto(json.dumps(payload).encode(), target)
        except OSError:
            pass
        time.sleep(args.interval)
    emit({"sent": args.count, "to": args.to})
    return 0


def main():
    parser = argparse.ArgumentParser(description="Measure a NAT with plain sockets.")
    commands = parser.add_subparsers(dest="command", required=True)

    command = commands.add_parser("mapping", help="mapping and filtering behaviour")
    command.add_argument("--server", default="203.0.113.10")
    command.add_argument("--alternate", default="203.0.113.11")
    command.add_argument("--port", type=int, default=7000)
    command.add_argument("--alt-port", type=int, default=7001)
    command.add_argument("--local-port", type=int, default=0)
    command.add_argument("--wait", type=float, default=0.4, help="seconds to wait for each answer")
    command.set_defaults(run=mapping)

    command = commands.add_parser("filter", help="one filtering test, the answer optionally delayed")
    command.add_argument("--server", default="203.0.113.10")
    command.add_argument("--port", type=int, default=7000)
    command.add_argument("--from", dest="source", choices=["other-address", "other-port"], default="other-address")
    command.add_argument("--after", type=float, default=0.0, help="seconds the server waits before answering")
    command.add_argument("--wait", type=float, default=0.4, help="seconds to wait for each answer")
    command.set_defaults(run=filter_once)

    for name, function in (("udp-punch", udp_punch), ("tcp-punch", tcp_punch)):
        command = commands.add_parser(name)
        command.add_argument("--server", default="203.0.113.10:7000")
        command.add_argument("--session", required=True)
        command.add_argument("--role", required=True)
        command.add_argument("--timeout", type=float, default=2.0)
        command.set_defaults(run=function)

    command = commands.add_parser("rtt", help="echo round trips and loss")
    command.add_argument("--server", default="203.0.113.10:7000")
    command.add_argument("--count", type=int, default=50)
    command.add_argument("--interval", type=float, default=0.01)
    command.add_argument("--wait", type=float, default=1.0, help="seconds to wait after the last echo")
    command.set_defaults(run=rtt)

    command = commands.add_parser("unsolicited", help="answers to an unexpected datagram and SYN")
    command.add_argument("--to", required=True)
    command.add_argument("--tries", type=int, default=3)
    command.add_argument("--wait", type=float, default=0.3)
    command.set_defaults(run=unsolicited)

    command = commands.add_parser("listen", help="wait for one message")
    command.add_argument("--port", type=int, required=True)
    command.add_argument("--tcp", action="store_true")
    command.add_argument("--timeout", type=float, default=5.0)
    command.set_defaults(run=listen)

    command = commands.add_parser("send", help="send one message")
    command.add_argument("--to", required=True)
    command.add_argument("--tcp", action="store_true")
    command.add_argument("--count", type=int, default=10)
    command.add_argument("--interval", type=float, default=0.1)
    command.add_argument("--timeout", type=float, default=3.0)
    command.set_defaults(run=send)

    args = parser.parse_args()
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
