#!/usr/bin/env python3
"""Holds every packet of an NFQUEUE queue for a delay (plus or minus a jitter), then accepts it.

Part of Punch's NAT lab (PunchLab). The lab runs it inside a router's network namespace, fed by
`iptables -t raw -A PREROUTING -i wan -j NFQUEUE --queue-num N --queue-bypass` (and the same for
`lan`), so every packet crossing the router waits about DELAY ms in each direction. It stands in
for `tc netem`, which the lab's kernel lacks.

Only the Python standard library: a raw netlink socket speaking nfnetlink_queue
(include/uapi/linux/netfilter/nfnetlink_queue.h). Per packet the kernel sends NFQNL_MSG_PACKET
with metadata only (NFQNL_COPY_META); the packet id goes into a heap ordered by release time,
so each packet gets its own delay whatever the order of arrival, and a verdict NF_ACCEPT is sent
when its time comes. On SIGTERM or SIGINT every held packet is accepted at once, the queue is
unbound and the program exits 0.

Usage: nfqueue_delay.py --queue 0 --delay-ms 50 [--jitter-ms 10] [--seed N]
Prints one JSON line {"event":"ready",...} once bound, and {"event":"stopped",...} on exit.
"""

import argparse
import heapq
import json
import os
import random
import select
import signal
import socket
import struct
import sys
import time

NETLINK_NETFILTER = 12
NETLINK_NO_ENOBUFS = 5
SOL_NETLINK = 270

NFNL_SUBSYS_QUEUE = 3
NFQNL_MSG_PACKET = 0
NFQNL_MSG_VERDICT = 1
NFQNL_MSG_CONFIG = 2

NFQA_PACKET_HDR = 1
NFQA_VERDICT_HDR = 2

NFQA_CFG_CMD = 1
NFQA_CFG_PARAMS = 2
NFQA_CFG_QUEUE_MAXLEN = 3
NFQA_CFG_MASK = 4
NFQA_CFG_FLAGS = 5
NFQA_CFG_F_FAIL_OPEN = 1 << 0
NFQA_CFG_F_GSO = 1 << 2

NFQNL_CFG_CMD_BIND = 1
NFQNL_CFG_CMD_UNBIND = 2
NFQNL_COPY_META = 1

NLM_F_REQUEST = 0x1
NLM_F_ACK = 0x4
NLMSG_ERROR = 0x2
NLMSG_DONE = 0x3

NF_ACCEPT = 1
QUEUE_MAXLEN = 8192


def attribute(kind, payload):
    """One netlink attribute (struct nlattr), padded to 4 bytes."""
    length = 4 + len(payload)
    return struct.pack("=HH", length, kind) + payload + b"\0" * ((4 - length % 4) % 4)


def message(kind, flags, sequence, queue, attributes):
    """An nfnetlink message: nlmsghdr, nfgenmsg (AF_UNSPEC, version 0, queue number), attributes."""
    body = struct.pack("=BBH", socket.AF_UNSPEC, 0, socket.htons(queue)) + b"".join(attributes)
    header = struct.pack("=IHHII", 16 + len(body), (NFNL_SUBSYS_QUEUE << 8) | kind, flags, sequence, 0)
    return header + body


def parse_attributes(data):
    """Attributes of an nfnetlink message body (after nfgenmsg), as {type: payload}."""
    result = {}
    offset = 0
    while offset + 4 <= len(data):
        length, kind = struct.unpack_from("=HH", data, offset)
        if length < 4:
            break
        result[kind & 0x7FFF] = data[offset + 4 : offset + length]
        offset += (length + 3) & ~3
    return result


class DelayQueue:
    def __init__(self, queue, delay, jitter, rng):
        self.queue = queue
        self.delay = delay
        self.jitter = jitter
        self.rng = rng
        self.sequence = 0
        self.held = []  # heap of (release time, arrival counter, packet id)
        self.arrivals = 0
        self.released = 0
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        # Dropped notifications must not turn into recv() errors: the kernel accepts or drops
        # such packets itself (fail-open below).
        self.sock.setsockopt(SOL_NETLINK, NETLINK_NO_ENOBUFS, 1)
        self.sock.bind((0, 0))

    def request(self, attributes):
        """Sends a config message and waits for the kernel's acknowledgement."""
        self.sequence += 1
        self.sock.send(message(NFQNL_MSG_CONFIG, NLM_F_REQUEST | NLM_F_ACK, self.sequence, self.queue, attributes))
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline:
            data = self.sock.recv(65536)
            for kind, sequence, payload in self.messages(data):
                if kind == NLMSG_ERROR and sequence == self.sequence:
                    (error,) = struct.unpack_from("=i", payload, 0)
                    if error != 0:
                        raise OSError(-error, os.strerror(-error))
                    return
                if kind == (NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_PACKET:
                    self.hold(payload)
        raise TimeoutError("the kernel did not acknowledge an NFQUEUE config message")

    @staticmethod
    def messages(data):
        """Splits a netlink datagram into (type, sequence, payload after nlmsghdr)."""
        offset = 0
        while offset + 16 <= len(data):
            length, kind, _flags, sequence, _pid = struct.unpack_from("=IHHII", data, offset)
            if length < 16:
                break
            yield kind, sequence, data[offset + 16 : offset + length]
            offset += (length + 3) & ~3

    def bind(self):
        command = struct.pack("=BBH", NFQNL_CFG_CMD_BIND, 0, socket.htons(socket.AF_INET))
        self.request([attribute(NFQA_CFG_CMD, command)])
        params = struct.pack(">IB", 0, NFQNL_COPY_META)  # packed nfqnl_msg_config_params
        flags = struct.pack(">I", NFQA_CFG_F_FAIL_OPEN | NFQA_CFG_F_GSO)
        self.request([
            attribute(NFQA_CFG_PARAMS, params),
            attribute(NFQA_CFG_QUEUE_MAXLEN, struct.pack(">I", QUEUE_MAXLEN)),
            attribute(NFQA_CFG_MASK, flags),
            attribute(NFQA_CFG_FLAGS, flags),
        ])

    def unbind(self):
        command = struct.pack("=BBH", NFQNL_CFG_CMD_UNBIND, 0, socket.htons(socket.AF_INET))
        try:
            self.request([attribute(NFQA_CFG_CMD, command)])
        except OSError:
            pass

    def hold(self, payload):
        """Queues one NFQNL_MSG_PACKET (payload after nlmsghdr) for its release time."""
        attributes = parse_attributes(payload[4:])
        header = attributes.get(NFQA_PACKET_HDR)
        if header is None or len(header) < 4:
            return
        (packet_id,) = struct.unpack_from(">I", header, 0)
        wait = self.delay + (self.rng.uniform(-self.jitter, self.jitter) if self.jitter else 0.0)
        self.arrivals += 1
        heapq.heappush(self.held, (time.monotonic() + max(0.0, wait), self.arrivals, packet_id))

    def accept(self, packet_id):
        self.sequence += 1
        verdict = attribute(NFQA_VERDICT_HDR, struct.pack(">II", NF_ACCEPT, packet_id))
        try:
            self.sock.send(message(NFQNL_MSG_VERDICT, NLM_F_REQUEST, self.sequence, self.queue, [verdict]))
        except OSError:
            pass  # the packet is gone (queue flushed); nothing else to do
        self.released += 1

    def release_due(self, now):
        while self.held and self.held[0][0] <= now:
            _, _, packet_id = heapq.heappop(self.held)
            self.accept(packet_id)

    def release_all(self):
        while self.held:
            _, _, packet_id = heapq.heappop(self.held)
            self.accept(packet_id)

    def run(self, stop, wakeup):
        packet_type = (NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_PACKET
        while not stop["now"]:
            now = time.monotonic()
            self.release_due(now)
            timeout = max(0.0, self.held[0][0] - now) if self.held else 1.0
            readable, _, _ = select.select([self.sock, wakeup], [], [], timeout)
            if wakeup in readable:
                wakeup.recv(64)
            if self.sock not in readable:
                continue
            # Drain what is there without blocking, so a burst is timed from its arrival.
            while True:
                try:
                    data = self.sock.recv(65536, socket.MSG_DONTWAIT)
                except (BlockingIOError, InterruptedError):
                    break
                for kind, _sequence, payload in self.messages(data):
                    if kind == packet_type:
                        self.hold(payload)


def main():
    parser = argparse.ArgumentParser(description="Delay the packets of an NFQUEUE queue.")
    parser.add_argument("--queue", type=int, default=0)
    parser.add_argument("--delay-ms", type=float, required=True)
    parser.add_argument("--jitter-ms", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args()
    if args.delay_ms < 0 or args.jitter_ms < 0:
        parser.error("delay and jitter must not be negative")

    stop = {"now": False}

    def request_stop(_signum, _frame):
        stop["now"] = True

    # The handlers only set a flag; the wakeup socket makes select() return at once (Python
    # retries an interrupted select, so without it a stop could wait for the next packet).
    wakeup, wakeup_writer = socket.socketpair()
    wakeup.setblocking(False)
    wakeup_writer.setblocking(False)
    signal.set_wakeup_fd(wakeup_writer.fileno())
    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)

    delay_queue = DelayQueue(args.queue, args.delay_ms / 1000.0, args.jitter_ms / 1000.0, random.Random(args.seed))
    try:
        delay_queue.bind()
    except OSError as error:
        print(json.dumps({"event": "error", "message": f"cannot bind NFQUEUE {args.queue}: {error} (the kernel needs "
                          "nfnetlink_queue: CONFIG_NETFILTER_NETLINK_QUEUE, or `modprobe nfnetlink_queue`)"}), flush=True)
        return 1
    print(json.dumps({"event": "ready", "queue": args.queue, "delay_ms": args.delay_ms,
                      "jitter_ms": args.jitter_ms, "pid": os.getpid()}), flush=True)
    try:
        delay_queue.run(stop, wakeup)
    finally:
        delay_queue.release_all()
        delay_queue.unbind()
        delay_queue.sock.close()
    print(json.dumps({"event": "stopped", "packets": delay_queue.released}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
