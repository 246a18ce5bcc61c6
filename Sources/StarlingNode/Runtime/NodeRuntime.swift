import BitTorrent
import Logging
import NIOCore
import NIOPosix
import NodeConfig
import ServiceLifecycle
import Storage
import Swarm
import Values

/// How a run ends. `starling node` and `seed` serve until SIGTERM or SIGINT; `peer` ends
/// once its download is verified (after serving others a while) or gives up.
public struct RunPolicy: Sendable {
    public enum Exit: Sendable, Equatable {
        /// Run until SIGTERM or SIGINT; exit 0.
        case onSignal
        /// Exit 0 once every fetched torrent is verified and `seedAfter` seconds have passed;
        /// exit 1 after `timeout` seconds without completing (0 = never), on a failed
        /// download, or on a signal before completion.
        case whenComplete(seedAfter: Int, timeout: Int)
    }

    public var exit: Exit
    /// Seconds between progress lines (a bar redrawn every second on a terminal); nil: none.
    public var progressInterval: Int?

    public init(exit: Exit, progressInterval: Int? = nil) {
        self.exit = exit
        self.progressInterval = progressInterval
    }

    /// `starling node`.
    public static let serve = RunPolicy(exit: .onSignal)
}

/// One Starling process: the services a `NodeConfiguration` asks for (peer engine, tracker,
/// gossip, tracker announcer, HTTP endpoints and the controller that drives them), run by one
/// `ServiceGroup` and shut down gracefully in reverse order. `starling node`, `seed`, `peer`
/// and `tracker` all run this; they differ only in the configuration and the policy.
public struct NodeRuntime: Sendable {
    /// How errors and logs name a setting: `starling node` by YAML key, `seed` and `peer` by flag.
    public typealias Naming = @Sendable (Setting) -> String

    let config: NodeConfiguration
    let policy: RunPolicy
    let naming: Naming
    let logger: Logger

    public init(configuration: NodeConfiguration, policy: RunPolicy, naming: @escaping Naming, logger: Logger) {
        config = configuration
        self.policy = policy
        self.naming = naming
        self.logger = logger
    }

    /// Runs until the policy says stop; returns the exit status. Throws `SettingError` when a
    /// setting cannot be used (and other errors for what went wrong before the start).
    public func run() async throws -> Int32 {
        BuildInfo.register(version: EngineConfig.version)
        let torrents = try config.torrents.map { spec in (spec, try Self.loadTorrent(spec.torrent)) }
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        do {
            let status = try await run(torrents: torrents, group: group)
            try? await group.shutdownGracefully()
            return status
        } catch {
            try? await group.shutdownGracefully()
            throw error
        }
    }

    private func run(torrents: [(NodeConfiguration.Torrent, Metainfo)], group: MultiThreadedEventLoopGroup) async throws -> Int32 {
        let (events, sink) = AsyncStream<NodeController.Event>.makeStream()

        var services: [any Service] = []
        var engine: PeerEngine?
        var gossip: GossipService?
        var announcer: TrackerAnnouncer?
        var statusSource: any NodeStatusSource = TrackerOnlyStatus(eventLoop: group.next())
        var opened: [(NodeConfiguration.Torrent, TorrentSession)] = []
        if let tracker = config.tracker, config.has(.tracker) {
            services.append(TrackerServer(configuration: tracker.serverConfiguration(sites: config.sites), logger: logger))
        }
        if config.has(.seeder) || config.has(.peer) {
            let address = try announceAddress(for: torrents.map(\.1))
            let e = try PeerEngine(config: engineConfig(ip: address.ip, listenIP: address.listenIP), loop: group.next(), logger: logger)
            // The torrents' data is verified before the engine listens, so no peer connects to
            // a torrent not yet served.
            do {
                for (spec, metainfo) in torrents { opened.append((spec, try await Self.open(spec, metainfo, in: e, config: config))) }
            } catch {
                await e.shutdown()
                throw error
            }
            engine = e
            statusSource = e
            services.insert(e, at: 0)
            if let g = config.gossip {
                let service = GossipService(config: try gossipConfig(g, ip: address.ip), group: group, logger: logger)
                gossip = service
                services.append(service)
            }
            if !config.noTracker {
                let a = TrackerAnnouncer(engine: e, extraTrackers: config.trackers, group: group, logger: logger)
                announcer = a
                services.append(a)
            }
        }
        let listeners = try httpListeners()
        if !listeners.isEmpty {
            services.append(NodeHTTPServer(source: statusSource, listeners: listeners, logger: logger,
                                           onAdminAction: { sink.yield(.admin($0)) }))
        }
        let controller = NodeController(config: config, policy: policy, torrents: opened, engine: engine,
                                        announcer: announcer, gossip: gossip, events: events, sink: sink, logger: logger)
        services.append(controller)

        // The controller ends the run (its policy, a signal); any service that fails ends it too.
        let configurations = services.map { service in
            ServiceGroupConfiguration.ServiceConfiguration(service: service, successTerminationBehavior: .gracefullyShutdownGroup,
                                                           failureTerminationBehavior: .gracefullyShutdownGroup)
        }
        var groupLogger = logger
        groupLogger.logLevel = max(logger.logLevel, .notice)
        let serviceGroup = ServiceGroup(configuration: ServiceGroupConfiguration(services: configurations, logger: groupLogger))
        try await serviceGroup.run()
        return await controller.exitStatus
    }

    /// Opens a torrent's data in the engine (verifying what is on disk).
    static func open(_ spec: NodeConfiguration.Torrent, _ metainfo: Metainfo, in engine: PeerEngine,
                     config: NodeConfiguration) async throws -> TorrentSession {
        do {
            return try await engine.add(metainfo: metainfo, path: config.dataPath(for: spec, torrentName: metainfo.name),
                                        mode: spec.mode == .seed ? .seed : .download)
        } catch let e as SettingError {
            throw e
        } catch {
            throw SettingError(nil, torrent: spec.torrent, "\(error)")
        }
    }

    static func loadTorrent(_ path: String) throws -> Metainfo {
        do {
            return try Metainfo.load(path: path)
        } catch {
            throw SettingError(nil, torrent: path, "\(error)")
        }
    }

    // MARK: the configuration, mapped once onto each part

    /// The address to announce (and dial from), and to listen on when that differs.
    func announceAddress(for torrents: [Metainfo]) throws -> (ip: IPAddress, listenIP: String?) {
        if let ip = config.ip { return (ip, nil) }
        var trackers = config.noTracker ? [] : torrents.flatMap(\.trackers) + config.trackers
        if let t = config.tracker, config.has(.tracker) { trackers.append("http://\(t.listen)/announce") }
        let peers = config.torrents.flatMap(\.peers).map(PeerAddress.init)
        guard let choice = AnnounceAddress.choose(trackers: trackers, peers: peers, within: config.gossip?.subnet,
                                                  interfaces: AnnounceAddress.interfaces(), route: AnnounceAddress.routeSource) else {
            let scope = config.gossip.map { " in \($0.subnet)" } ?? ""
            throw SettingError(.ip, "no address to announce: this host has no route to the tracker and no non-loopback address\(scope); give one")
        }
        let ip = choice.address
        logger.notice("no \(naming(.ip)): listening on all addresses, announcing \(ip)", metadata: ["because": "\(choice.reason)"])
        return (ip, ip.isIPv4 ? "0.0.0.0" : "::")
    }

    func engineConfig(ip: IPAddress, listenIP: String?) -> EngineConfig {
        var ec = EngineConfig(ip: ip.description)
        ec.listenIP = listenIP
        ec.portRange = config.portRange
        ec.randomPort = config.randomPort
        ec.upRate = config.rates.up
        ec.downRate = config.rates.down
        ec.maxChange = config.rates.maxChange
        ec.rules.maxPeers = config.limits.maxPeers
        ec.rules.uploadSlots = config.limits.uploadSlots
        ec.allowedPeers = config.allowedPeers
        ec.tcpCongestion = config.tcpCongestion
        ec.sites = config.sites
        if !ec.sites.isEmpty {
            if let name = ec.sites.site(of: ip) {
                logger.info("site map: this host is in site \(name)", metadata: ["sites": "\(ec.sites.sites.map(\.name))"])
            } else {
                logger.warning("site map: \(ip) is in no site's block; every peer counts as local")
            }
        }
        return ec
    }

    func gossipConfig(_ g: NodeConfiguration.Gossip, ip bindIP: IPAddress) throws -> GossipConfig {
        let key: GossipKey?
        do {
            key = try GossipKey.load(file: g.keyFile)
        } catch {
            throw SettingError(g.keyFile == nil ? .gossip : .gossipKeyFile, "\(error)")
        }
        let gc = GossipConfig(subnet: g.subnet, bindIP: bindIP, port: g.port, seeds: g.seeds, key: key,
                              insecure: g.insecure, broadcast: g.broadcast)
        do {
            try gc.validate()
        } catch {
            throw SettingError(.gossip, "\(error)")
        }
        return gc
    }

    func httpListeners() throws -> [NodeHTTPServer.Listener] {
        var listeners: [NodeHTTPServer.Listener] = []
        if let m = config.http.metricsListen { listeners.append(.init(m, admin: false)) }
        if let a = config.http.adminListen {
            var token: String?
            if let file = config.http.adminTokenFile {
                do {
                    token = try FilePaths.readTrimmedText(file)
                } catch {
                    throw SettingError(.adminTokenFile, "\(error)")
                }
            }
            listeners.append(.init(a, admin: true, token: token))
        }
        return listeners
    }
}

extension NodeConfiguration.Tracker {
    /// The tracker server's settings.
    func serverConfiguration(sites: SiteMap) -> TrackerConfiguration {
        var c = TrackerConfiguration(host: listen.host, port: Int(listen.port), interval: interval, minInterval: minInterval,
                                     peerTimeout: peerTimeout, allowDir: allowDir, stateFile: stateFile,
                                     trustedNetworks: trustedCIDRs, threads: threads, sites: sites)
        if let v = saveInterval { c.saveInterval = v }
        if let v = maxNumWant { c.maxNumWant = v }
        if let v = maxConnections { c.maxConnections = v }
        if let v = remotePeers { c.remotePeers = v }
        return c
    }
}
