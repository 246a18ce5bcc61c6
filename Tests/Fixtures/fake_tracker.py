#!/usr/bin/env python3
"""A hostile HTTP tracker for tests: every announce is answered with PEERS fake compact peers
(random loopback addresses, so dials stay on this machine) and an interval of 1 s. Prints
'listening', then 'answered N' after each answer. Usage: fake_tracker.py IP PORT PEERS"""
import http.server, os, sys

ip, port, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
answered = 0


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        global answered
        peers = bytearray()
        for chunk in range(0, count, 4096):
            raw = os.urandom(6 * min(4096, count - chunk))
            for i in range(0, len(raw), 6):
                peers += bytes([127]) + raw[i + 1:i + 4] + raw[i + 4:i + 6]
        body = b"d8:intervali1e12:min intervali1e5:peers%d:" % len(peers) + bytes(peers) + b"e"
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        answered += 1
        print(f"answered {answered}", flush=True)

    def log_message(self, *args):
        pass


server = http.server.HTTPServer((ip, port), Handler)
print("listening", flush=True)
server.serve_forever()
