#!/usr/bin/env python3
"""A lying BitTorrent peer for tests: claims every piece and answers every request with
random bytes. Usage: liar_peer.py IP PORT INFOHASH_HEX PIECE_COUNT"""
import os, socket, struct, sys, threading

ip, port, info_hash, pieces = sys.argv[1], int(sys.argv[2]), bytes.fromhex(sys.argv[3]), int(sys.argv[4])

def recv_exact(s, n):
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise EOFError
        buf += chunk
    return buf

def serve(conn):
    try:
        hs = recv_exact(conn, 68)
        if hs[28:48] != info_hash:
            return
        conn.sendall(bytes([19]) + b"BitTorrent protocol" + bytes(8) + info_hash + b"-LI0001-" + os.urandom(12))
        nbytes = (pieces + 7) // 8
        bits = bytearray(b"\xff" * nbytes)
        if pieces % 8:
            bits[-1] = (0xFF << (8 - pieces % 8)) & 0xFF
        conn.sendall(struct.pack(">IB", 1 + nbytes, 5) + bytes(bits))
        conn.sendall(struct.pack(">IB", 1, 1))  # unchoke
        while True:
            (length,) = struct.unpack(">I", recv_exact(conn, 4))
            if length == 0:
                continue
            body = recv_exact(conn, length)
            if body[0] == 6 and length == 13:
                index, begin, size = struct.unpack(">III", body[1:])
                conn.sendall(struct.pack(">IBII", 9 + size, 7, index, begin) + os.urandom(size))
    except (EOFError, OSError):
        pass
    finally:
        conn.close()

srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind((ip, port))
srv.listen(16)
print("listening", flush=True)
while True:
    c, _ = srv.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
