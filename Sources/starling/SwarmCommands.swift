import ArgumentParser
import BitTorrent
import Logging
import NodeConfig
import StarlingNode
import Storage

/// Options shared by `seed` and `peer`.
struct SwarmCLIOptions: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp("IP address to listen on and connect from; announced to the tracker.",
                                            discussion: "Without it: listen on all addresses and announce the address of the interface that routes to the tracker (or to the first --peer), else the first non-loopback IPv4 address (in --gossip-subnet when given); the log says which and why."))
    var ip: String?

    @Option(name: .long, help: "Listen port range LO-HI; the first free port is used (open just this range in firewalls).")
    var portRange: String = "6881-6889"

    @Flag(name: .long, help: "Take a random free port of the range instead of the first.")
    var randomPort = false

    @Option(name: .long, help: "Host-wide upload cap, e.g. 40mbit, 5MB, 512KiB (per second); 0 = unlimited.")
    var upRate: String = "0"

    @Option(name: .long, help: "Host-wide download cap, same units; 0 = unlimited.")
    var downRate: String = "0"

    @Option(name: .long, help: ArgumentHelp("Most the host's rate may change between two consecutive intervals, both directions: RATE/INTERVAL, e.g. 5mbit/60s.",
                                            discussion: "Transfers ramp up and down instead of stepping, so a monitor that alarms on the change of an interface's rate between samples (Zabbix's \"traffic changed by more than 5 Mbps\") stays quiet; set INTERVAL to the monitor's item interval. The ramp costs time: a host moving F bytes needs at least 2 * sqrt(F * INTERVAL / RATE) seconds. Before exiting the upload tapers, for at most the rate reached divided by RATE/INTERVAL."))
    var maxChange: String?

    @Option(name: .long, help: "A peer to connect to directly, IP:PORT (repeatable).")
    var peer: [String] = []

    @Flag(name: .long, help: "Ignore the torrent's trackers (find peers by gossip or --peer only).")
    var noTracker = false

    @Option(name: .long, help: "Gossip peer lists over UDP within this subnet (CIDR), e.g. 10.0.0.0/24.")
    var gossipSubnet: String?

    @Option(name: .long, help: "UDP port for gossip (default 6890).")
    var gossipPort: UInt16?

    @Option(name: .long, help: "File holding the shared gossip key (at least 16 bytes; a hex string works). Or set STARLING_GOSSIP_KEY.")
    var gossipKeyFile: String?

    @Option(name: .long, help: "A gossip member to contact first, IP[:PORT] (repeatable): the tracker host, the seeder.")
    var gossipSeed: [String] = []

    @Flag(name: .long, help: "Find the first gossip members by broadcast on the subnet (IPv4).")
    var gossipBroadcast = false

    @Flag(name: .long, help: "Gossip without a key (unauthenticated): only on a trusted, isolated network.")
    var gossipInsecure = false

    @Option(name: .long, help: "Most connections per torrent.")
    var maxPeers: Int = 50

    @Option(name: .long, help: ArgumentHelp("Accept peer connections from, and dial, only this network (CIDR, repeatable), e.g. 10.0.0.0/16; default: any address.",
                                            discussion: "Connections from elsewhere are closed before the handshake, so the artifact is served only to the fleet."))
    var allowPeers: [String] = []

    @Option(name: .long, help: "Interested peers uploaded to at once (a seed that started complete serves every interested peer: it hands out pieces to each in turn).")
    var uploadSlots: Int = 16

    @Option(name: .long, help: ArgumentHelp("TCP congestion control of peer connections, e.g. cubic; default: the host's (net.ipv4.tcp_congestion_control).",
                                            discussion: "Choices are in /proc/sys/net/ipv4/tcp_available_congestion_control; the start fails with that list when the kernel refuses the name. Use it to give rollout traffic its own algorithm, e.g. a scavenger one such as lp (if the kernel has it) so the push yields to production traffic."))
    var tcpCongestion: String?

    @Option(name: .long, help: "Serve /metrics, /healthz and /status on IP:PORT.")
    var metricsListen: String?

    @Option(name: .long, help: "Serve the admin endpoint (POST /rate, used by `starling ctl rate`) and the metrics on IP:PORT; off loopback it needs --admin-token-file.")
    var adminListen: String?

    @Option(name: .long, help: "File holding the bearer token admin requests must carry (`starling ctl --token-file`); required when --admin-listen is not a loopback address.")
    var adminTokenFile: String?

    @OptionGroup var siteOptions: SiteOptions

    @OptionGroup var log: LogOptions

    /// `trackers`: the torrent's, towards which the announced address is chosen when `--ip`
    /// is left out.
    func swarmOptions(trackers: [String], logger: Logger) throws -> SwarmOptions {
        let staticPeers = try peer.map { text in
            guard let a = PeerAddress(text) else { throw ValidationError("--peer \(text): expected IP:PORT") }
            return a
        }
        let ip: String
        var listenIP: String?
        if let given = self.ip {
            ip = given
        } else {
            var within: CIDR?
            if let subnet = gossipSubnet {
                guard let net = CIDR(subnet) else { throw ValidationError("--gossip-subnet \(subnet): expected a network in CIDR notation, e.g. 10.0.0.0/24") }
                within = net
            }
            guard let choice = AnnounceAddress.choose(trackers: noTracker ? [] : trackers, peers: staticPeers, within: within,
                                                      interfaces: AnnounceAddress.interfaces(), route: AnnounceAddress.routeSource) else {
                throw CLIError("no address to announce: this host has no route to the tracker and no non-loopback address\(within.map { " in \($0)" } ?? ""); pass --ip IP")
            }
            ip = choice.address.description
            listenIP = choice.address.isIPv4 ? "0.0.0.0" : "::"
            logger.notice("no --ip: listening on all addresses, announcing \(ip)", metadata: ["because": "\(choice.reason)"])
        }
        var engine = EngineConfig(ip: ip)
        engine.listenIP = listenIP
        engine.portRange = try parsePortRange(portRange)
        engine.randomPort = randomPort
        engine.upRate = try parseRate(upRate, option: "--up-rate")
        engine.downRate = try parseRate(downRate, option: "--down-rate")
        if let text = maxChange {
            guard let m = MaxChange(parsing: text) else {
                throw CLIError("--max-change \(text): expected \(MaxChange.expectedForm)")
            }
            engine.maxChange = m
        }
        guard maxPeers > 0 else { throw ValidationError("--max-peers must be at least 1") }
        guard uploadSlots > 0 else { throw ValidationError("--upload-slots must be at least 1") }
        engine.rules.maxPeers = maxPeers
        engine.allowedPeers = try allowPeers.map { text in
            guard let net = CIDR(text) else { throw ValidationError("--allow-peers \(text): expected a network in CIDR notation, e.g. 10.0.0.0/16") }
            return net
        }
        if !engine.allowedPeers.isEmpty, let own = IPAddress(ip), !own.isUnspecified, !engine.allows(host: ip) {
            throw ValidationError("--allow-peers does not contain --ip \(ip): this host could not talk to its own network")
        }
        engine.rules.uploadSlots = uploadSlots
        engine.sites = try siteOptions.map()
        if !engine.sites.isEmpty, let own = IPAddress(ip) {
            if let name = engine.sites.site(of: own) {
                logger.info("site map: this host is in site \(name)", metadata: ["sites": "\(engine.sites.sites.map(\.name))"])
            } else {
                logger.warning("site map: \(ip) is in no --site block; every peer counts as local")
            }
        }
        if let name = tcpCongestion {
            guard let valid = ValueParsing.congestionControl(name) else {
                throw ValidationError("--tcp-congestion \(name): expected an algorithm name such as cubic or bbr (letters, digits, _; at most 15)")
            }
            engine.tcpCongestion = valid
        }
        var options = SwarmOptions(engine: engine)
        options.noTracker = noTracker
        if let subnet = gossipSubnet {
            do {
                options.gossip = try GossipConfig.fromOptions(ip: ip, subnet: subnet, port: gossipPort, keyFile: gossipKeyFile,
                                                              seeds: gossipSeed, insecure: gossipInsecure, broadcast: gossipBroadcast)
            } catch {
                throw ValidationError("gossip: \(error)")
            }
        } else if gossipPort != nil || gossipKeyFile != nil || !gossipSeed.isEmpty || gossipInsecure || gossipBroadcast {
            throw ValidationError("gossip options need --gossip-subnet CIDR")
        }
        for (flag, value, admin) in [("--metrics-listen", metricsListen, false), ("--admin-listen", adminListen, true)] {
            guard let value else { continue }
            guard let a = PeerAddress(value) else { throw ValidationError("\(flag) \(value): expected IP:PORT") }
            var token: String?
            if admin, let file = adminTokenFile {
                do { token = try FilePaths.readTrimmedText(file) } catch { throw CLIError("--admin-token-file: \(error)") }
            } else if admin, ValueParsing.adminNeedsToken(listenHost: a.host) {
                throw CLIError("--admin-listen \(value) is not a loopback address, so admin actions need a token: pass --admin-token-file FILE, or listen on 127.0.0.1")
            }
            options.http.append(NodeHTTPServer.Listener(host: a.host, port: a.port, admin: admin, token: token))
        }
        if adminTokenFile != nil, adminListen == nil { throw ValidationError("--admin-token-file needs --admin-listen IP:PORT") }
        options.staticPeers = staticPeers
        return options
    }

    func makeLogger(_ label: String) -> Logger {
        var logger = Logger(label: label)
        logger.logLevel = log.level
        return logger
    }
}

func parsePortRange(_ text: String) throws -> ClosedRange<Int> {
    let parts = text.split(separator: "-")
    let bounds = parts.compactMap { Int($0) }
    guard (1...2).contains(parts.count), bounds.count == parts.count,
          let lo = bounds.first, let hi = bounds.last, lo >= 1, hi <= 65535, lo <= hi else {
        throw ValidationError("--port-range \(text): expected LO-HI within 1-65535, e.g. 6881-6889")
    }
    return lo...hi
}

func parseRate(_ text: String, option: String) throws -> Int64 {
    guard let r = Units.parseRate(text) else {
        throw ValidationError("\(option) \(text): expected a rate such as 40mbit, 5MB, 512KiB or 0 for unlimited")
    }
    return r
}

struct SeedCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "seed",
        abstract: "Serve a complete file (or folder) to the swarm until stopped.",
        discussion: """
        The data is checked against the torrent's piece hashes first; the seeder then announces \
        to the torrent's trackers and uploads to every peer that asks, within --up-rate.

        Example:
          starling seed app.torrent /srv/app.rpm --ip 10.0.0.1 \\
              --port-range 6881-6889 --up-rate 40mbit

        Without --ip the seeder listens on all addresses and announces the one that routes \
        to the tracker.
        """
    )

    @Argument(help: "The .torrent file.") var torrent: String
    @Argument(help: "The complete file (or folder, for a multi-file torrent).") var path: String
    @OptionGroup var swarm: SwarmCLIOptions

    func run() async throws {
        let metainfo = try loadTorrent(torrent)
        let logger = swarm.makeLogger("starling.seed")
        let options = try swarm.swarmOptions(trackers: metainfo.trackers, logger: logger)
        let runner = SwarmRunner(metainfo: metainfo, path: path, role: .seed, options: options, logger: logger)
        let status = try await runCatching { try await runner.run() }
        if status != 0 { throw ExitCode(status) }
    }
}

struct PeerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "peer",
        abstract: "Fetch a torrent into OUT, verifying every piece, while serving other peers.",
        discussion: """
        Data lands in OUT.part and is renamed to OUT once every piece has been verified; an \
        interrupted run resumes from the verified pieces. Exits 0 when OUT is complete (after \
        serving others for --seed-after seconds), non-zero with one clear line otherwise.

        Example:
          starling peer app.torrent /srv/app.rpm --ip 10.0.0.7 \\
              --seed-after 60 --down-rate 100mbit
        """
    )

    @Argument(help: "The .torrent file.") var torrent: String
    @Argument(help: "Where the file (or folder) goes.") var out: String
    @Option(name: .long, help: "Seconds to keep serving others after completing, before exiting.")
    var seedAfter: Int = 0
    @Option(name: .long, help: "Give up after this many seconds without completing; 0 = never.")
    var timeout: Int = 0
    @OptionGroup var swarm: SwarmCLIOptions

    func run() async throws {
        guard seedAfter >= 0 else { throw ValidationError("--seed-after must be 0 or more") }
        guard timeout >= 0 else { throw ValidationError("--timeout must be 0 or more") }
        let metainfo = try loadTorrent(torrent)
        let logger = swarm.makeLogger("starling.peer")
        var options = try swarm.swarmOptions(trackers: metainfo.trackers, logger: logger)
        options.seedAfter = seedAfter
        options.timeout = timeout
        let runner = SwarmRunner(metainfo: metainfo, path: out, role: .peer, options: options, logger: logger)
        let status = try await runCatching { try await runner.run() }
        if status != 0 { throw ExitCode(status) }
    }
}

/// Turns engine and storage errors into one-line CLI errors.
func runCatching(_ body: () async throws -> Int32) async throws -> Int32 {
    do {
        return try await body()
    } catch let e as CLIVisibleError {
        throw CLIError(e.description)
    } catch let e as ExitCode {
        throw e
    } catch {
        throw CLIError("\(error)")
    }
}
