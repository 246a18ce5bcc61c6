import BitTorrent
import Logging
import NIOCore
import Prometheus
import ServiceLifecycle
import Values
#if canImport(Glibc)
import Glibc
#endif

/// Announces each torrent to its trackers, tier by tier with failover (BEP 12): `started`,
/// `completed` and `stopped` with the session's real byte counts, honouring `interval` and
/// `min interval`, backing off while a tracker is down without disturbing the peers already
/// known, and handing the peers it learns to the engine. An actor: each torrent's tiers
/// change only here. A `Service`: on graceful shutdown every torrent announces `stopped`.
actor TrackerAnnouncer: Service {
    private struct Torrent {
        let session: TorrentSession
        /// Announce URLs by tier; a tracker that answers moves to the front of its tier.
        var tiers: [[String]]
        var loop: Task<Void, Never>?
    }

    private let engine: PeerEngine
    private let client: HTTPTrackerClient
    private let logger: Logger
    /// A node's configured trackers: a last tier after each torrent's own.
    private let extraTrackers: [String]
    private let key = String(UInt32.random(in: 0...UInt32.max), radix: 16)
    private let metrics = TrackerClientMetrics()
    private var torrents: [InfoHash: Torrent] = [:]

    init(engine: PeerEngine, extraTrackers: [String], group: any EventLoopGroup, logger: Logger) {
        self.engine = engine
        self.extraTrackers = extraTrackers
        self.logger = logger
        client = HTTPTrackerClient(group: group, userAgent: "starling/\(EngineConfig.version)",
                                   localAddress: try? SocketAddress(ipAddress: engine.config.ip, port: 0))
    }

    func run() async throws {
        try? await gracefulShutdown()
        await withTaskGroup(of: Void.self) { group in
            for hash in torrents.keys { group.addTask { await self.remove(hash) } }
        }
    }

    /// Starts announcing `session`'s torrent (nothing when it has no usable tracker).
    func add(_ session: TorrentSession) {
        guard torrents[session.infoHash] == nil else { return }
        let own = session.metainfo.announceList + (extraTrackers.isEmpty ? [] : [extraTrackers])
        let tiers = own.map { $0.filter { (try? URLAddress(parsing: $0))?.scheme == .http } }.filter { !$0.isEmpty }
        if tiers.isEmpty {
            if !session.metainfo.trackers.isEmpty {
                logger.warning("no usable tracker: only http:// trackers are supported", metadata: ["trackers": "\(session.metainfo.trackers)"])
            }
            return
        }
        let hash = session.infoHash
        torrents[hash] = Torrent(session: session, tiers: tiers)
        torrents[hash]?.loop = Task { await self.announceLoop(hash) }
    }

    /// Tells the trackers at once that this peer now has the whole file.
    func completed(_ infoHash: InfoHash) async {
        _ = await announce(infoHash, event: .completed)
    }

    /// Announces `stopped` (bounded by a short timeout) and forgets the torrent.
    func remove(_ infoHash: InfoHash) async {
        guard let t = torrents[infoHash] else { return }
        t.loop?.cancel()
        await withTaskGroup(of: Void.self) { group in
            group.addTask { _ = await self.announce(infoHash, event: .stopped) }
            group.addTask { try? await Task.sleep(for: .seconds(2)) }
            await group.next()
            group.cancelAll()
        }
        torrents[infoHash] = nil
    }

    private func announceLoop(_ infoHash: InfoHash) async {
        var event: AnnounceEvent? = .started
        var failures = 0
        while !Task.isCancelled {
            let delay: Int
            if let response = await announce(infoHash, event: event) {
                event = nil
                failures = 0
                delay = max(response.interval, response.minInterval ?? 0, 1)
            } else {
                failures += 1
                delay = min(60, 1 << min(failures, 6))
            }
            try? await Task.sleep(for: .seconds(delay))
        }
    }

    /// One announce to the first tracker that answers. Returns nil when every tracker failed.
    private func announce(_ infoHash: InfoHash, event: AnnounceEvent?) async -> AnnounceResponse? {
        guard let session = torrents[infoHash]?.session else { return nil }
        let status = await engine.status(of: infoHash)
        let request = AnnounceRequest(infoHash: infoHash, peerID: engine.config.peerID, port: UInt16(engine.listenPort),
                                      uploaded: status?.uploaded ?? 0, downloaded: status?.downloaded ?? 0,
                                      left: status?.left ?? session.metainfo.totalLength, event: event,
                                      numWant: event == .stopped ? 0 : 80, key: key, compact: true, ip: nil)
        let tiers = torrents[infoHash]?.tiers ?? []
        for t in tiers.indices {
            for (i, url) in tiers[t].enumerated() {
                do {
                    let response = try await client.announce(url: url, request: request)
                    if i > 0, var tier = torrents[infoHash]?.tiers[t], let at = tier.firstIndex(of: url) {
                        tier.insert(tier.remove(at: at), at: 0)
                        torrents[infoHash]?.tiers[t] = tier
                    }
                    metrics.announced(ok: true)
                    let peers = response.peers.compactMap { p -> PeerAddress? in
                        p.port > 0 ? PeerAddress(host: p.host, port: Int(p.port)) : nil
                    }
                    logger.debug("announced", metadata: ["tracker": "\(url)", "event": "\(event?.rawValue ?? "-")", "peers": "\(peers.count)"])
                    engine.addCandidates(peers, for: infoHash)
                    if let w = response.warning { logger.warning("tracker warning", metadata: ["tracker": "\(url)", "warning": "\(w)"]) }
                    return response
                } catch {
                    metrics.announced(ok: false)
                    logger.warning("tracker announce failed; continuing with known peers",
                                   metadata: ["tracker": "\(url)", "error": "\(error)"])
                }
            }
        }
        return nil
    }
}

/// Client-side tracker metrics.
struct TrackerClientMetrics {
    let ok = StarlingMetrics.counter("tracker_client_announces_total", "Announces this node sent to trackers, by result.", [("result", "ok")])
    let failed = StarlingMetrics.counter("tracker_client_announces_total", "Announces this node sent to trackers, by result.", [("result", "error")])
    let lastSuccess = StarlingMetrics.gauge("tracker_last_success_timestamp_seconds", "Unix time of the last successful tracker announce.")

    func announced(ok success: Bool) {
        if success {
            ok.increment()
            var ts = timespec()
            clock_gettime(CLOCK_REALTIME, &ts)
            lastSuccess.set(to: Double(ts.tv_sec))
        } else {
            failed.increment()
        }
    }
}
