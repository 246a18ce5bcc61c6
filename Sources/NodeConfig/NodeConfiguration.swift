import Values

/// A long-running node's settings, read from YAML (`starling node --config FILE`).
///
/// Every value is validated; paths are absolute (relative ones in the file are taken
/// relative to the file's folder); rates are bytes per second with 0 meaning unlimited.
/// See `config/README.md` for the schema.
public struct NodeConfiguration: Sendable, Hashable {
    /// What a node does; one process may do all three.
    public enum Role: String, Sendable, Hashable, CaseIterable {
        /// Runs a BitTorrent HTTP tracker (needs the `tracker` section).
        case tracker
        /// Seeds the torrents listed with `mode: seed`.
        case seeder
        /// Fetches the torrents listed with `mode: fetch` (and those dropped in `watch_dir`),
        /// then keeps serving them.
        case peer
    }

    /// Log level; the raw values are swift-log's `Logger.Level` raw values.
    public enum LogLevel: String, Sendable, Hashable, CaseIterable {
        case trace, debug, info, notice, warning, error
    }

    /// Log line format.
    public enum LogFormat: String, Sendable, Hashable, CaseIterable {
        case text, json
    }

    /// The built-in tracker (role `tracker`). A nil tuning value keeps the tracker's default.
    public struct Tracker: Sendable, Hashable {
        /// Where the tracker's HTTP server listens.
        public var listen: IPEndpoint
        /// Where swarms are saved and reloaded from; nil keeps them in memory only.
        public var stateFile: String?
        /// Announce interval handed to clients, seconds.
        public var interval: Int
        /// Serve only the info-hashes of the .torrent files in this folder; nil serves any.
        public var allowDir: String?
        /// Networks whose `ip=` announce parameter is believed.
        public var trustedCIDRs: [CIDR]
        /// `min interval` handed to clients, seconds.
        public var minInterval: Int?
        /// Seconds without an announce after which a peer is forgotten.
        public var peerTimeout: Int?
        /// Seconds between state saves.
        public var saveInterval: Int?
        /// Most peers handed out per announce.
        public var maxNumWant: Int?
        /// Most connections open at once.
        public var maxConnections: Int?
        /// Event-loop threads.
        public var threads: Int?
        /// With `sites`: peers of other sites handed to a peer in a site per announce.
        public var remotePeers: Int?

        public init(listen: IPEndpoint, stateFile: String? = nil, interval: Int = Defaults.trackerInterval,
                    allowDir: String? = nil, trustedCIDRs: [CIDR] = [], minInterval: Int? = nil, peerTimeout: Int? = nil,
                    saveInterval: Int? = nil, maxNumWant: Int? = nil, maxConnections: Int? = nil, threads: Int? = nil,
                    remotePeers: Int? = nil) {
            self.listen = listen
            self.stateFile = stateFile
            self.interval = interval
            self.allowDir = allowDir
            self.trustedCIDRs = trustedCIDRs
            self.minInterval = minInterval
            self.peerTimeout = peerTimeout
            self.saveInterval = saveInterval
            self.maxNumWant = maxNumWant
            self.maxConnections = maxConnections
            self.threads = threads
            self.remotePeers = remotePeers
        }
    }

    /// One torrent the node seeds or fetches.
    public struct Torrent: Sendable, Hashable {
        /// Seed data already on disk, or fetch it from the swarm.
        public enum Mode: String, Sendable, Hashable, CaseIterable {
            case seed, fetch
        }

        /// The .torrent file.
        public var torrent: String
        /// The data: the file (or folder) to seed, or where to fetch to. Nil means
        /// `dataDir/<the torrent's name>`: see `NodeConfiguration.dataPath(for:torrentName:)`.
        public var path: String?
        public var mode: Mode
        /// Per-torrent caps in bytes per second, under the host-wide caps; 0 = no own cap.
        public var upRate: Int64
        public var downRate: Int64
        /// Peers dialled at once, besides those trackers and gossip name (`peers`, `--peer`).
        public var peers: [IPEndpoint]
        /// Line of this entry in the config file, for messages that come later (e.g. a
        /// .torrent that fails to load).
        public var line: Int

        public init(torrent: String, path: String? = nil, mode: Mode, upRate: Int64 = 0,
                    downRate: Int64 = 0, peers: [IPEndpoint] = [], line: Int = 0) {
            self.torrent = torrent
            self.path = path
            self.mode = mode
            self.upRate = upRate
            self.downRate = downRate
            self.peers = peers
            self.line = line
        }
    }

    /// Host-wide caps in bytes per second, shared by every connection and torrent; 0 = unlimited.
    public struct Rates: Sendable, Hashable {
        public var up: Int64
        public var down: Int64
        /// `rates.max_change`: the slew limit on both directions (nil: caps only).
        public var maxChange: MaxChange?

        public init(up: Int64 = 0, down: Int64 = 0, maxChange: MaxChange? = nil) {
            self.up = up
            self.down = down
            self.maxChange = maxChange
        }
    }

    /// Connection limits (map onto `TorrentRules.maxPeers` / `uploadSlots`).
    public struct Limits: Sendable, Hashable {
        /// Most connections per torrent.
        public var maxPeers: Int
        /// Interested peers served at once.
        public var uploadSlots: Int

        public init(maxPeers: Int = Defaults.maxPeers, uploadSlots: Int = Defaults.uploadSlots) {
            self.maxPeers = maxPeers
            self.uploadSlots = uploadSlots
        }
    }

    /// UDP gossip between nodes (same meaning as the `--gossip-*` options).
    public struct Gossip: Sendable, Hashable {
        /// Only addresses inside this network are learned or contacted.
        public var subnet: CIDR
        /// UDP port of every member.
        public var port: UInt16
        /// File holding the shared HMAC key (its bytes, trailing whitespace trimmed); nil only
        /// when `insecure` is true.
        public var keyFile: String?
        /// First members to contact; a seed given without a port uses `port`.
        public var seeds: [IPEndpoint]
        /// Gossip without a key (unauthenticated).
        public var insecure: Bool
        /// Find the first members by IPv4 broadcast on the subnet.
        public var broadcast: Bool

        public init(subnet: CIDR, port: UInt16 = Defaults.gossipPort, keyFile: String? = nil, seeds: [IPEndpoint] = [],
                    insecure: Bool = false, broadcast: Bool = false) {
            self.subnet = subnet
            self.port = port
            self.keyFile = keyFile
            self.seeds = seeds
            self.insecure = insecure
            self.broadcast = broadcast
        }
    }

    /// The node's own HTTP endpoints.
    public struct HTTP: Sendable, Hashable {
        /// `/metrics`, `/healthz`, `/status`; nil: none.
        public var metricsListen: IPEndpoint?
        /// Admin actions (add or remove a torrent, change rate caps), and the metrics; nil: none.
        public var adminListen: IPEndpoint?
        /// File holding the admin bearer token; always required when `adminListen` is not loopback.
        public var adminTokenFile: String?

        public init(metricsListen: IPEndpoint? = nil, adminListen: IPEndpoint? = nil,
                    adminTokenFile: String? = nil) {
            self.metricsListen = metricsListen
            self.adminListen = adminListen
            self.adminTokenFile = adminTokenFile
        }
    }

    /// Absolute path of the file this was read from (empty for a configuration built in code).
    public var file: String
    /// Node name for logs and `/status`; defaults to the host name.
    public var name: String
    /// Folder where fetched data lands (unless a torrent gives its own `path`).
    public var dataDir: String
    /// Address to listen on, dial from and announce (so peers see it); an IP literal. Nil:
    /// listen on every address and announce the one that routes to the tracker (see
    /// `AnnounceAddress` in the runtime).
    public var ip: IPAddress?
    /// Peer-wire listen ports, first free one (or a random one of them).
    public var portRange: ClosedRange<Int>
    public var randomPort: Bool
    public var logLevel: LogLevel
    public var logFormat: LogFormat
    /// TCP congestion control of peer-wire connections; nil keeps the host's default.
    public var tcpCongestion: String?
    /// At least one role, each once, in the order given.
    public var roles: [Role]
    /// Present exactly when `roles` contains `.tracker`.
    public var tracker: Tracker?
    /// Extra announce URLs (http://) used for our torrents besides their own.
    public var trackers: [String]
    public var torrents: [Torrent]
    /// A `.torrent` dropped here starts a fetch into `dataDir`.
    public var watchDir: String?
    public var rates: Rates
    public var limits: Limits
    /// Peer-wire connections only from and to these networks (`peer.allow_cidrs`); empty: any.
    public var allowedPeers: [CIDR]
    /// Sites by address block (`sites`): the engine and the tracker tell peers of this
    /// node's site from the rest (docs/design/sites.md). Empty: no sites.
    public var sites: SiteMap
    /// Nil: no gossip.
    public var gossip: Gossip?
    /// Ignore the torrents' trackers (`gossip.no_tracker`, `--no-tracker`): peers come from
    /// gossip and `peers` only.
    public var noTracker: Bool
    public var http: HTTP
    /// Line of each setting in the file (by YAML key path), for errors found later.
    public var lines: [String: Int]

    public init(file: String = "", name: String, dataDir: String, ip: IPAddress?, portRange: ClosedRange<Int> = Defaults.portRange,
                randomPort: Bool = false,
                logLevel: LogLevel = .info, logFormat: LogFormat = .text, tcpCongestion: String? = nil, roles: [Role], tracker: Tracker? = nil,
                trackers: [String] = [], torrents: [Torrent] = [], watchDir: String? = nil, rates: Rates = Rates(),
                limits: Limits = Limits(), allowedPeers: [CIDR] = [], sites: SiteMap = SiteMap(), gossip: Gossip? = nil,
                noTracker: Bool = false, http: HTTP = HTTP(), lines: [String: Int] = [:]) {
        self.file = file
        self.name = name
        self.dataDir = dataDir
        self.ip = ip
        self.portRange = portRange
        self.randomPort = randomPort
        self.logLevel = logLevel
        self.logFormat = logFormat
        self.tcpCongestion = tcpCongestion
        self.roles = roles
        self.tracker = tracker
        self.trackers = trackers
        self.torrents = torrents
        self.watchDir = watchDir
        self.rates = rates
        self.limits = limits
        self.allowedPeers = allowedPeers
        self.sites = sites
        self.gossip = gossip
        self.noTracker = noTracker
        self.http = http
        self.lines = lines
    }

    /// Whether the node has `role`.
    public func has(_ role: Role) -> Bool { roles.contains(role) }

    /// Where a torrent's data lives: its `path`, or `dataDir/<torrentName>`.
    public func dataPath(for torrent: Torrent, torrentName: String) -> String {
        torrent.path ?? ConfigPath.join(dataDir, torrentName)
    }

    /// This host's name, the default `name`.
    public static var defaultName: String { hostName() }

    /// Largest configuration file accepted.
    public static let maxFileSize = 1 << 20
}
