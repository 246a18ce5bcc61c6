import BitTorrent
import Logging
import NIOCore
import NodeConfig
import ServiceLifecycle
import Storage
import UnixSignals
import Values

/// The node's decisions over time: which torrents run (the configuration, the watch folder,
/// admin actions, SIGHUP reloads), what a completion or a failure means under the run's
/// policy, and when the process ends. Every event reaches it through one stream and is
/// handled in turn; it reads the engine through snapshots. The last service of the group:
/// it ends the run, and on a signal it is the first to stop (tapering the rate under a slew
/// limit while the others still serve).
actor NodeController: Service {
    enum Event: Sendable {
        case signal(UnixSignal)
        case completed(InfoHash)
        case failed(InfoHash, String)
        case admin(AdminAction)
        case scanWatchDir
        case timedOut
        case seedTimeOver
    }

    /// Who asked for a torrent: a reload adds and stops only the configuration's own.
    enum Origin: Sendable { case configuration, watchFolder, admin }

    private struct Running {
        var session: TorrentSession
        var spec: NodeConfiguration.Torrent
        var origin: Origin
        var progress: ProgressReporter?
    }

    private var config: NodeConfiguration
    private let policy: RunPolicy
    /// The configuration's torrents, opened (their data verified) before the engine listens.
    private let initial: [(NodeConfiguration.Torrent, TorrentSession)]
    private let engine: PeerEngine?
    private let announcer: TrackerAnnouncer?
    private let gossip: GossipService?
    private let events: AsyncStream<Event>
    private let sink: AsyncStream<Event>.Continuation
    private let logger: Logger
    private var torrents: [InfoHash: Running] = [:]
    /// .torrent files of the watch folder already started (by path), and those that could not
    /// be read (logged once each).
    private var watched: Set<String> = []
    private var unreadable: Set<String> = []
    private(set) var exitStatus: Int32 = 0

    init(config: NodeConfiguration, policy: RunPolicy,
         torrents: [(NodeConfiguration.Torrent, TorrentSession)], engine: PeerEngine?, announcer: TrackerAnnouncer?,
         gossip: GossipService?, events: AsyncStream<Event>, sink: AsyncStream<Event>.Continuation, logger: Logger) {
        self.config = config
        self.policy = policy
        initial = torrents
        self.engine = engine
        self.announcer = announcer
        self.gossip = gossip
        self.events = events
        self.sink = sink
        self.logger = logger
    }

    func run() async throws {
        let sink = self.sink
        let signals = await UnixSignalsSequence(trapping: config.file.isEmpty ? [.sigterm, .sigint] : [.sigterm, .sigint, .sighup])
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask {
                for await signal in signals { sink.yield(.signal(signal)) }
            }
            if let gossip, let engine {
                tasks.addTask {
                    for await peer in gossip.discoveredPeers {
                        engine.addCandidates([PeerAddress(host: peer.host, port: Int(peer.port))], for: peer.infoHash)
                    }
                }
            }
            try await start()
            if config.watchDir != nil {
                tasks.addTask {
                    while !Task.isCancelled {
                        sink.yield(.scanWatchDir)
                        try await Task.sleep(for: .seconds(2))
                    }
                }
            }
            if case .whenComplete(_, let timeout) = policy.exit, timeout > 0 {
                tasks.addTask {
                    try await Task.sleep(for: .seconds(timeout))
                    sink.yield(.timedOut)
                }
            }
            for await event in events.cancelOnGracefulShutdown() {
                if await handle(event) { break }
            }
            tasks.cancelAll()
        }
        await finish()
    }

    // MARK: start and stop

    private func start() async throws {
        if let engine {
            _ = try await engine.listening.get()
            for (spec, session) in initial { await register(spec, session, origin: .configuration) }
            await announceGossip()
        }
        if !config.file.isEmpty {
            logger.info("node running", metadata: ["name": "\(config.name)", "roles": "\(config.roles.map(\.rawValue))",
                                                   "torrents": "\(torrents.count)"])
        }
    }

    /// Ends the run: under a slew limit the upload tapers first, while the other services
    /// still serve, then the group stops them in reverse order.
    private func finish() async {
        for r in torrents.values { r.progress?.stop() }
        if let engine { await engine.limiter.taperBeforeExit(logger: logger) }
        sink.finish()
    }

    /// Handles one event; true when the run ends.
    private func handle(_ event: Event) async -> Bool {
        switch event {
        case .signal(let signal):
            if signal == .sighup {
                await reload()
                return false
            }
            logger.info("received \(signal), stopping")
            if case .whenComplete = policy.exit, await !allComplete() { exitStatus = 1 }
            return true
        case .completed(let hash):
            return await completed(hash)
        case .failed(let hash, let why):
            logger.error("\(torrents[hash]?.session.metainfo.name ?? hash.shortHex): \(why)")
            guard case .whenComplete = policy.exit else { return false }
            exitStatus = 1
            return true
        case .admin(let action):
            await perform(action)
            return false
        case .scanWatchDir:
            await scanWatchDir()
            return false
        case .timedOut:
            guard case .whenComplete(_, let timeout) = policy.exit, await !allComplete() else { return false }
            logger.error("gave up after \(timeout) s without completing")
            exitStatus = 1
            return true
        case .seedTimeOver:
            return true
        }
    }

    private func completed(_ hash: InfoHash) async -> Bool {
        guard let r = torrents[hash] else { return false }
        r.progress?.finish()
        // A seed started complete: nothing was downloaded, so trackers hear no `completed`.
        guard r.spec.mode != .seed else { return false }
        await announcer?.completed(hash)
        await announceGossip()
        guard let status = await engine?.status(of: hash) else { return false }
        // `wasted`: blocks received twice (an endgame duplicate, or a cancel crossed them) or
        // in pieces that failed their check.
        logger.info("complete and verified", metadata: ["path": "\(status.path)", "seconds": "\(Units.format1(status.completionSeconds ?? 0))",
                                                        "downloaded": "\(status.downloaded)", "wasted": "\(status.wasted)"])
        guard case .whenComplete(let seedAfter, _) = policy.exit, await allComplete() else { return false }
        guard seedAfter > 0 else { return true }
        logger.info("seeding for \(seedAfter) s before exiting")
        let sink = self.sink
        Task {
            try? await Task.sleep(for: .seconds(seedAfter))
            sink.yield(.seedTimeOver)
        }
        return false
    }

    private func allComplete() async -> Bool {
        guard let engine, let status = await engine.snapshot() else { return true }
        return status.torrents.allSatisfy(\.isComplete)
    }

    // MARK: torrents

    private func add(_ spec: NodeConfiguration.Torrent, _ metainfo: Metainfo, origin: Origin) async throws {
        guard let engine, torrents[metainfo.infoHash] == nil else { return }
        await register(spec, try await NodeRuntime.open(spec, metainfo, in: engine, config: config), origin: origin)
    }

    /// Starts serving or fetching an opened torrent: caps, progress, announces, completion.
    private func register(_ spec: NodeConfiguration.Torrent, _ session: TorrentSession, origin: Origin) async {
        guard let engine else { return }
        let metainfo = session.metainfo
        let path = config.dataPath(for: spec, torrentName: metainfo.name)
        var running = Running(session: session, spec: spec, origin: origin)
        if spec.upRate > 0 || spec.downRate > 0 { session.setCaps(up: spec.upRate, down: spec.downRate) }
        if let interval = policy.progressInterval {
            running.progress = ProgressReporter(session: session, loop: engine.loop, interval: interval, logger: logger)
            running.progress?.start()
        }
        torrents[metainfo.infoHash] = running
        engine.addCandidates(spec.peers.map(PeerAddress.init), for: metainfo.infoHash)
        await announcer?.add(session)
        let hash = metainfo.infoHash
        let sink = self.sink
        session.completed.whenComplete { result in
            switch result {
            case .success: sink.yield(.completed(hash))
            case .failure(let e): sink.yield(.failed(hash, "\(e)"))
            }
        }
        if spec.mode == .seed {
            logger.info("seeding", metadata: ["torrent": "\(metainfo.name)", "info-hash": "\(metainfo.infoHash.hex)",
                                              "path": "\(path)", "port": "\(engine.listenPort)"])
        } else {
            logger.info("fetching", metadata: ["torrent": "\(metainfo.name)", "info-hash": "\(metainfo.infoHash.hex)", "path": "\(path)"])
        }
    }

    /// Adds a torrent while running: a failure is logged, the node goes on.
    private func addLogging(_ spec: NodeConfiguration.Torrent, origin: Origin, context: String) async {
        do {
            try await add(spec, try NodeRuntime.loadTorrent(spec.torrent), origin: origin)
            await announceGossip()
        } catch {
            logger.error("\(context): cannot start \(spec.torrent): \(error)")
        }
    }

    private func remove(_ hash: InfoHash) async {
        guard let r = torrents.removeValue(forKey: hash) else { return }
        r.progress?.stop()
        await announcer?.remove(hash)
        await engine?.remove(hash)
        await announceGossip()
    }

    /// Tells gossip what this node serves, complete or not.
    private func announceGossip() async {
        guard let gossip, let engine, let status = await engine.snapshot() else { return }
        gossip.announce(torrents: status.torrents.compactMap { t in InfoHash(hex: t.infoHash).map { ($0, complete: t.isComplete) } },
                        peerPort: UInt16(status.port))
    }

    /// A .torrent dropped into the watch folder starts a fetch into the data folder.
    private func scanWatchDir() async {
        guard let dir = config.watchDir, engine != nil, FilePaths.isDirectory(dir) else { return }
        guard let listing = try? DirectoryWalker.regularFiles(in: dir, where: { $0.hasSuffix(".torrent") }) else { return }
        for p in listing.problems where !unreadable.contains(p) {
            unreadable.insert(p)
            logger.warning("watch folder: skipping \(p)")
        }
        for f in listing.files where !watched.contains(f.fullPath) {
            watched.insert(f.fullPath)
            await addLogging(NodeConfiguration.Torrent(torrent: f.fullPath, mode: .fetch), origin: .watchFolder, context: "watch folder")
        }
    }

    /// Adds or removes a torrent on an operator's request (admin endpoint, `starling ctl`).
    private func perform(_ action: AdminAction) async {
        switch action {
        case .add(let path, let dataPath, let seed):
            await addLogging(NodeConfiguration.Torrent(torrent: path, path: dataPath, mode: seed ? .seed : .fetch), origin: .admin, context: "admin")
        case .remove(let hash):
            guard let name = torrents[hash]?.session.metainfo.name else {
                logger.warning("admin: no torrent \(hash.hex) to remove")
                return
            }
            await remove(hash)
            logger.info("admin: removed torrent", metadata: ["torrent": "\(name)"])
        }
    }

    // MARK: reload

    /// Re-reads the configuration: new rate caps take hold at once, torrents added to the list
    /// start, torrents removed from it stop. Other changes need a restart.
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
        // Torrents from the watch folder or an admin action are not the file's to stop; one the
        // file now lists too becomes the file's (its caps follow the file from here on).
        let wanted = Dictionary(fresh.torrents.map { ($0.torrent, $0) }, uniquingKeysWith: { first, _ in first })
        for (hash, r) in torrents {
            if let spec = wanted[r.spec.torrent] {
                if (r.spec.upRate, r.spec.downRate) != (spec.upRate, spec.downRate) { r.session.setCaps(up: spec.upRate, down: spec.downRate) }
                torrents[hash]?.spec = spec
                torrents[hash]?.origin = .configuration
            } else if r.origin == .configuration {
                await remove(hash)
                logger.info("stopped torrent removed from the configuration", metadata: ["torrent": "\(r.session.metainfo.name)"])
            }
        }
        let running = Set(torrents.values.map(\.spec.torrent))
        config = fresh
        for spec in fresh.torrents where !running.contains(spec.torrent) {
            await addLogging(spec, origin: .configuration, context: "reload")
        }
        logger.info("configuration reloaded", metadata: ["torrents": "\(torrents.count)"])
    }
}
