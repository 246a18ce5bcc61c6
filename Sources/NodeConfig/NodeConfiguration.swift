import BitTorrent

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

    /// An IP literal and a port (`10.0.0.1:6969`, `[fd00::1]:6969`).
    public struct Endpoint: Sendable, Hashable, CustomStringConvertible {
        /// IP literal, without brackets.
        public var host: String
        public var port: Int

        public init(host: String, port: Int) {
            self.host = host
            self.port = port
        }

        /// `IP:PORT`, or `[IPv6]:PORT`.
        public var description: String {
            host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
        }
    }

    /// The built-in tracker (role `tracker`).
    public struct Tracker: Sendable, Hashable {
        /// Where the tracker's HTTP server listens.
        public var listen: Endpoint
        /// Where swarms are saved and reloaded from; nil keeps them in memory only.
        public var stateFile: String?
        /// Announce interval handed to clients, seconds.
        public var interval: Int
        /// Serve only the info-hashes of the .torrent files in this folder; nil serves any.
        public var allowDir: String?
        /// Networks whose `ip=` announce parameter is believed.
        public var trustedCIDRs: [CIDR]

        public init(listen: Endpoint, stateFile: String? = nil, interval: Int = 15,
                    allowDir: String? = nil, trustedCIDRs: [CIDR] = []) {
            self.listen = listen
            self.stateFile = stateFile
            self.interval = interval
            self.allowDir = allowDir
            self.trustedCIDRs = trustedCIDRs
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
        /// Line of this entry in the config file, for messages that come later (e.g. a
        /// .torrent that fails to load).
        public var line: Int

        public init(torrent: String, path: String? = nil, mode: Mode, upRate: Int64 = 0,
                    downRate: Int64 = 0, line: Int = 0) {
            self.torrent = torrent
            self.path = path
            self.mode = mode
            self.upRate = upRate
            self.downRate = downRate
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

        public init(maxPeers: Int = 50, uploadSlots: Int = 16) {
            self.maxPeers = maxPeers
            self.uploadSlots = uploadSlots
        }
    }

    /// UDP gossip between nodes (same meaning as the `--gossip-*` options).
    public struct Gossip: Sendable, Hashable {
        /// Only addresses inside this network are learned or contacted.
        public var subnet: CIDR
        /// UDP port of every member.
        public var port: Int
        /// File holding the shared HMAC key (its bytes, trailing whitespace trimmed); nil only
        /// when `insecure` is true.
        public var keyFile: String?
        /// First members to contact; a seed given without a port uses `port`.
        public var seeds: [Endpoint]
        /// Gossip without a key (unauthenticated).
        public var insecure: Bool
        /// Ignore the torrents' trackers: find peers by gossip only.
        public var noTracker: Bool

        public init(subnet: CIDR, port: Int = 6890, keyFile: String? = nil, seeds: [Endpoint] = [],
                    insecure: Bool = false, noTracker: Bool = false) {
            self.subnet = subnet
            self.port = port
            self.keyFile = keyFile
            self.seeds = seeds
            self.insecure = insecure
            self.noTracker = noTracker
        }
    }

    /// The node's own HTTP endpoints.
    public struct HTTP: Sendable, Hashable {
        /// `/metrics`, `/healthz`, `/status`.
        public var metricsListen: Endpoint
        /// Admin actions (add or remove a torrent, change rate caps).
        public var adminListen: Endpoint
        /// File holding the admin bearer token; always required when `adminListen` is not loopback.
        public var adminTokenFile: String?

        public init(metricsListen: Endpoint, adminListen: Endpoint = Endpoint(host: "127.0.0.1", port: 9461),
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
    /// Address to listen on and dial from (so peers see it); an IP literal.
    public var ip: String
    /// Peer-wire listen ports, first free one.
    public var portRange: ClosedRange<Int>
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
    public var http: HTTP

    public init(file: String = "", name: String, dataDir: String, ip: String, portRange: ClosedRange<Int> = 6881...6889,
                logLevel: LogLevel = .info, logFormat: LogFormat = .text, tcpCongestion: String? = nil, roles: [Role], tracker: Tracker? = nil,
                trackers: [String] = [], torrents: [Torrent] = [], watchDir: String? = nil, rates: Rates = Rates(),
                limits: Limits = Limits(), allowedPeers: [CIDR] = [], sites: SiteMap = SiteMap(), gossip: Gossip? = nil, http: HTTP) {
        self.file = file
        self.name = name
        self.dataDir = dataDir
        self.ip = ip
        self.portRange = portRange
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
        self.http = http
    }

    /// Whether the node has `role`.
    public func has(_ role: Role) -> Bool { roles.contains(role) }

    /// Where a torrent's data lives: its `path`, or `dataDir/<torrentName>`.
    public func dataPath(for torrent: Torrent, torrentName: String) -> String {
        torrent.path ?? ConfigPath.join(dataDir, torrentName)
    }

    /// Largest configuration file accepted.
    public static let maxFileSize = 1 << 20
}
