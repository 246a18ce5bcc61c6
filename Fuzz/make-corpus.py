#!/usr/bin/env python3
"""Writes the seed corpora in Fuzz/Corpus/TARGET/ (small, valid inputs, one per file).

Run from anywhere: python3 Fuzz/make-corpus.py [STARLING_BINARY]. With a `starling` binary,
the metainfo corpus also gets torrents made by its make-torrent; the other inputs are built
here, byte for byte as the wire formats (documented in Sources/) lay them out.
"""
import hashlib, hmac, os, shutil, struct, subprocess, sys, tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, "Corpus")
REPO = os.path.dirname(HERE)
GOSSIP_KEY = b"starling-fuzz-gossip-key"  # as in Sources/fuzz-gossip
ADMIN_TOKEN = "fuzz-admin-token"  # as in Sources/fuzz-admin

def bencode(v):
    if isinstance(v, int): return b"i%de" % v
    if isinstance(v, str): v = v.encode()
    if isinstance(v, bytes): return b"%d:%s" % (len(v), v)
    if isinstance(v, list): return b"l" + b"".join(map(bencode, v)) + b"e"
    if isinstance(v, dict):
        items = sorted((k.encode() if isinstance(k, str) else k, x) for k, x in v.items())
        return b"d" + b"".join(bencode(k) + bencode(x) for k, x in items) + b"e"
    raise TypeError(v)

def pct(b):
    return "".join(chr(c) if chr(c).isalnum() or chr(c) in "-._~" else "%%%02X" % c for c in b)

def write(target, name, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())

def torrent(name, length, piece=16384, multi=None, **top):
    info = {"name": name, "piece length": piece}
    total = sum(l for _, l in multi) if multi else length
    info["pieces"] = hashlib.sha256(name.encode()).digest()[:20] * max(1, -(-total // piece)) if total else b""
    if multi: info["files"] = [{"length": l, "path": p} for p, l in multi]
    else: info["length"] = length
    return bencode(dict(top, info=info))

def main():
    # Inputs that once found a bug (regression-*) are kept; everything else is rewritten.
    for d in (os.listdir(CORPUS) if os.path.isdir(CORPUS) else []):
        for f in os.listdir(os.path.join(CORPUS, d)):
            if not f.startswith("regression-"): os.remove(os.path.join(CORPUS, d, f))
    ih, pid = hashlib.sha1(b"fuzz").digest(), b"-ST0001-" + b"0123456789ab"

    # bencode and metainfo
    t1 = torrent("a.bin", 100000, announce="http://10.0.0.1:6969/announce")
    t2 = torrent("dir", 0, multi=[(["x", "a.txt"], 5), (["b"], 70000)],
                 **{"announce-list": [["http://t1/announce"], ["http://t2/announce"]], "comment": "c", "created by": "fuzz"})
    for i, v in enumerate([b"i42e", b"i-7e", b"4:spam", b"le", b"de", b"l4:spami3ee",
                           b"d3:bar4:spam3:fooi42ee", b"d1:ad1:bl1:ci0eeee", t1]):
        write("fuzz-bencode", "seed-%d" % i, v)
    write("fuzz-metainfo", "single", t1)
    write("fuzz-metainfo", "multi", t2)
    write("fuzz-metainfo", "private", torrent("p", 1, **{"announce": "http://t/a"}).replace(b"4:name", b"7:privatei1e4:name"))
    if len(sys.argv) > 1:
        with tempfile.TemporaryDirectory() as tmp:
            os.makedirs(os.path.join(tmp, "tree", "sub"))
            for path, size in [("file.bin", 70000), ("tree/a", 3), ("tree/sub/b", 40000)]:
                with open(os.path.join(tmp, path), "wb") as f: f.write(os.urandom(size))
            for src, extra in [("file.bin", ["--tracker", "http://10.0.0.1:6969/announce"]),
                               ("tree", ["--tracker", "http://a/announce", "--tracker", "http://b/announce", "--private"]),
                               ("file.bin", ["--piece-size", "16KiB"])]:
                out = os.path.join(tmp, "t.torrent")
                subprocess.run([sys.argv[1], "make-torrent", os.path.join(tmp, src), "--output", out] + extra,
                               check=True, stdout=subprocess.DEVNULL)
                with open(out, "rb") as f: data = f.read()
                write("fuzz-metainfo", "make-torrent-%s%s" % (src, "-".join(extra[:1])), data)
                os.remove(out)

    # handshake and peer-wire (first byte of a peer-wire input: piece count / 8, 0 = unknown)
    hs = bytes([19]) + b"BitTorrent protocol" + bytes([0, 0, 0, 0, 0, 0x10, 0, 0x04]) + ih + pid
    write("fuzz-handshake", "fast-extended", hs)
    write("fuzz-handshake", "plain-then-message", hs[:20] + bytes(8) + hs[28:] + b"\0\0\0\1\2")
    msg = lambda i, p=b"": struct.pack(">IB", 1 + len(p), i) + p
    req = struct.pack(">III", 3, 16384, 16384)
    write("fuzz-peer-wire", "all", b"\x02" + b"\0\0\0\0" + b"".join(msg(i) for i in (0, 1, 2, 3, 14, 15))
          + msg(4, struct.pack(">I", 7)) + msg(5, b"\xff\xf0") + msg(6, req) + msg(8, req) + msg(16, req)
          + msg(7, struct.pack(">II", 3, 0) + b"data") + msg(9, b"\x1a\xe1") + msg(13, b"\0\0\0\1")
          + msg(17, b"\0\0\0\2") + msg(20, b"\0d1:md6:ut_pexi1eee") + msg(99, b"xyz"))
    write("fuzz-peer-wire", "unknown-count", b"\x00" + msg(5, bytes(300)) + msg(7, struct.pack(">II", 0, 0) + bytes(64)))
    write("fuzz-peer-wire", "bitfield-exact", b"\x01" + msg(5, b"\xf8") + msg(4, b"\0\0\0\4"))

    # tracker: query strings, request heads, responses
    q = "info_hash=%s&peer_id=%s&port=6881&uploaded=0&downloaded=10&left=1000&compact=1" % (pct(ih), pct(pid))
    queries = [q, q + "&event=started&numwant=50&key=abc", q + "&event=stopped&ip=10.0.0.7",
               q.replace("compact=1", "compact=0") + "&event=completed&no_peer_id=1&supportcrypto=1",
               "info_hash=%s&info_hash=%s" % (pct(ih), pct(hashlib.sha1(b"b").digest())), ""]
    for i, query in enumerate(queries): write("fuzz-tracker-query", "query-%d" % i, query)
    heads = ["GET /announce?%s HTTP/1.1\r\nHost: 10.0.0.1:6969\r\nUser-Agent: fuzz\r\n\r\n" % q,
             "GET /scrape?%s HTTP/1.0\r\nConnection: keep-alive\r\n\r\n" % queries[4],
             "GET /announce?%s HTTP/1.1\r\nConnection: close\r\nContent-Length: 0\r\n\r\nGET /scrape HTTP/1.1\r\n\r\n" % queries[1],
             "\r\nGET /metrics HTTP/1.1\nAccept: */*\n\n"]
    for i, head in enumerate(heads): write("fuzz-tracker-http", "head-%d" % i, head)
    responses = [bencode({"interval": 1800, "min interval": 60, "complete": 2, "incomplete": 3,
                          "peers": bytes([10, 0, 0, 2, 0x1a, 0xe1, 10, 0, 0, 3, 0x1a, 0xe2]),
                          "peers6": bytes(15) + b"\1\x1a\xe1"}),
                 bencode({"interval": 60, "peers": [{"ip": "10.0.0.9", "port": 6881, "peer id": pid},
                                                    {"ip": "host.example", "port": 1}],
                          "warning message": "w", "tracker id": "t"}),
                 bencode({"failure reason": "unregistered torrent"}),
                 bencode({"files": {ih: {"complete": 1, "downloaded": 4, "incomplete": 2}}})]
    for i, r in enumerate(responses): write("fuzz-tracker-response", "response-%d" % i, r)
    admin = ["POST /rate?up=40mbit&down=5MB HTTP/1.1\r\nAuthorization: Bearer %s\r\n\r\n" % ADMIN_TOKEN,
             "POST /torrents?torrent=/srv/a.torrent&path=/srv/a&mode=seed HTTP/1.1\r\nAuthorization: Bearer %s\r\n\r\n" % ADMIN_TOKEN,
             "DELETE /torrents?info_hash=%s HTTP/1.1\r\nAuthorization: Bearer %s\r\n\r\n" % (ih.hex(), ADMIN_TOKEN),
             "GET /status HTTP/1.1\r\n\r\nGET /healthz HTTP/1.1\r\n\r\nPUT /rate?up=0 HTTP/1.1\r\n\r\n"]
    for i, a in enumerate(admin): write("fuzz-admin", "request-%d" % i, a)

    # gossip: sealed datagrams (layout in Sources/BitTorrent/Gossip/GossipMessage.swift)
    def seal(kind, sender, torrents=(), members=()):
        addr = bytes(10) + b"\xff\xff" + bytes([10, 213, 0, 1])
        body = struct.pack(">BBHQ", 1, kind, 0, sender) + addr + struct.pack(">HHQQIBB", 6881, 6890, 1700000000000, 7, 3,
                                                                            len(torrents), len(members))
        for h, done in torrents: body += h + bytes([done])
        for mid, status in members: body += struct.pack(">Q", mid) + addr + struct.pack(">HHBII", 6881, 6890, status, 1, 250)
        return body + hmac.new(GOSSIP_KEY, body, hashlib.sha256).digest()
    write("fuzz-gossip", "ping", seal(1, 42))
    write("fuzz-gossip", "ack-full", seal(2, 43, [(ih, 1), (hashlib.sha1(b"b").digest(), 0)], [(44, 0), (45, 1), (46, 2)]))
    write("fuzz-gossip", "leave", seal(3, 44, [(ih, 0)]))

    # node configuration: the examples in config/
    for name in sorted(os.listdir(os.path.join(REPO, "config"))):
        if name.endswith(".yaml"):
            with open(os.path.join(REPO, "config", name), "rb") as f: write("fuzz-node-config", name, f.read())

if __name__ == "__main__":
    main()
