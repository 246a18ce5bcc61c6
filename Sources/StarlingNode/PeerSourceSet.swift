import BitTorrent
import Logging
import NIOCore
import Prometheus
#if canImport(Glibc)
import Glibc
#endif

/// Where candidate peers come from besides the command line: the torrent's trackers, tier
/// by tier with failover (BEP 12). Announces `started`, `completed` and `stopped` with the
/// session's real byte counts, honours `interval`/`min interval`, and backs off while a
/// tracker is down without disturbing the peers already known.
final class PeerSourceSet: @unchecked Sendable {
    private let engine: PeerEngine
    private let session: TorrentSession
    private let logger: Logger
    private let client: HTTPTrackerClient
    private var tiers: [[String]]
    private var task: Task<Void, Never>?
    private let key = String(UInt32.random(in: 0...UInt32.max), radix: 16)
    private let metrics = TrackerClientMetrics()

    /// `extraTrackers` (a node's configured trackers) form a last tier after the torrent's own.
    init(engine: PeerEngine, session: TorrentSession, noTracker: Bool, extraTrackers: [String] = [],
         group: EventLoopGroup, logger: Logger) {
        self.engine = engine
        self.session = session
        self.logger = logger
        client = HTTPTrackerClient(group: group, userAgent: "starling/\(EngineConfig.version)",
                                   localAddress: try? SocketAddress(ipAddress: engine.config.ip, port: 0))
        let own = session.metainfo.announceList + (extraTrackers.isEmpty ? [] : [extraTrackers])
        tiers = noTracker ? [] : own.map { $0.filter { $0.hasPrefix("http://") } }.filter { !$0.isEmpty }
        if !noTracker && tiers.isEmpty && !session.metainfo.trackers.isEmpty {
            logger.warning("no usable tracker: only http:// trackers are supported", metadata: ["trackers": "\(session.metainfo.trackers)"])
        }
    }

    func start() {
        guard !tiers.isEmpty else { return }
        task = Task { await self.announceLoop() }
    }

    /// Tells the trackers at once that this peer now has the whole file.
    func completed() {
        guard !tiers.isEmpty else { return }
        Task { _ = await self.announce(event: .completed) }
    }

    /// Announces `stopped` (bounded by a short timeout) and ends the loop.
    func stop() async {
        task?.cancel()
        guard !tiers.isEmpty else { return }
        _ = await withTaskGroup(of: Void.self) { group in
            group.addTask { _ = await self.announce(event: .stopped) }
            group.addTask { try? await Task.sleep(nanoseconds: 2_000_000_000) }
            await group.next()
            group.cancelAll()
        }
    }

    private func announceLoop() async {
        var event: AnnounceEvent? = .started
        var failures = 0
        while !Task.isCancelled {
            let delay: Int
            if let response = await announce(event: event) {
                event = nil
                failures = 0
                delay = max(response.interval, response.minInterval ?? 0, 1)
            } else {
                failures += 1
                delay = min(60, 1 << min(failures, 6))
            }
            try? await Task.sleep(nanoseconds: UInt64(delay) * 1_000_000_000)
        }
    }

    /// One announce to the first tracker that answers; a tracker that answers moves to the
    /// front of its tier (BEP 12). Returns nil when every tracker failed.
    private func announce(event: AnnounceEvent?) async -> AnnounceResponse? {
        let stats = try? await engine.loop.submit { (self.session.uploadedBytes, self.session.downloadedBytes, self.session.left) }.get()
        let (up, down, left) = stats ?? (0, 0, session.metainfo.totalLength)
        let request = AnnounceRequest(infoHash: session.infoHash, peerID: engine.config.peerID, port: UInt16(engine.listenPort),
                                      uploaded: up, downloaded: down, left: left, event: event,
                                      numWant: event == .stopped ? 0 : 80, key: key, compact: true, ip: nil)
        for t in tiers.indices {
            for (i, url) in tiers[t].enumerated() {
                do {
                    let response = try await client.announce(url: url, request: request)
                    if i > 0 { tiers[t].insert(tiers[t].remove(at: i), at: 0) }
                    metrics.announced(ok: true)
                    let peers = response.peers.compactMap { p -> PeerAddress? in
                        p.port > 0 ? PeerAddress(host: p.host, port: Int(p.port)) : nil
                    }
                    logger.debug("announced", metadata: ["tracker": "\(url)", "event": "\(event?.rawValue ?? "-")", "peers": "\(peers.count)"])
                    engine.addCandidates(peers, for: session.infoHash)
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
