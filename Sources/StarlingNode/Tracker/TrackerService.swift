import BitTorrent
import Logging
import NIOConcurrencyHelpers
import Prometheus
import Storage
import Swarm
import Values

/// Settings of a tracker (the `starling tracker` options).
public struct TrackerConfiguration: Sendable {
    public static let defaultSaveInterval = 30
    public static let defaultMaxConnections = 10_000

    public var host: String
    public var port: Int
    /// Announce interval handed to clients, seconds; each answer adds up to 20 % jitter so
    /// a fleet started together does not re-announce in lockstep.
    public var interval: Int
    /// `min interval` handed to clients.
    public var minInterval: Int
    /// Seconds of silence after which a peer is forgotten.
    public var peerTimeout: Int
    public var defaultNumWant: Int
    public var maxNumWant: Int
    public var maxPeers: Int
    /// Serve only the info-hashes of .torrent files in this folder.
    public var allowDir: String?
    /// Seconds between polls of `allowDir` for changes.
    public var allowDirPollInterval: Int
    /// Where swarms are saved and reloaded from.
    public var stateFile: String?
    /// Seconds between state saves (and expiry sweeps run at least this often).
    public var saveInterval: Int
    /// Networks (e.g. a reverse proxy, a NAT gateway) whose `ip=` parameter is believed.
    public var trustedNetworks: [CIDR]
    /// Longest request head accepted.
    public var maxHeadSize: Int
    /// Connections open at once; more are closed on accept.
    public var maxConnections: Int
    /// Seconds a connection may sit without completing a request (slowloris bound).
    public var idleTimeout: Int
    /// Event-loop threads (default: one per core).
    public var threads: Int?
    /// Seconds a full-scrape answer is served again before it is rebuilt.
    public var fullScrapeCacheSeconds: Int
    /// Sites by address block: a peer in a site is handed mostly peers of its own site.
    public var sites: SiteMap
    /// Peers of other sites handed to a peer in a site per announce.
    public var remotePeers: Int

    public init(host: String = "0.0.0.0", port: Int = 6969, interval: Int = Defaults.trackerInterval, minInterval: Int? = nil,
                peerTimeout: Int? = nil, defaultNumWant: Int = TrackerRegistry.Configuration.defaultNumWant,
                maxNumWant: Int = TrackerRegistry.Configuration.defaultMaxNumWant,
                maxPeers: Int = TrackerRegistry.Configuration.defaultMaxPeers,
                allowDir: String? = nil, allowDirPollInterval: Int = 2, stateFile: String? = nil, saveInterval: Int = TrackerConfiguration.defaultSaveInterval,
                trustedNetworks: [CIDR] = [], maxHeadSize: Int = 8192, maxConnections: Int = TrackerConfiguration.defaultMaxConnections,
                idleTimeout: Int = 15, threads: Int? = nil, fullScrapeCacheSeconds: Int = 5,
                sites: SiteMap = SiteMap(), remotePeers: Int = TrackerRegistry.Configuration.defaultRemotePeers) {
        self.host = host
        self.port = port
        self.interval = interval
        self.minInterval = minInterval ?? max(1, interval / 2)
        // Three missed announces (with jitter) before a peer is dropped; at least a minute.
        self.peerTimeout = peerTimeout ?? max(60, interval * 3 + interval / 5 + 5)
        self.defaultNumWant = defaultNumWant
        self.maxNumWant = maxNumWant
        self.maxPeers = maxPeers
        self.allowDir = allowDir
        self.allowDirPollInterval = allowDirPollInterval
        self.stateFile = stateFile
        self.saveInterval = saveInterval
        self.trustedNetworks = trustedNetworks
        self.maxHeadSize = maxHeadSize
        self.maxConnections = maxConnections
        self.idleTimeout = idleTimeout
        self.threads = threads
        self.fullScrapeCacheSeconds = fullScrapeCacheSeconds
        self.sites = sites
        self.remotePeers = remotePeers
    }
}

/// The tracker's request handling without sockets: routes a parsed request to the registry
/// and returns the HTTP answer. Thread-safe; the NIO handler only frames bytes around it.
public final class TrackerService: Sendable {
    public let configuration: TrackerConfiguration
    private let state: NIOLockedValueBox<(registry: TrackerRegistry, rng: TrackerRandom)>
    private let allow: NIOLockedValueBox<AllowList?>
    private let fullScrapeCache = NIOLockedValueBox(FullScrapeCache())
    private let metrics = TrackerMetrics()
    let logger: Logger

    public init(configuration: TrackerConfiguration, logger: Logger = Logger(label: "starling.tracker")) {
        self.configuration = configuration
        self.logger = logger
        let rc = TrackerRegistry.Configuration(peerTimeout: Int64(configuration.peerTimeout),
                                               defaultNumWant: configuration.defaultNumWant,
                                               maxNumWant: configuration.maxNumWant, maxPeers: configuration.maxPeers,
                                               sites: configuration.sites, remotePeers: configuration.remotePeers)
        state = NIOLockedValueBox((TrackerRegistry(configuration: rc), TrackerRandom()))
        allow = NIOLockedValueBox(nil)
    }

    // MARK: Routes

    /// Answers one request from `remote` (the connection's source address).
    public func handle(_ request: HTTPRequest, remote: IPAddress?, now: Int64 = TrackerService.unixNow()) -> HTTPResponse {
        let started = ContinuousClock.now
        defer { metrics.latency.record(Self.seconds(started.duration(to: .now))) }
        guard request.method == "GET" || request.method == "HEAD" else {
            return HTTPResponse(status: 405, body: Array("only GET is supported\n".utf8))
        }
        switch request.path {
        case "/announce": return announce(query: request.query, remote: remote, now: now)
        case "/scrape": return scrape(query: request.query, now: now)
        case "/metrics":
            refreshGauges()
            return HTTPResponse(status: 200, contentType: "text/plain; version=0.0.4; charset=utf-8",
                                       body: StarlingMetrics.exposition())
        case "/healthz": return HTTPResponse(status: 200, body: Array("ok\n".utf8))
        default: return HTTPResponse(status: 404, body: Array("not found: try /announce, /scrape, /metrics, /healthz\n".utf8))
        }
    }

    func announce(query: Substring, remote: IPAddress?, now: Int64) -> HTTPResponse {
        let request: AnnounceRequest
        do {
            request = try AnnounceRequest.parse(query: query)
        } catch {
            metrics.announces.invalid.increment()
            return Self.failure(error.message, status: 400)
        }
        if let allowed = allow.withLockedValue({ $0?.infoHashes }), !allowed.contains(request.infoHash) {
            metrics.announces.unknown.increment()
            return Self.failure("unregistered torrent: \(request.infoHash.hex) is not served by this tracker")
        }
        // The connection's address is the peer's; `ip=` only counts from a trusted proxy or gateway.
        var address = remote
        if let claimed = request.ip, let r = remote, configuration.trustedNetworks.contains(where: { $0.contains(r) }) {
            address = IPAddress(claimed) ?? remote
        }
        guard let address else {
            metrics.announces.invalid.increment()
            return Self.failure("cannot tell the peer's address", status: 400)
        }
        let result: TrackerRegistry.AnnounceResult
        let jitter: Int
        do {
            (result, jitter) = try state.withLockedValue { s in
                let r = try s.registry.announce(request, address: address, now: now, using: &s.rng)
                return (r, Int.random(in: 0...max(0, configuration.interval / 5), using: &s.rng))
            }
        } catch {
            metrics.announces.full.increment()
            return Self.failure((error as? TrackerError)?.message ?? "\(error)", status: 503)
        }
        metrics.announces.ok.increment()
        let response = AnnounceResponse(interval: configuration.interval + jitter, minInterval: configuration.minInterval,
                                        peers: result.peers, complete: result.complete, incomplete: result.incomplete)
        return HTTPResponse(status: 200, body: response.encoded(compact: request.compact))
    }

    func scrape(query: Substring, now: Int64) -> HTTPResponse {
        let request: ScrapeRequest
        do {
            request = try ScrapeRequest.parse(query: query)
        } catch {
            metrics.scrapes.invalid.increment()
            return Self.failure(error.message, status: 400)
        }
        if request.infoHashes.isEmpty {
            metrics.scrapes.ok.increment()
            return HTTPResponse(status: 200, body: fullScrape(now: now))
        }
        let allowed = allow.withLockedValue { $0?.infoHashes }
        var files: [InfoHash: ScrapeStats] = [:]
        state.withLockedValue { s in
            for h in request.infoHashes where allowed?.contains(h) ?? true {
                files[h] = s.registry.stats(h) ?? ScrapeStats(complete: 0, incomplete: 0, downloaded: 0, left: 0)
            }
        }
        metrics.scrapes.ok.increment()
        return HTTPResponse(status: 200, body: ScrapeResponse(files: files).encoded())
    }

    /// The last full-scrape body and when it was built.
    struct FullScrapeCache {
        var body: [UInt8]?
        var builtAt: Int64 = 0
        var builds = 0
        /// A build is under way (its caller holds no lock meanwhile).
        var building = false
        /// Bumped when the allow-list changes, so a build begun before is not kept.
        var generation = 0
    }

    /// A full scrape (BEP 48): every swarm (or every allowed one), the largest first and at most
    /// `maxFullScrape`, so an open tracker's answer stays bounded.
    ///
    /// Building it reads every swarm under the registry's lock: with 100,000 swarms a flood of
    /// full scrapes took announces from 1 ms to about 1 s. So the body is built at most once per
    /// `fullScrapeCacheSeconds`, only the stats are copied under the registry's lock, and while
    /// one request rebuilds it the others get the previous body rather than wait (each waiting
    /// request would hold an event loop, and the announces queued on it).
    func fullScrape(now: Int64) -> [UInt8] {
        enum Next { case serve([UInt8]), build(generation: Int) }
        let next: Next = fullScrapeCache.withLockedValue { cache in
            if let body = cache.body {
                let fresh = now >= cache.builtAt && now - cache.builtAt < Int64(configuration.fullScrapeCacheSeconds)
                if fresh || cache.building { return .serve(body) }
            }
            cache.building = true
            return .build(generation: cache.generation)
        }
        let generation: Int
        switch next {
        case .serve(let body): return body
        case .build(let g): generation = g
        }
        let allowed = allow.withLockedValue { $0?.infoHashes }
        let all = state.withLockedValue { $0.registry.allStats() }.filter { allowed?.contains($0.key) ?? true }
        var files = all
        if all.count > Self.maxFullScrape {
            let top = all.sorted { $0.value.complete + $0.value.incomplete > $1.value.complete + $1.value.incomplete }
            files = Dictionary(uniqueKeysWithValues: top.prefix(Self.maxFullScrape).map { ($0.key, $0.value) })
        }
        let body = ScrapeResponse(files: files).encoded()
        fullScrapeCache.withLockedValue { cache in
            cache.builds += 1
            cache.building = false
            guard cache.generation == generation else { return }
            cache.body = body
            cache.builtAt = now
        }
        return body
    }

    /// Full-scrape bodies built so far (each served until it is `fullScrapeCacheSeconds` old).
    var fullScrapeBuilds: Int { fullScrapeCache.withLockedValue { $0.builds } }

    /// Most torrents in an answer to a scrape without `info_hash`.
    public static let maxFullScrape = 1000

    static func failure(_ reason: String, status: Int = 200) -> HTTPResponse {
        HTTPResponse(status: status, body: AnnounceResponse.failure(reason))
    }

    static func seconds(_ d: Duration) -> Double {
        Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18
    }

    // MARK: Housekeeping (called by the server's timers)

    /// Forgets silent peers; returns how many.
    @discardableResult
    public func expire(now: Int64 = TrackerService.unixNow()) -> Int {
        state.withLockedValue { $0.registry.expire(now: now) }
    }

    public var counts: (swarms: Int, peers: Int) {
        state.withLockedValue { ($0.registry.swarmCount, $0.registry.peerCount) }
    }

    public func snapshot() -> TrackerSnapshot {
        state.withLockedValue { $0.registry.snapshot() }
    }

    public func restore(_ snapshot: TrackerSnapshot, now: Int64 = TrackerService.unixNow()) {
        state.withLockedValue { $0.registry.restore(snapshot, now: now) }
    }

    /// Saves the registry to the state file, if one is configured.
    public func saveState() throws {
        guard let path = configuration.stateFile else { return }
        // Snapshot under the lock, encode and write outside it: announces keep flowing.
        let snap = snapshot()
        try TrackerStateFile.save(snap, to: path)
        logger.info("state saved to \(path): \(snap.swarms.count) swarms, \(snap.peerCount) peers")
    }

    /// Loads the state file, if configured and present.
    public func loadState() throws {
        guard let path = configuration.stateFile else { return }
        guard let snap = try TrackerStateFile.load(from: path) else {
            logger.info("no state at \(path) yet: starting empty")
            return
        }
        restore(snap)
        let c = counts
        logger.info("state loaded from \(path): \(c.swarms) swarms, \(c.peers) peers")
    }

    /// Re-reads the allow-list folder when its files changed. Returns true when it reloaded.
    @discardableResult
    public func refreshAllowList() throws -> Bool {
        guard let dir = configuration.allowDir else { return false }
        let current = allow.withLockedValue { $0?.signature }
        if let current, try AllowList.currentSignature(folder: dir) == current { return false }
        let list = try AllowList.load(folder: dir)
        for p in list.problems { logger.warning("allow-dir: skipping \(p)") }
        allow.withLockedValue { $0 = list }
        // The next full scrape must not serve torrents the new list dropped.
        fullScrapeCache.withLockedValue { cache in
            cache.body = nil
            cache.generation += 1
        }
        logger.info("allow-list: \(list.infoHashes.count) torrents from \(dir)")
        return true
    }

    /// Sets the per-torrent and total gauges from the registry.
    func refreshGauges() {
        let (stats, sites) = state.withLockedValue { ($0.registry.allStats(), $0.registry.siteTotals()) }
        metrics.update(stats)
        metrics.updateSites(sites)
    }
}

/// The tracker's metric families, registered once per process (the registry traps on duplicates
/// with other help text, and the helpers return the existing family for the same labels).
final class TrackerMetrics: Sendable {
    struct Results: Sendable {
        let ok, invalid, unknown, full: Counter
        init(_ name: String, _ help: String) {
            ok = StarlingMetrics.counter(name, help, [("result", "ok")])
            invalid = StarlingMetrics.counter(name, help, [("result", "invalid")])
            unknown = StarlingMetrics.counter(name, help, [("result", "unregistered")])
            full = StarlingMetrics.counter(name, help, [("result", "full")])
        }
    }
    let announces = Results("tracker_announces_total", "Tracker announces handled, by result.")
    let scrapes = Results("tracker_scrapes_total", "Tracker scrapes handled, by result.")
    let latency = StarlingMetrics.histogram("tracker_request_duration_seconds", "Time to answer a tracker HTTP request.",
                                            buckets: [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05])
    let swarms = StarlingMetrics.gauge("tracker_swarms", "Swarms (torrents with peers) the tracker knows.")
    let peers = StarlingMetrics.gauge("tracker_peers", "Peers the tracker knows, all swarms.")
    /// Per-torrent gauges for the largest swarms only, so label sets stay bounded.
    static let maxTorrentLabels = 100
    private let perTorrent = NIOLockedValueBox<[String: (seeders: Gauge, leechers: Gauge)]>([:])
    private let perSite = NIOLockedValueBox<[String: (seeders: Gauge, leechers: Gauge)]>([:])

    /// Peers per site (`--site`), all swarms together: as many series as the map has sites.
    func updateSites(_ totals: [String: ScrapeStats]) {
        perSite.withLockedValue { gauges in
            for (site, s) in totals {
                let name = site.isEmpty ? "none" : site
                let g = gauges[name] ?? (
                    StarlingMetrics.gauge("tracker_site_peers", "Peers per site (--site; none: outside every site), all swarms.", [("site", name), ("state", "seeder")]),
                    StarlingMetrics.gauge("tracker_site_peers", "Peers per site (--site; none: outside every site), all swarms.", [("site", name), ("state", "leecher")]))
                gauges[name] = g
                g.seeders.set(to: Double(s.complete))
                g.leechers.set(to: Double(s.incomplete))
            }
            for (name, g) in gauges where totals[name == "none" ? "" : name] == nil {
                g.seeders.set(to: 0)
                g.leechers.set(to: 0)
            }
        }
    }

    func update(_ stats: [InfoHash: ScrapeStats]) {
        swarms.set(to: Double(stats.count))
        peers.set(to: Double(stats.values.reduce(0) { $0 + $1.complete + $1.incomplete }))
        let top = stats.sorted { ($0.value.complete + $0.value.incomplete) > ($1.value.complete + $1.value.incomplete) }
            .prefix(Self.maxTorrentLabels)
        perTorrent.withLockedValue { gauges in
            var seen = Set<String>()
            for (hash, s) in top {
                let label = hash.shortHex
                seen.insert(label)
                let g = gauges[label] ?? (
                    StarlingMetrics.gauge("tracker_seeders", "Seeders per torrent (largest swarms).", [("torrent", label)]),
                    StarlingMetrics.gauge("tracker_leechers", "Leechers per torrent (largest swarms).", [("torrent", label)]))
                gauges[label] = g
                g.seeders.set(to: Double(s.complete))
                g.leechers.set(to: Double(s.incomplete))
            }
            // Swarms that went away: drop their series rather than leave stale values.
            for (label, g) in gauges where !seen.contains(label) {
                StarlingMetrics.registry.unregisterGauge(g.seeders)
                StarlingMetrics.registry.unregisterGauge(g.leechers)
                gauges[label] = nil
            }
        }
    }
}
