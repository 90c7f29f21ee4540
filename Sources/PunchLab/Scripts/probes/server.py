#!/usr/bin/env python3
"""The NAT lab's probe server: reflector, filtering tester, echo and rendezvous, in `srv`.

Part of Punch's NAT lab (PunchLab). It checks the lab's NATs independently of Punch's own code,
so it uses nothing but the Python standard library.

UDP, on four sockets: PRIMARY:PORT, PRIMARY:ALT_PORT, ALTERNATE:PORT and ALTERNATE:ALT_PORT.
Every datagram is one JSON object with an "op":
  bind      {"op":"bind","id":N}               -> {"op":"bound","id":N,"observed":"ip:port","server":"ip:port"}
  filter    {"op":"filter","id":N,"from":F[,"after":S]}
                                                -> {"op":"ack",...} from the socket it came to, then
                                                   {"op":"filtered","id":N,"server":...} from F:
                                                   "other-address" (ALTERNATE:ALT_PORT) or
                                                   "other-port" (same address, the other port),
                                                   S seconds later if "after" is given (at most
                                                   60; for mapping-expiry tests)
  echo      {"op":"echo",...}                   -> the same bytes back
  register  {"op":"register","session":S,"role":R}
                                                -> {"op":"registered","observed":...}, and once two
                                                   roles of S are registered,
                                                   {"op":"peer","peer":"ip:port","observed":...}
TCP, on PRIMARY:PORT: rendezvous for TCP simultaneous open. The client sends one JSON line
{"op":"register","session":S,"role":R}; the server answers {"op":"registered","observed":...}
and, once the other role is registered, {"op":"peer","peer":"ip:port","start":T} with the same
wall-clock start time T (0.15 s ahead) for both; the connection stays open until the client
closes it (its NAT mapping must stay alive).

Sessions are forgotten after a minute, and at most 4096 are kept.

Usage: server.py --primary 203.0.113.10 --alternate 203.0.113.11 --port 7000 --alt-port 7001
Prints {"event":"ready",...} once every socket is bound.
"""

import argparse
import heapq
import itertools
import json
import selectors
import signal
import socket
import sys
import time

SESSION_LIFETIME = 60.0
MAX_SESSIONS = 4096
MAX_TCP_CLIENTS = 1024
MAX_DELAY = 60.0
TCP_START_DELAY = 0.15
MAX_LATER = 1024


def text(address):
    return f"{address[0]}:{address[1]}"


class Sessions:
    """Rendezvous sessions: session id -> role -> observed address, with a bounded lifetime."""

    def __init__(self):
        self.table = {}

    def register(self, session, role, observed):
        now = time.monotonic()
        for key in [key for key, entry in self.table.items() if now - entry["created"] > SESSION_LIFETIME]:
            del self.table[key]
        if session not in self.table and len(self.table) >= MAX_SESSIONS:
            oldest = min(self.table, key=lambda key: self.table[key]["created"])
            del self.table[oldest]
        entry = self.table.setdefault(session, {"created": now, "roles": {}})
        entry["roles"][role] = observed

    def peer(self, session, role):
        entry = self.table.get(session)
        if entry is None:
            return None
        others = [address for other, address in entry["roles"].items() if other != role]
        return others[0] if others else None


class Server:
    def __init__(self, primary, alternate, port, alt_port):
        self.selector = selectors.DefaultSelector()
        self.udp = {}
        for address in (primary, alternate):
            for number in (port, alt_port):
                sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind((address, number))
                sock.setblocking(False)
                self.udp[(address, number)] = sock
                self.selector.register(sock, selectors.EVENT_READ, ("udp", (address, number)))
        self.primary, self.alternate, self.port, self.alt_port = primary, alternate, port, alt_port
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind((primary, port))
        self.listener.listen(128)
        self.listener.setblocking(False)
        self.selector.register(self.listener, selectors.EVENT_READ, ("listen", None))
        self.udp_sessions = Sessions()
        self.tcp_sessions = Sessions()
        self.tcp_clients = {}  # socket -> {"buffer", "observed", "session", "role", "told"}
        self.later = []  # heap of (due time, counter, source, remote, answer): delayed filter answers
        self.counter = itertools.count()

    # ---- UDP -----------------------------------------------------------------------------

    def on_udp(self, local):
        sock = self.udp[local]
        while True:
            try:
                data, remote = sock.recvfrom(65536)
            except (BlockingIOError, InterruptedError):
                return
            try:
                request = json.loads(data)
                op = request["op"]
            except (ValueError, KeyError, TypeError):
                continue
            if op == "echo":
                sock.sendto(data, remote)
            elif op == "bind":
                self.reply(sock, remote, {"op": "bound", "id": request.get("id"), "observed": text(remote),
                                          "server": text(local)})
            elif op == "filter":
                self.reply(sock, remote, {"op": "ack", "id": request.get("id"), "observed": text(remote)})
                source = (self.alternate, self.alt_port) if request.get("from") == "other-address" else \
                    (local[0], self.alt_port if local[1] == self.port else self.port)
                answer = {"op": "filtered", "id": request.get("id"), "server": text(source)}
                after = request.get("after", 0)
                if isinstance(after, (int, float)) and 0 < after <= MAX_DELAY and len(self.later) < MAX_LATER:
                    heapq.heappush(self.later, (time.monotonic() + after, next(self.counter), source, remote, answer))
                else:
                    self.reply(self.udp[source], remote, answer)
            elif op == "register":
                session, role = str(request.get("session")), str(request.get("role"))
                self.udp_sessions.register(session, role, text(remote))
                self.reply(sock, remote, {"op": "registered", "observed": text(remote)})
                peer = self.udp_sessions.peer(session, role)
                if peer is not None:
                    self.reply(sock, remote, {"op": "peer", "peer": peer, "observed": text(remote)})

    @staticmethod
    def reply(sock, remote, obj):
        try:
            sock.sendto(json.dumps(obj).encode(), remote)
        except OSError:
            pass

    # ---- TCP -----------------------------------------------------------------------------

    def on_accept(self):
        while True:
            try:
                client, remote = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            if len(self.tcp_clients) >= MAX_TCP_CLIENTS:
                client.close()
                continue
            client.setblocking(False)
            self.tcp_clients[client] = {"buffer": b"", "observed": text(remote), "session": None,
                                        "role": None, "told": False}
            self.selector.register(client, selectors.EVENT_READ, ("tcp", None))

    def on_tcp(self, client):
        state = self.tcp_clients[client]
        try:
            data = client.recv(4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data or len(state["buffer"]) > 4096:
            self.drop(client)
            return
        state["buffer"] += data
        while b"\n" in state["buffer"]:
            line, state["buffer"] = state["buffer"].split(b"\n", 1)
            try:
                request = json.loads(line)
            except ValueError:
                continue
            if request.get("op") != "register":
                continue
            state["session"], state["role"] = str(request.get("session")), str(request.get("role"))
            self.tcp_sessions.register(state["session"], state["role"], state["observed"])
            self.send_line(client, {"op": "registered", "observed": state["observed"]})
            self.tell_peers(state["session"])

    def tell_peers(self, session):
        # Both sides get the same start time, a little ahead, so their SYNs leave together and
        # cross in flight (what DCUtR's synchronisation achieves with its RTT measurement).
        start = time.time() + TCP_START_DELAY
        for client, state in list(self.tcp_clients.items()):
            if state["session"] != session or state["told"]:
                continue
            peer = self.tcp_sessions.peer(session, state["role"])
            if peer is not None:
                state["told"] = True
                self.send_line(client, {"op": "peer", "peer": peer, "observed": state["observed"], "start": start})

    def send_line(self, client, obj):
        try:
            client.sendall(json.dumps(obj).encode() + b"\n")
        except OSError:
            self.drop(client)

    def drop(self, client):
        if client in self.tcp_clients:
            del self.tcp_clients[client]
            self.selector.unregister(client)
            client.close()

    # ---- loop ----------------------------------------------------------------------------

    def serve(self, stop, wakeup):
        self.selector.register(wakeup, selectors.EVENT_READ, ("wakeup", None))
        while not stop["now"]:
            now = time.monotonic()
            while self.later and self.later[0][0] <= now:
                _, _, source, remote, answer = heapq.heappop(self.later)
                self.reply(self.udp[source], remote, answer)
            timeout = min(0.5, max(0.0, self.later[0][0] - now)) if self.later else 0.5
            for key, _ in self.selector.select(timeout=timeout):
                kind, local = key.data
                if kind == "wakeup":
                    wakeup.recv(64)
                elif kind == "udp":
                    self.on_udp(local)
                elif kind == "listen":
                    self.on_accept()
                elif key.fileobj in self.tcp_clients:
                    self.on_tcp(key.fileobj)


def main():
    parser = argparse.ArgumentParser(description="The NAT lab's probe server.")
    parser.add_argument("--primary", default="203.0.113.10")
    parser.add_argument("--alternate", default="203.0.113.11")
    parser.add_argument("--port", type=int, default=7000)
    parser.add_argument("--alt-port", type=int, default=7001)
    args = parser.parse_args()
    stop = {"now": False}

    def request_stop(_signum, _frame):
        stop["now"] = True

    # The handlers only set a flag; the wakeup socket makes select() return at once.
    wakeup, wakeup_writer = socket.socketpair()
    wakeup.setblocking(False)
    wakeup_writer.setblocking(False)
    signal.set_wakeup_fd(wakeup_writer.fileno())
    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    server = Server(args.primary, args.alternate, args.port, args.alt_port)
    print(json.dumps({"event": "ready", "udp": sorted(text(key) for key in server.udp),
                      "tcp": text((args.primary, args.port))}), flush=True)
    server.serve(stop, wakeup)
    return 0


if __name__ == "__main__":
    sys.exit(main())
