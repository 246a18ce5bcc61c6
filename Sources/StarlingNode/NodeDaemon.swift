import BitTorrent
import Logging
import NIOCore
import NIOPosix
import NodeConfig
import Storage
#if canImport(Glibc)
import Glibc
#endif

/// `starling node`: one long-running process that can be tracker, seeder and peer at once,
/// for several torrents, from a YAML configuration. SIGHUP reloads the rate caps and the
/// torrent list without dropping transfers; SIGTERM stops gracefully (announces `stopped`,
/// saves tracker state, closes files).
public final class NodeDaemon: @unchecked Sendable {
    // Mutable state is touched only from `run()`'s task (reloads and the watch loop run there).
    private var config: NodeConfiguration
    private let logger: Logger
    private let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    private var engine: PeerEngine!
    private var tracker: TrackerServer?
    private var http: NodeHTTPServer?
    private var gossip: GossipService?
    private var torrents: [InfoHash: Running] = [:]
    /// .torrent files of the watch folder already started (by path).
    private var watched: Set<String> = []
    /// Watch-folder entries that could not be read, already logged.
    private var unreadable: Set<String> = []

    struct Running {
        var session: TorrentSession
        var sources: PeerSourceSet
        var spec: NodeConfiguration.Torrent?
    }

    public init(config: NodeConfiguration, logger: Logger) {
        self.config = config
        self.logger = logger
    }

    enum Event: Sendable { case stop(Int32), reload, tick, completed(InfoHash), admin(AdminAction) }

    /// Runs until SIGTERM or SIGINT; returns the exit status.
    public func run() async throws -> Int32 {
        BuildInfo.register(version: EngineConfig.version)
        let (events, continuation) = AsyncStream<Event>.makeStream()
        self.continuation = continuation
        do {
            try await start()
        } catch {
            await stop()
            throw error
        }
        let signals = Signals.on([SIGINT, SIGTERM, SIGHUP]) { sig in
            continuation.yield(sig == SIGHUP ? .reload : .stop(sig))
        }
        defer { for s in signals { s.cancel() } }
        let ticker = engine.loop.scheduleRepeatedTask(initialDelay: .seconds(2), delay: .seconds(2)) { _ in continuation.yield(.tick) }
        for (hash, r) in torrents { watchCompletion(hash, r.session) }
        logger.info("node running", metadata: ["name": "\(config.name)", "roles": "\(config.roles.map(\.rawValue))",
                                               "torrents": "\(torrents.count)"])
        for await event in events {
            switch event {
            case .stop(let sig):
                logger.info("stopping on signal \(sig)")
                ticker.cancel()
                await stop()
                return 0
            case .reload:
                await reload()
            case .tick:
                await scanWatchDir()
            case .completed(let hash):
                torrents[hash]?.sources.completed()
                announceGossip()
            case .admin(let action):
                await perform(action)
            }
        }
        return 0
    }

    private var continuation: AsyncStream<Event>.Continuation?

    private func watchCompletion(_ hash: InfoHash, _ session: TorrentSession) {
        guard !session.isComplete else { return }
        session.completed.whenSuccess { [weak self] in self?.continuation?.yield(.completed(hash)) }
    }

    // MARK: start and stop

    private func start() async throws {
        if let t = config.tracker, config.has(.tracker) {
            let tc = TrackerConfiguration(host: t.listen.host, port: t.listen.port, interval: t.interval, allowDir: t.allowDir,
                                          stateFile: t.stateFile, trustedNetworks: t.trustedCIDRs, sites: config.sites)
            let server = TrackerServer(configuration: tc, logger: logger)
            try await server.start()
            tracker = server
        }
        guard config.has(.seeder) || config.has(.peer) else { return try await startHTTPOnlyTracker() }
        var ec = EngineConfig(ip: config.ip)
        ec.portRange = config.portRange
        ec.upRate = config.rates.up
        ec.downRate = config.rates.down
        ec.maxChange = config.rates.maxChange
        ec.rules.maxPeers = config.limits.maxPeers
        ec.rules.uploadSlots = config.limits.uploadSlots
        ec.allowedPeers = config.allowedPeers
        ec.tcpCongestion = config.tcpCongestion
        ec.sites = config.sites
        engine = try PeerEngine(config: ec, loop: group.next(), logger: logger)
        try FilePaths.makeDirectories(config.dataDir)
        for spec in config.torrents { try await add(spec) }
        try await engine.start()
        try await startHTTP()
        if let g = config.gossip {
            let gc: GossipConfig
            do {
                gc = try GossipConfig.fromOptions(ip: config.ip, subnet: g.subnet.description, port: UInt16(g.port), keyFile: g.keyFile,
                                                  seeds: g.seeds.map(\.description), insecure: g.insecure)
            } catch {
                throw CLIVisibleError("gossip: \(error)")
            }
            let service = GossipService(config: gc, group: group, logger: logger)
            gossip = service
            announceGossip()
            try await service.start()
            let engine = self.engine!
            Task {
                for await peer in service.discoveredPeers {
                    engine.addCandidates([PeerAddress(host: peer.host, port: Int(peer.port))], for: peer.infoHash)
                }
            }
        }
        for r in torrents.values { r.sources.start() }
        await scanWatchDir()
    }

    /// A tracker-only node still serves /metrics and /healthz.
    private func startHTTPOnlyTracker() async throws {
        engine = try PeerEngine(config: EngineConfig(ip: config.ip), loop: group.next(), logger: logger)
        try await startHTTP()
    }

    private func startHTTP() async throws {
        let continuation = self.continuation
        let server = NodeHTTPServer(engine: engine, logger: logger, onAdminAction: { continuation?.yield(.admin($0)) })
        http = server
        let h = config.http
        var token: String?
        if let f = h.adminTokenFile {
            do {
                token = try FilePaths.readTrimmedText(f)
            } catch {
                throw CLIVisibleError("http.admin_token_file: \(error)")
            }
        }
        try await server.listen(.init(host: h.metricsListen.host, port: h.metricsListen.port, admin: false))
        try await server.listen(.init(host: h.adminListen.host, port: h.adminListen.port, admin: true, token: token))
    }

    private func stop() async {
        if let engine { await engine.limiter.taperBeforeExit(logger: logger) }
        await http?.shutdown()
        await withTaskGroup(of: Void.self) { g in
            for r in torrents.values { g.addTask { await r.sources.stop() } }
        }
        await gossip?.stop()
        await engine?.shutdown()
        do { try await tracker?.shutdown() } catch { logger.error("tracker shutdown: \(error)") }
        try? await group.shutdownGracefully()
    }

    // MARK: torrents

    private func add(_ spec: NodeConfiguration.Torrent) async throws {
        let metainfo = try Self.loadTorrent(spec.torrent)
        guard torrents[metainfo.infoHash] == nil else { return }
        let path = config.dataPath(for: spec, torrentName: metainfo.name)
        let session: TorrentSession
        do {
            session = try await engine.add(metainfo: metainfo, path: path, mode: spec.mode == .seed ? .seed : .download)
        } catch {
            throw CLIVisibleError("\(spec.torrent): \(error)")
        }
        let sources = PeerSourceSet(engine: engine, session: session, noTracker: config.gossip?.noTracker ?? false,
                                    extraTrackers: config.trackers, group: group, logger: logger)
        torrents[metainfo.infoHash] = Running(session: session, sources: sources, spec: spec)
        if spec.upRate > 0 || spec.downRate > 0 { session.setCaps(up: spec.upRate, down: spec.downRate) }
        logger.info(spec.mode == .seed ? "seeding" : "fetching",
                    metadata: ["torrent": "\(metainfo.name)", "info-hash": "\(metainfo.infoHash.hex)", "path": "\(path)"])
    }

    static func loadTorrent(_ path: String) throws -> Metainfo {
        do {
            return try Metainfo(bytes: FilePaths.readAll(path, limit: Metainfo.maxFileSize))
        } catch {
            throw CLIVisibleError("\(path): \(error)")
        }
    }

    private func announceGossip() {
        guard let gossip else { return }
        gossip.announce(torrents: torrents.map { ($0.key, complete: $0.value.session.isComplete) },
                        peerPort: UInt16(engine.listenPort))
    }

    /// A .torrent dropped into the watch folder starts a fetch into the data folder.
    private func scanWatchDir() async {
        guard let dir = config.watchDir, engine != nil, FilePaths.isDirectory(dir) else { return }
        let listing: (files: [WalkedFile], problems: [String])
        do {
            listing = try DirectoryWalker.regularFiles(in: dir) { $0.hasSuffix(".torrent") }
        } catch {
            return
        }
        // Logged once each (the folder is scanned every few seconds), retried every scan.
        for p in listing.problems where !unreadable.contains(p) {
            unreadable.insert(p)
            logger.warning("watch folder: skipping \(p)")
        }
        for f in listing.files where !watched.contains(f.fullPath) {
            watched.insert(f.fullPath)
            let spec = NodeConfiguration.Torrent(torrent: f.fullPath, mode: .fetch)
            do {
                try await add(spec)
                if let hash = torrents.first(where: { $0.value.spec?.torrent == f.fullPath })?.key, let r = torrents[hash] {
                    r.sources.start()
                    watchCompletion(hash, r.session)
                    announceGossip()
                }
            } catch {
                logger.error("watch folder: cannot start \(f.fullPath): \(error)")
            }
        }
    }

    /// Adds or removes a torrent on an operator's request (admin endpoint, `starling ctl`).
    private func perform(_ action: AdminAction) async {
        switch action {
        case .add(let path, let dataPath, let seed):
            let spec = NodeConfiguration.Torrent(torrent: path, path: dataPath, mode: seed ? .seed : .fetch)
            do {
                try await add(spec)
                if let (hash, r) = torrents.first(where: { $0.value.spec?.torrent == path }) {
                    r.sources.start()
                    watchCompletion(hash, r.session)
                    announceGossip()
                }
            } catch {
                logger.error("admin: cannot add \(path): \(error)")
            }
        case .remove(let hash):
            guard let r = torrents.removeValue(forKey: hash) else {
                logger.warning("admin: no torrent \(hash.hex) to remove")
                return
            }
            await r.sources.stop()
            await engine.remove(hash)
            announceGossip()
            logger.info("admin: removed torrent", metadata: ["torrent": "\(r.session.metainfo.name)"])
        }
    }

    // MARK: reload

    /// Re-reads the configuration: new rate caps take hold at once, torrents added to the list
    /// start, torrents removed from it stop. Other changes need a restart (and are logged).
    private func reload() async {
        let fresh: NodeConfiguration
        do {
            fresh = try NodeConfiguration.load(path: config.file)
        } catch {
            logger.error("reload refused; keeping the running configuration:\n\(error)")
            return
        }
        if fresh.rates != config.rates, let engine {
            engine.limiter.setRates(up: fresh.rates.up, down: fresh.rates.down)
            if fresh.rates.maxChange != config.rates.maxChange { engine.limiter.setMaxChange(fresh.rates.maxChange) }
            logger.info("rate caps changed", metadata: ["up": "\(Units.formatRate(Double(fresh.rates.up)))",
                                                        "down": "\(Units.formatRate(Double(fresh.rates.down)))"])
        }
        let wanted = Set(fresh.torrents.map(\.torrent))
        for (hash, r) in torrents where r.spec.map({ !wanted.contains($0.torrent) && !watched.contains($0.torrent) }) ?? false {
            await r.sources.stop()
            await engine.remove(hash)
            torrents[hash] = nil
            logger.info("stopped torrent removed from the configuration", metadata: ["torrent": "\(r.session.metainfo.name)"])
        }
        // Per-torrent caps of torrents that stay.
        for spec in fresh.torrents {
            if let (hash, r) = torrents.first(where: { $0.value.spec?.torrent == spec.torrent }),
               r.spec.map({ ($0.upRate, $0.downRate) != (spec.upRate, spec.downRate) }) ?? false {
                r.session.setCaps(up: spec.upRate, down: spec.downRate)
                torrents[hash]?.spec = spec
            }
        }
        let running = Set(torrents.values.compactMap { $0.spec?.torrent })
        config = fresh
        for spec in fresh.torrents where !running.contains(spec.torrent) {
            do {
                try await add(spec)
                if let (hash, r) = torrents.first(where: { $0.value.spec?.torrent == spec.torrent }) {
                    r.sources.start()
                    watchCompletion(hash, r.session)
                }
            } catch {
                logger.error("reload: cannot start \(spec.torrent): \(error)")
            }
        }
        announceGossip()
        logger.info("configuration reloaded", metadata: ["torrents": "\(torrents.count)"])
    }
}
