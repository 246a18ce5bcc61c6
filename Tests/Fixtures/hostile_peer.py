#!/usr/bin/env python3
"""Hostile BitTorrent peers for the hardening tests. Each mode dials TARGET (IP:PORT) for the
torrent INFOHASH_HEX of PIECES pieces, from the local address FROM_IP, and prints one line of
results before it exits.

  hostile_peer.py MODE FROM_IP TARGET INFOHASH_HEX PIECES [COUNT] [SECONDS]

unread-requests  COUNT valid requests (block 0 of each piece in turn), never reading a byte
interest-flips   COUNT interested/not-interested pairs, never reading
request-cancel   interested, then COUNT request+cancel pairs, never reading
unsolicited      no data (have-none), then two corrupt blocks of every piece, unasked, in rounds
                 for SECONDS; reads and discards whatever the target sends
idle             COUNT connections, one per address FROM_IP, FROM_IP+1, ..., each handshakes,
                 says interested and then holds the slot for SECONDS (reading and discarding);
                 prints how many were still open a second after their handshakes
same-address     COUNT connections all from FROM_IP; prints how many stay open
handshake        one connection: prints 'handshake' if the target answered, 'closed' if not
"""
import os, socket, struct, sys, threading, time

mode, from_ip, target = sys.argv[1], sys.argv[2], sys.argv[3]
host, port = target.rsplit(":", 1)
port = int(port)
info_hash, pieces = bytes.fromhex(sys.argv[4]), int(sys.argv[5])
count = int(sys.argv[6]) if len(sys.argv) > 6 else 1
seconds = float(sys.argv[7]) if len(sys.argv) > 7 else 5.0
BLOCK = 16384


def msg(mid, payload=b""):
    return struct.pack(">IB", 1 + len(payload), mid) + payload


def connect(source_ip):
    s = socket.socket()
    s.bind((source_ip, 0))
    s.settimeout(10)
    s.connect((host, port))
    reserved = bytearray(8)
    reserved[7] |= 0x04  # fast extension (BEP 6)
    s.sendall(bytes([19]) + b"BitTorrent protocol" + bytes(reserved) + info_hash + b"-HX0001-" + os.urandom(12))
    return s


def got_handshake(s):
    buf = b""
    try:
        while len(buf) < 68:
            chunk = s.recv(68 - len(buf))
            if not chunk:
                return False
            buf += chunk
    except OSError:
        return False
    return buf[28:48] == info_hash


def still_open(s, wait):
    """True when the connection is not closed by the other side within `wait` seconds."""
    s.settimeout(0.05)
    deadline = time.time() + wait
    while time.time() < deadline:
        try:
            if not s.recv(65536):
                return False
        except socket.timeout:
            pass
        except OSError:
            return False
    return True


def drain_forever(s):
    s.settimeout(None)
    try:
        while s.recv(65536):
            pass
    except OSError:
        pass


def flood(s, chunk, rounds):
    """Sends `chunk` `rounds` times without reading; returns bytes sent before the target closed."""
    sent = 0
    s.settimeout(30)
    try:
        for _ in range(rounds):
            s.sendall(chunk)
            sent += len(chunk)
    except OSError:
        pass
    return sent


def request(piece, begin=0):
    return msg(6, struct.pack(">III", piece, begin, BLOCK))


if mode in ("unread-requests", "interest-flips", "request-cancel"):
    s = connect(from_ip)
    per_chunk = 10_000
    if mode == "unread-requests":
        chunk = b"".join(request(i % pieces) for i in range(per_chunk))
    elif mode == "interest-flips":
        chunk = (msg(2) + msg(3)) * per_chunk
    else:
        s.sendall(msg(2))
        time.sleep(0.5)  # the unchoke arrives (unread): requests are then queued, not refused
        chunk = b"".join(request(i % pieces) + msg(8, struct.pack(">III", i % pieces, 0, BLOCK)) for i in range(per_chunk))
    sent = flood(s, chunk, max(1, count // per_chunk))
    closed = not still_open(s, 1.0)
    print(f"sent {sent} bytes; closed by target: {closed}", flush=True)
elif mode == "unsolicited":
    s = connect(from_ip)
    if not got_handshake(s):
        print("no handshake", flush=True)
        sys.exit(1)
    s.sendall(msg(15))  # have-none
    threading.Thread(target=drain_forever, args=(s,), daemon=True).start()
    sent = 0
    deadline = time.time() + seconds
    try:
        while time.time() < deadline:
            for p in range(pieces):
                for b in range(2):
                    s.sendall(msg(7, struct.pack(">II", p, b * BLOCK) + os.urandom(BLOCK)))
                    sent += 1
            time.sleep(0.2)
    except OSError:
        pass
    print(f"sent {sent} unsolicited blocks", flush=True)
elif mode in ("idle", "same-address"):
    base = [int(x) for x in from_ip.split(".")]
    socks = []
    for i in range(count):
        src = from_ip if mode == "same-address" else ".".join(map(str, base[:3] + [base[3] + i]))
        try:
            s = connect(src)
            if got_handshake(s):
                s.sendall(msg(2))
                socks.append(s)
            else:
                s.close()
        except OSError:
            pass
    time.sleep(1)
    open_socks = [s for s in socks if still_open(s, 0.05)]
    print(f"open {len(open_socks)} of {count}", flush=True)
    for s in open_socks:
        threading.Thread(target=drain_forever, args=(s,), daemon=True).start()
    if mode == "idle":
        time.sleep(seconds)
elif mode == "handshake":
    try:
        s = connect(from_ip)
        print("handshake" if got_handshake(s) else "closed", flush=True)
    except OSError:
        print("closed", flush=True)
else:
    sys.exit(f"unknown mode {mode}")
