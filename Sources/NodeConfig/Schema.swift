import Values
import Yams

/// The schema: which keys each section allows, their types, defaults and cross-checks.
/// `config/README.md` documents the same; keep both in step.
enum Schema {
    static let top = ["node", "roles", "tracker", "trackers", "torrents", "watch_dir", "rates", "limits", "peer", "sites", "gossip", "http"]
    static let node = ["name", "data_dir", "ip", "port_range", "random_port", "log_level", "log_format", "tcp_congestion"]
    static let tracker = ["listen", "state_file", "interval", "allow_dir", "trusted_cidrs", "min_interval", "peer_timeout",
                          "save_interval", "max_numwant", "max_connections", "threads", "remote_peers"]
    static let torrent = ["torrent", "path", "mode", "up_rate", "down_rate", "peers"]
    static let rates = ["up", "down", "max_change"]
    static let limits = ["max_peers", "upload_slots"]
    static let peer = ["allow_cidrs"]
    static let gossip = ["subnet", "port", "key_file", "seeds", "insecure", "broadcast", "no_tracker"]
    static let http = ["metrics_listen", "admin_listen", "admin_token_file"]
}

extension ConfigReader {
    typealias Config = NodeConfiguration

    /// The configuration, or nil when a required part is missing (errors say why). The
    /// caller must also check `errors`: a non-nil result may still carry problems.
    func read(_ root: Node?, absoluteFile: String) -> NodeConfiguration? {
        guard let root, !Self.isNull(root) else {
            report(line: 1, "the file holds no settings; expected at least 'node' and 'roles' (see config/README.md)")
            return nil
        }
        guard let top = section(root, name: "", line: root.mark?.line ?? 1, allowed: Schema.top) else { return nil }

        // node
        var name = Config.hostName()
        var dataDir: String?
        var ip: IPAddress?
        var portRange = Defaults.portRange
        var randomPort = false
        var logLevel = Config.LogLevel.info
        var logFormat = Config.LogFormat.text
        var tcpCongestion: String?
        var portRangeLine = top.line(of: "node")
        if let node = subsection(top, "node", allowed: Schema.node) {
            if let n = text(node, "name", expected: "a node name") {
                if n.isEmpty || n.count > 64 || !n.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || "._-".contains($0)) }) {
                    report(line: node.line(of: "name"), "node.name: '\(n.prefix(64))' is not a usable name; expected 1 to 64 letters, digits, '.', '_' or '-'")
                } else {
                    name = n
                }
            }
            dataDir = path(node, "data_dir", required: true)
            if let t = text(node, "ip", expected: "an IP address such as 10.0.0.7") {
                if let a = IPAddress(t) {
                    ip = a
                } else {
                    report(line: node.line(of: "ip"), "node.ip: '\(t.prefix(60))' is not an IP address; expected a literal such as 10.0.0.7 or fd00::7")
                }
            }
            portRangeLine = node.line(of: "port_range")
            if let t = text(node, "port_range", expected: "a port range \(PortRange.expectedForm)") {
                if let r = PortRange.parse(t) {
                    portRange = r
                } else {
                    report(line: node.line(of: "port_range"), "node.port_range: '\(t.prefix(40))' is not a port range; expected \(PortRange.expectedForm)")
                }
            }
            randomPort = bool(node, "random_port", default: false)
            logLevel = choice(node, "log_level", Config.LogLevel.self) ?? logLevel
            logFormat = choice(node, "log_format", Config.LogFormat.self) ?? logFormat
            if let t = text(node, "tcp_congestion", expected: "a congestion control algorithm such as cubic") {
                if let n = ValueParsing.congestionControl(t) {
                    tcpCongestion = n
                } else {
                    report(line: node.line(of: "tcp_congestion"), "node.tcp_congestion: '\(t.prefix(40))' is not an algorithm name; expected e.g. cubic or bbr (letters, digits, '_'; at most 15)")
                }
            }
        } else if top.value("node") == nil {
            missing(top, "node", "a mapping with at least data_dir")
        }

        // roles
        var roles: [Config.Role] = []
        var rolesLine = top.line
        if let node = top.value("roles") {
            rolesLine = top.line(of: "roles")
            if let items = list(node, "roles", of: "strings (tracker, seeder, peer)") {
                for item in items {
                    guard let role = choice(item, "roles", Config.Role.self) else { continue }
                    if roles.contains(role) {
                        report(item, "roles: '\(role.rawValue)' is listed twice")
                    } else {
                        roles.append(role)
                    }
                }
                if items.isEmpty {
                    report(node, "roles: at least one role is required (tracker, seeder, peer)")
                }
            }
        } else {
            missing(top, "roles", "a list of tracker, seeder, peer")
        }

        // tracker
        var tracker: Config.Tracker?
        let trackerLine = top.line(of: "tracker")
        var trackerListenLine = trackerLine
        if let t = subsection(top, "tracker", allowed: Schema.tracker) {
            trackerListenLine = t.line(of: "listen")
            let listen = endpoint(t, "listen", required: true)
            let stateFile = path(t, "state_file")
            let interval = int(t, "interval", range: 1...86_400, default: Defaults.trackerInterval)
            let allowDir = path(t, "allow_dir")
            let cidrs = networks(t, "trusted_cidrs")
            func tuning(_ key: String, _ range: ClosedRange<Int>) -> Int? {
                t.value(key) == nil ? nil : int(t, key, range: range, default: range.lowerBound)
            }
            if let listen {
                tracker = Config.Tracker(listen: listen, stateFile: stateFile, interval: interval, allowDir: allowDir, trustedCIDRs: cidrs,
                                         minInterval: tuning("min_interval", 0...interval),
                                         peerTimeout: tuning("peer_timeout", interval...86_400 * 7),
                                         saveInterval: tuning("save_interval", 1...86_400), maxNumWant: tuning("max_numwant", 1...10_000),
                                         maxConnections: tuning("max_connections", 1...1_000_000), threads: tuning("threads", 1...256),
                                         remotePeers: tuning("remote_peers", 0...10_000))
            }
        }
        let trackerGiven = top.value("tracker") != nil
        if roles.contains(.tracker), !trackerGiven {
            report(line: rolesLine, "role 'tracker' needs a 'tracker' section (at least tracker.listen: IP:PORT)")
        }
        if trackerGiven, !roles.isEmpty, !roles.contains(.tracker) {
            report(line: trackerLine, "a 'tracker' section is given but roles does not include 'tracker'; add the role or remove the section")
        }

        // trackers (announce URLs)
        var announce: [String] = []
        for (url, node) in stringList(top, "trackers", of: "http:// announce URLs") {
            if ValueParsing.isHTTPURL(url) {
                if announce.contains(url) {
                    report(node, "trackers: '\(url)' is listed twice")
                } else {
                    announce.append(url)
                }
            } else {
                report(node, "trackers: \(Self.describe(node)) is not an http:// announce URL; expected e.g. http://10.0.0.1:6969/announce")
            }
        }

        // torrents
        var torrents: [Config.Torrent] = []
        var torrentNodes: [Node] = []
        if let node = top.value("torrents"), let items = list(node, "torrents", of: "torrent entries (mappings)") {
            if items.count > Self.maxTorrents {
                report(node, "torrents: more than \(Self.maxTorrents) entries")
            } else {
                for (i, item) in items.enumerated() {
                    if errors.count >= Self.maxErrors { break }
                    let itemLine = item.mark?.line ?? top.line(of: "torrents")
                    guard let s = section(item, name: "torrents[\(i)]", line: itemLine, allowed: Schema.torrent) else { continue }
                    let torrentPath = path(s, "torrent", required: true)
                    let dataPath = path(s, "path")
                    let mode = choice(s, "mode", Config.Torrent.Mode.self, required: true)
                    let up = rate(s, "up_rate")
                    let down = rate(s, "down_rate")
                    var peers: [IPEndpoint] = []
                    if let node = s.value("peers"), let items = list(node, s.path("peers"), of: "addresses (IP:PORT)") {
                        peers = items.prefix(Self.maxListItems).compactMap { endpoint($0, s.path("peers")) }
                    }
                    if let torrentPath, let mode {
                        torrents.append(Config.Torrent(torrent: torrentPath, path: dataPath, mode: mode,
                                                       upRate: up, downRate: down, peers: peers, line: itemLine))
                        torrentNodes.append(item)
                    }
                }
            }
        }
        let watchDir = path(top, "watch_dir")

        // rates, limits
        var rates = Config.Rates()
        if let s = subsection(top, "rates", allowed: Schema.rates) {
            rates = Config.Rates(up: rate(s, "up"), down: rate(s, "down"), maxChange: maxChange(s, "max_change"))
        }
        var limits = Config.Limits()
        if let s = subsection(top, "limits", allowed: Schema.limits) {
            limits = Config.Limits(maxPeers: int(s, "max_peers", range: 1...10_000, default: Defaults.maxPeers),
                                   uploadSlots: int(s, "upload_slots", range: 1...10_000, default: Defaults.uploadSlots))
        }

        var allowedPeers: [CIDR] = []
        if let s = subsection(top, "peer", allowed: Schema.peer) {
            allowedPeers = networks(s, "allow_cidrs")
            if let ip, !ip.isUnspecified, !allowedPeers.isEmpty, !allowedPeers.contains(where: { $0.contains(ip) }) {
                report(line: s.line(of: "allow_cidrs"), "peer.allow_cidrs does not contain node.ip \(ip): this node could not talk to its own network")
            }
        }

        let sites = siteMap(top)

        // gossip
        var gossip: Config.Gossip?
        var noTracker = false
        if let s = subsection(top, "gossip", allowed: Schema.gossip) {
            var subnet: CIDR?
            if let node = s.value("subnet") {
                subnet = network(node, s.path("subnet"))
            } else {
                missing(s, "subnet", "a CIDR network, e.g. 10.0.0.0/24")
            }
            let port = UInt16(int(s, "port", range: 1...65_535, default: Int(Defaults.gossipPort)))
            let keyFile = path(s, "key_file")
            let insecure = bool(s, "insecure", default: false)
            let broadcast = bool(s, "broadcast", default: false)
            noTracker = bool(s, "no_tracker", default: false)
            var seeds: [IPEndpoint] = []
            if let node = s.value("seeds"), let items = list(node, s.path("seeds"), of: "addresses (IP or IP:PORT)") {
                for item in items.prefix(Self.maxListItems) {
                    guard let e = endpoint(item, s.path("seeds"), defaultPort: port) else { continue }
                    if let subnet, !subnet.contains(e.ip) {
                        report(item, "gossip.seeds: \(e.host) is outside gossip.subnet \(subnet); gossip never contacts addresses outside it")
                        continue
                    }
                    seeds.append(e)
                }
            }
            if keyFile == nil, !insecure, s.value("key_file") == nil {
                report(line: s.line, "gossip needs key_file (a shared key of at least 16 bytes) or, on a trusted network, insecure: true")
            }
            if keyFile != nil, insecure {
                report(line: s.line(of: "insecure"), "gossip.insecure: true contradicts gossip.key_file; give one or the other")
            }
            if let subnet, let ip, !ip.isUnspecified, !subnet.contains(ip) {
                report(line: s.line(of: "subnet"), "gossip.subnet \(subnet) does not contain node.ip \(ip); members outside the subnet are ignored")
            }
            if let subnet {
                gossip = Config.Gossip(subnet: subnet, port: port, keyFile: keyFile, seeds: seeds,
                                       insecure: insecure, broadcast: broadcast)
            }
        }

        // http
        var metricsListen = IPEndpoint(ip: ip ?? .unspecifiedIPv4, port: Defaults.metricsPort)
        var adminListen = Defaults.adminListen
        var adminTokenFile: String?
        var httpSection: Section?
        if let s = subsection(top, "http", allowed: Schema.http) {
            httpSection = s
            metricsListen = endpoint(s, "metrics_listen") ?? metricsListen
            adminListen = endpoint(s, "admin_listen") ?? adminListen
            adminTokenFile = path(s, "admin_token_file")
            if ValueParsing.adminNeedsToken(listenHost: adminListen.host), adminTokenFile == nil, s.value("admin_token_file") == nil {
                report(line: s.line(of: "admin_listen"), "http.admin_listen \(adminListen) is not a loopback address, so http.admin_token_file is required (admin actions need a token off-host)")
            }
        }

        // Cross-checks
        let torrentsLine = top.line(of: "torrents")
        let torrentsGiven = top.value("torrents").map { list(ofNode: $0).map { !$0.isEmpty } ?? true } ?? false
        if roles.contains(.seeder) || roles.contains(.peer), !torrentsGiven, top.value("watch_dir") == nil {
            let which = roles.filter { $0 != .tracker }.map { "'\($0.rawValue)'" }
            let subject = which.count == 1 ? "role \(which[0]) needs" : "roles \(which.joined(separator: " and ")) need"
            report(line: top.values["torrents"] != nil ? torrentsLine : rolesLine,
                   "\(subject) at least one entry in 'torrents' or a 'watch_dir'")
        }
        for (torrent, node) in zip(torrents, torrentNodes) {
            switch torrent.mode {
            case .seed where !roles.contains(.seeder) && !roles.isEmpty:
                report(node, "torrent \(torrent.torrent) has mode seed but roles does not include 'seeder'")
            case .fetch where !roles.contains(.peer) && !roles.isEmpty:
                report(node, "torrent \(torrent.torrent) has mode fetch but roles does not include 'peer'")
            default: break
            }
            if rates.up > 0, torrent.upRate > rates.up {
                report(node, "torrent \(torrent.torrent): up_rate \(Units.formatRate(Double(torrent.upRate))) is above the host-wide rates.up \(Units.formatRate(Double(rates.up))); a per-torrent cap can only be lower")
            }
            if rates.down > 0, torrent.downRate > rates.down {
                report(node, "torrent \(torrent.torrent): down_rate \(Units.formatRate(Double(torrent.downRate))) is above the host-wide rates.down \(Units.formatRate(Double(rates.down))); a per-torrent cap can only be lower")
            }
        }
        if watchDir != nil, !roles.isEmpty, !roles.contains(.peer) {
            report(line: top.line(of: "watch_dir"), "watch_dir starts fetches, so roles must include 'peer'")
        }
        var seenTorrent: [String: Int] = [:]
        var seenData: [String: Int] = [:]
        for torrent in torrents {
            if let first = seenTorrent[torrent.torrent] {
                report(line: torrent.line, "duplicate torrent \(torrent.torrent) (first listed at line \(first))")
            } else {
                seenTorrent[torrent.torrent] = torrent.line
            }
            if let p = torrent.path {
                if let first = seenData[p] {
                    report(line: torrent.line, "data path \(p) is used by two torrents (the other at line \(first))")
                } else {
                    seenData[p] = torrent.line
                }
            }
        }
        // TCP listeners must not collide with each other or with the peer-wire port range.
        var listeners: [(what: String, endpoint: IPEndpoint, line: Int)] = []
        if let tracker { listeners.append(("tracker.listen", tracker.listen, trackerListenLine)) }
        listeners.append(("http.metrics_listen", metricsListen, httpSection?.line(of: "metrics_listen") ?? portRangeLine))
        listeners.append(("http.admin_listen", adminListen, httpSection?.line(of: "admin_listen") ?? portRangeLine))
        func overlaps(_ a: IPAddress, _ b: IPAddress) -> Bool {
            a == b || a.isUnspecified || b.isUnspecified
        }
        for (i, a) in listeners.enumerated() {
            for b in listeners[..<i] where a.endpoint.port == b.endpoint.port && overlaps(a.endpoint.ip, b.endpoint.ip) {
                report(line: max(a.line, b.line), "\(a.what) \(a.endpoint) and \(b.what) \(b.endpoint) use the same port")
            }
            if let ip, portRange.contains(Int(a.endpoint.port)), overlaps(a.endpoint.ip, ip) {
                report(line: a.line, "\(a.what) \(a.endpoint) is inside node.port_range \(portRange.lowerBound)-\(portRange.upperBound), which the peer wire listens on")
            }
        }

        guard let dataDir, !roles.isEmpty else { return nil }
        if roles.contains(.tracker), tracker == nil { return nil }
        return NodeConfiguration(
            file: absoluteFile, name: name, dataDir: dataDir, ip: ip, portRange: portRange, randomPort: randomPort,
            logLevel: logLevel, logFormat: logFormat, tcpCongestion: tcpCongestion, roles: roles, tracker: tracker,
            trackers: announce, torrents: torrents, watchDir: watchDir, rates: rates, limits: limits,
            allowedPeers: allowedPeers, sites: sites, gossip: gossip, noTracker: noTracker,
            http: Config.HTTP(metricsListen: metricsListen, adminListen: adminListen, adminTokenFile: adminTokenFile),
            lines: keyLines)
    }

    /// `sites`: a mapping of site name to its CIDR networks, as `--site NAME=CIDR,...` gives it.
    private func siteMap(_ top: Section) -> SiteMap {
        var map = SiteMap()
        guard let node = top.value("sites") else { return map }
        guard case .mapping(let mapping) = node else {
            report(node, "sites: expected a mapping of site name to its networks, e.g. 'rack1: [10.1.0.0/16]', found \(Self.describe(node))")
            return map
        }
        for (keyNode, value) in mapping.prefix(Self.maxListItems) {
            guard case .scalar(let k) = keyNode else {
                report(keyNode, "sites: expected a site name, found \(Self.describe(keyNode))")
                continue
            }
            let path = "sites.\(k.string.prefix(64))"
            guard let items = list(value, path, of: "CIDR networks") else { continue }
            let blocks = items.prefix(Self.maxListItems).compactMap { network($0, path) }
            guard blocks.count == items.count else { continue }
            guard !blocks.isEmpty else {
                report(value, "\(path): no networks given; expected e.g. [10.1.0.0/16]")
                continue
            }
            do {
                try map.add(SiteMap.Site(name: k.string, blocks: blocks))
            } catch {
                report(line: keyNode.mark?.line ?? top.line(of: "sites"), "\(path): \(error)")
            }
        }
        return map
    }

    /// A list of CIDR networks under `key` of `section` (absent: none).
    private func networks(_ section: Section, _ key: String) -> [CIDR] {
        guard let node = section.value(key), let items = list(node, section.path(key), of: "CIDR networks") else { return [] }
        return items.prefix(Self.maxListItems).compactMap { network($0, section.path(key)) }
    }

    private func list(ofNode node: Node) -> [Node]? {
        if case .sequence(let s) = node { return Array(s) }
        return nil
    }
}
