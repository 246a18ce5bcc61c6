import BitTorrent
import Logging
import NIOCore
import NIOPosix
import Storage
#if canImport(Glibc)
import Glibc
#endif

/// What `starling seed` and `starling peer` share: start the engine on one torrent, find
/// peers, report progress, and end cleanly on completion or on a signal.
public struct SwarmOptions: Sendable {
    public var engine: EngineConfig
    /// Peers given on the command line (IP:PORT), dialled at once.
    public var staticPeers: [PeerAddress] = []
    /// Ignore the torrent's trackers (gossip or static peers only).
    public var noTracker = false
    /// For `peer`: seconds to keep serving after completion before exiting 0.
    public var seedAfter: Int = 0
    /// For `peer`: give up (exit 1) after this many seconds without completing; 0 = never.
    public var timeout: Int = 0
    /// Progress line interval when not on a terminal.
    public var progressInterval: Int = 5
    /// HTTP listeners for /metrics, /status and (admin ones) rate changes.
    public var http: [NodeHTTPServer.Listener] = []
    /// Peer discovery by UDP gossip within a subnet, besides (or instead of) trackers.
    public var gossip: GossipConfig?

    public init(engine: EngineConfig) { self.engine = engine }
}

public final class SwarmRunner: Sendable {
    public enum Role: Sendable { case seed, peer }

    let metainfo: Metainfo
    let path: String
    let role: Role
    let options: SwarmOptions
    let logger: Logger

    public init(metainfo: Metainfo, path: String, role: Role, options: SwarmOptions, logger: Logger) {
        self.metainfo = metainfo
        self.path = path
        self.role = role
        self.options = options
        self.logger = logger
    }

    enum Event: Sendable {
        case complete
        case failed(String)
        case signal(Int32)
        case seedTimeOver
        case timedOut
    }

    /// Starts gossip when configured: announces this torrent and feeds discovered peers to the engine.
    private func startGossip(engine: PeerEngine, session: TorrentSession, group: EventLoopGroup) async throws -> GossipService? {
        guard let config = options.gossip else { return nil }
        let service = GossipService(config: config, group: group, logger: logger)
        let complete = try await engine.loop.submit { session.isComplete }.get()
        service.announce(torrents: [(metainfo.infoHash, complete: complete)], peerPort: UInt16(engine.listenPort))
        do {
            try await service.start()
        } catch {
            throw CLIVisibleError("cannot start gossip on \(config.bindIP) port \(config.port): \(error)")
        }
        let infoHash = metainfo.infoHash
        Task {
            for await peer in service.discoveredPeers where peer.infoHash == infoHash {
                engine.addCandidates([PeerAddress(host: peer.host, port: Int(peer.port))], for: infoHash)
            }
        }
        logger.info("gossip on", metadata: ["subnet": "\(config.subnet)", "port": "\(config.port)"])
        return service
    }

    /// Runs until done; returns the process exit status.
    public func run() async throws -> Int32 {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let loop = group.next()
        let engine: PeerEngine
        let session: TorrentSession
        do {
            engine = try PeerEngine(config: options.engine, loop: loop, logger: logger)
            // Verify the data before listening, so nobody connects to a torrent not yet served.
            session = try await engine.add(metainfo: metainfo, path: path, mode: role == .seed ? .seed : .download)
            try await engine.start()
        } catch {
            try? await group.shutdownGracefully()
            throw error
        }
        if role == .seed {
            logger.info("seeding", metadata: ["torrent": "\(metainfo.name)", "info-hash": "\(metainfo.infoHash.hex)",
                                              "port": "\(engine.listenPort)"])
        }
        BuildInfo.register(version: EngineConfig.version)
        let httpServer = NodeHTTPServer(engine: engine, logger: logger)
        do {
            for l in options.http { try await httpServer.listen(l) }
        } catch {
            await httpServer.shutdown()
            await engine.shutdown()
            try? await group.shutdownGracefully()
            throw error
        }
        let (events, continuation) = AsyncStream<Event>.makeStream()
        let signals = Signals.on([SIGINT, SIGTERM]) { continuation.yield(.signal($0)) }
        defer { for s in signals { s.cancel() } }
        session.completed.whenComplete { result in
            switch result {
            case .success: continuation.yield(.complete)
            case .failure(let e): continuation.yield(.failed("\(e)"))
            }
        }
        if options.timeout > 0 {
            loop.scheduleTask(in: .seconds(Int64(options.timeout))) { continuation.yield(.timedOut) }
        }
        engine.addCandidates(options.staticPeers, for: metainfo.infoHash)
        let announcer = PeerSourceSet(engine: engine, session: session, noTracker: options.noTracker, group: group, logger: logger)
        announcer.start()
        let gossip = try await startGossip(engine: engine, session: session, group: group)
        let progress = ProgressReporter(session: session, loop: loop, interval: options.progressInterval, logger: logger)
        progress.start()

        var status: Int32 = 0
        eventLoop: for await event in events {
            switch event {
            case .complete:
                progress.finish()
                guard role == .peer else { continue }
                announcer.completed()
                gossip?.announce(torrents: [(metainfo.infoHash, complete: true)], peerPort: UInt16(engine.listenPort))
                let (took, fetched, wasted) = try await loop.submit {
                    (session.completionSeconds ?? 0,
                     session.downloadedBytes, session.wastedBytes)
                }.get()
                // `wasted`: blocks received twice (an endgame duplicate, or a cancel crossed them)
                // or in pieces that failed their check.
                logger.info("complete and verified", metadata: ["path": "\(path)", "seconds": "\(Units.format1(took))",
                                                                "downloaded": "\(fetched)", "wasted": "\(wasted)"])
                if options.seedAfter <= 0 { break eventLoop }
                logger.info("seeding for \(options.seedAfter) s before exiting")
                loop.scheduleTask(in: .seconds(Int64(options.seedAfter))) { continuation.yield(.seedTimeOver) }
            case .seedTimeOver:
                break eventLoop
            case .failed(let why):
                logger.error("\(why)")
                status = 1
                break eventLoop
            case .timedOut:
                if try await loop.submit({ session.isComplete }).get() { continue }
                logger.error("gave up after \(options.timeout) s without completing")
                status = 1
                break eventLoop
            case .signal(let s):
                logger.info("stopping on signal \(s)")
                if role == .peer, try await !loop.submit({ session.isComplete }).get() { status = 1 }
                break eventLoop
            }
        }
        await engine.limiter.taperBeforeExit(logger: logger)
        progress.stop()
        await httpServer.shutdown()
        await gossip?.stop()
        await announcer.stop()
        await engine.shutdown()
        try? await group.shutdownGracefully()
        return status
    }
}
