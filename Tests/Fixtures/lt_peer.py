#!/usr/bin/python3
"""libtorrent seeder or peer for Starling's compatibility tests (Debian python3-libtorrent).

  lt_peer.py seed T.torrent DIR --ip IP --port P
  lt_peer.py peer T.torrent DIR --ip IP --port P [--linger S]
  lt_peer.py make FILE --tracker URL --output T.torrent [--piece-kib 256]

DHT, LSD, PEX (ut_pex), UPnP and NAT-PMP are off, so peers meet only through the tracker.
A peer exits 0 once every piece is hash-checked (after lingering S seconds), 1 on error.
"""
import argparse, os, signal, sys, time
import libtorrent as lt

def session(ip, port):
    s = lt.session({
        "listen_interfaces": f"{ip}:{port}", "outgoing_interfaces": ip,
        "enable_dht": False, "enable_lsd": False, "enable_upnp": False, "enable_natpmp": False,
        "enable_outgoing_utp": False, "enable_incoming_utp": False,
        "allow_multiple_connections_per_ip": True,
        "alert_mask": lt.alert.category_t.error_notification | lt.alert.category_t.status_notification,
    })
    return s

def add(s, torrent, folder, seeding):
    params = lt.add_torrent_params()
    params.ti = lt.torrent_info(torrent)
    params.save_path = folder
    params.flags &= ~(lt.torrent_flags.auto_managed | lt.torrent_flags.paused)
    params.flags |= lt.torrent_flags.disable_pex if hasattr(lt.torrent_flags, "disable_pex") else 0
    if seeding:
        params.flags |= lt.torrent_flags.seed_mode
    return s.add_torrent(params)

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["seed", "peer", "make"])
    ap.add_argument("torrent")
    ap.add_argument("folder", nargs="?")
    ap.add_argument("--ip", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=6881)
    ap.add_argument("--linger", type=float, default=0)
    ap.add_argument("--timeout", type=float, default=60)
    ap.add_argument("--tracker")
    ap.add_argument("--output")
    ap.add_argument("--piece-kib", type=int, default=256)
    a = ap.parse_args()
    if a.mode == "make":
        fs = lt.file_storage()
        lt.add_files(fs, a.torrent)
        ct = lt.create_torrent(fs, a.piece_kib * 1024, lt.create_torrent.v1_only)
        ct.add_tracker(a.tracker)
        lt.set_piece_hashes(ct, os.path.dirname(os.path.abspath(a.torrent)))
        open(a.output, "wb").write(lt.bencode(ct.generate()))
        return 0
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    s = session(a.ip, a.port)
    h = add(s, a.torrent, a.folder, a.mode == "seed")
    print(f"{a.mode} started on {a.ip}:{a.port}", flush=True)
    deadline = time.time() + a.timeout
    done_at = None
    while not stop:
        for alert in s.pop_alerts():
            if isinstance(alert, lt.torrent_error_alert):
                print("error:", alert.message(), flush=True)
                return 1
        st = h.status()
        if a.mode == "peer":
            if done_at is None and st.is_seeding:
                done_at = time.time()
                print("complete", flush=True)
            if done_at is not None and time.time() - done_at >= a.linger:
                return 0
            if time.time() > deadline:
                print(f"timeout at {st.progress * 100:.1f}%", flush=True)
                return 1
        time.sleep(0.1)
    return 0

sys.exit(main())
