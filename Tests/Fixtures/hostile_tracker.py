#!/usr/bin/env python3
"""A hostile HTTP tracker for tests: every announce gets as many fresh fake peers as a
1 MiB answer holds (compact, 170,000), and interval 1. Prints 'announce N' per answer.
Usage: hostile_tracker.py IP PORT"""
import struct, sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PEERS = 170_000
count = 0

class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        global count
        base = count * PEERS
        count += 1
        peers = b"".join(struct.pack(">BBBBH", 10, (n >> 16) & 0xFF, (n >> 8) & 0xFF, n & 0xFF, 6881)
                         for n in range(base, base + PEERS))
        body = b"d8:intervali1e5:peers%d:%se" % (len(peers), peers)
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        print("announce", count, flush=True)

    def log_message(self, *args):
        pass

ThreadingHTTPServer((sys.argv[1], int(sys.argv[2])), Handler).serve_forever()
