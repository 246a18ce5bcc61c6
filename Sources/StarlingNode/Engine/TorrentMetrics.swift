import Prometheus
import Swarm

/// Per-torrent metric series; the label is the info-hash prefix, so series stay bounded.
struct TorrentMetrics {
    let downloaded: Prometheus.Counter
    let uploaded: Prometheus.Counter
    /// `torrent_bytes_total` split by whether the peer is in our site (`--site`): what
    /// crossed the site's uplink is `scope="remote"`. Without a site map every byte is "site".
    private let byScope: [String: Prometheus.Counter]
    let wasted: Prometheus.Counter
    let verified: Prometheus.Counter
    let hashFailures: Prometheus.Counter
    let protocolErrors: Prometheus.Counter
    let banned: Prometheus.Counter
    let progressRatio: Prometheus.Gauge
    /// What the download waits on, set once a second: requests out, and complete pieces
    /// waiting for their hash check (the picker stops asking at `maxUncheckedBytes`).
    private let requestsOutstanding: Prometheus.Gauge
    private let uncheckedBytes: Prometheus.Gauge
    let completionSeconds: Prometheus.ValueHistogram
    private let peerGauges: [String: Prometheus.Gauge]
    private let caps: [String: Prometheus.Gauge]

    static let peerStates = ["connected", "seeds", "uploading_to", "downloading_from", "interested"]

    init(label: String, name: String, sizeBytes: Int64) {
        let t = [("torrent", label)]
        downloaded = StarlingMetrics.counter("torrent_bytes_total", "Piece payload bytes by torrent and direction.", t + [("direction", "down")])
        uploaded = StarlingMetrics.counter("torrent_bytes_total", "Piece payload bytes by torrent and direction.", t + [("direction", "up")])
        byScope = Dictionary(uniqueKeysWithValues: ["down", "up"].flatMap { d in
            ["site", "remote"].map { scope in
                ("\(d)-\(scope)", StarlingMetrics.counter("torrent_scope_bytes_total",
                                                           "Piece payload bytes by direction and by whether the peer is in our site (site) or another (remote).",
                                                           t + [("direction", d), ("scope", scope)]))
            }
        })
        wasted = StarlingMetrics.counter("wasted_bytes_total", "Bytes received but discarded (duplicates, failed hashes).", t)
        verified = StarlingMetrics.counter("pieces_verified_total", "Pieces that passed their SHA-1 check.", t)
        hashFailures = StarlingMetrics.counter("pieces_failed_total", "Pieces that failed their SHA-1 check.", t)
        protocolErrors = StarlingMetrics.counter("peer_protocol_errors_total", "Connections closed for a protocol violation.", t)
        banned = StarlingMetrics.counter("peers_banned_total", "Peers banned for sending corrupt data.", t)
        progressRatio = StarlingMetrics.gauge("download_progress_ratio", "Fraction of the torrent verified on disk (0 to 1).", t)
        requestsOutstanding = StarlingMetrics.gauge("requests_outstanding", "Blocks asked of peers and not yet received.", t)
        uncheckedBytes = StarlingMetrics.gauge("unchecked_bytes", "Bytes of complete pieces waiting for their hash check and write.", t)
        completionSeconds = StarlingMetrics.histogram("time_to_complete_seconds", "Seconds from start to a complete, verified download.",
                                                      buckets: [1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1200, 3600], t)
        var gauges: [String: Prometheus.Gauge] = [:]
        for s in Self.peerStates {
            gauges[s] = StarlingMetrics.gauge("peers", "Connected peers by state.", t + [("state", s)])
        }
        peerGauges = gauges
        caps = Dictionary(uniqueKeysWithValues: ["up", "down"].map { d in
            (d, StarlingMetrics.gauge("torrent_rate_cap_bytes_per_second", "Per-torrent rate cap below the host cap; 0 = none.",
                                      t + [("direction", d)]))
        })
        StarlingMetrics.gauge("torrent_info", "Torrent name by label; always 1.", t + [("name", name)]).set(to: 1)
        StarlingMetrics.gauge("torrent_size_bytes", "Total payload size of the torrent in bytes.", t).set(to: Double(sizeBytes))
    }

    func setCaps(up: Int64, down: Int64) {
        caps["up"]!.set(to: Double(up))
        caps["down"]!.set(to: Double(down))
    }

    /// Adds what the rules counted since the last report.
    func record(_ c: TorrentState.Counters, since last: TorrentState.Counters) {
        for (counter, delta) in [(downloaded, c.downloaded - last.downloaded), (uploaded, c.uploaded - last.uploaded),
                                 (wasted, c.wasted - last.wasted), (verified, c.verified - last.verified),
                                 (hashFailures, c.hashFailures - last.hashFailures), (banned, c.banned - last.banned)]
        where delta > 0 {
            counter.increment(by: delta)
        }
        let remoteDown = c.downloadedAcrossSites - last.downloadedAcrossSites, remoteUp = c.uploadedAcrossSites - last.uploadedAcrossSites
        for (key, delta) in [("down-remote", remoteDown), ("up-remote", remoteUp),
                             ("down-site", c.downloaded - last.downloaded - remoteDown), ("up-site", c.uploaded - last.uploaded - remoteUp)]
        where delta > 0 {
            byScope[key]!.increment(by: delta)
        }
    }

    func pipeline(outstanding: Int, unchecked: Int) {
        requestsOutstanding.set(to: Double(outstanding))
        uncheckedBytes.set(to: Double(unchecked))
    }

    func peersChanged(_ c: TorrentState.PeerCounts) {
        let values = ["connected": c.connected, "seeds": c.seeds, "uploading_to": c.uploadingTo,
                      "downloading_from": c.downloadingFrom, "interested": c.interested]
        for s in Self.peerStates { peerGauges[s]!.set(to: Double(values[s] ?? 0)) }
    }
}
