import ArgumentParser
import BitTorrent
import Logging
import NodeConfig
import StarlingNode
import Storage
import Values

/// Options shared by `seed` and `peer`.
struct SwarmCLIOptions: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp("IP address to listen on and connect from; announced to the tracker.",
                                            discussion: "Without it: listen on all addresses and announce the address of the interface that routes to the tracker (or to the first --peer), else the first non-loopback IPv4 address (in --gossip-subnet when given); the log says which and why."))
    var ip: String?

    @Option(name: .long, help: "Listen port range LO-HI; the first free port is used (open just this range in firewalls).")
    var portRange: String = PortRange.format(Defaults.portRange)

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

    @Option(name: .long, help: "UDP port for gossip (default \(Defaults.gossipPort)).")
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
    var maxPeers: Int = Defaults.maxPeers

    @Option(name: .long, help: ArgumentHelp("Accept peer connections from, and dial, only this network (CIDR, repeatable), e.g. 10.0.0.0/16; default: any address.",
                                            discussion: "Connections from elsewhere are closed before the handshake, so the artifact is served only to the fleet."))
    var allowPeers: [String] = []

    @Option(name: .long, help: "Interested peers uploaded to at once (a seed that started complete serves every interested peer: it hands out pieces to each in turn).")
    var uploadSlots: Int = Defaults.uploadSlots

    @Option(name: .long, help: ArgumentHelp("TCP congestion control of peer connections (default: \(Defaults.tcpCongestion), or the host's where the kernel refuses it).",
                                            discussion: "Choices are in /proc/sys/net/ipv4/tcp_available_congestion_control; the start fails with that list when the kernel refuses the name. The default is cubic because BBR paces a connection opened while its host's uplink was queued at a fraction of the others' share (docs/benchmarks.md). Name another to give rollout traffic its own algorithm, e.g. a scavenger one such as lp (if the kernel has it) so the push yields to production traffic."))
    var tcpCongestion: String?

    @Option(name: .long, help: "Serve /metrics, /healthz and /status on IP:PORT.")
    var metricsListen: String?

    @Option(name: .long, help: "Serve the admin endpoint (POST /rate, used by `starling ctl rate`) and the metrics on IP:PORT; off loopback it needs --admin-token-file.")
    var adminListen: String?

    @Option(name: .long, help: "File holding the bearer token admin requests must carry (`starling ctl --token-file`); required when --admin-listen is not a loopback address.")
    var adminTokenFile: String?

    @OptionGroup var siteOptions: SiteOptions

    @OptionGroup var log: LogOptions

    /// The one-torrent node configuration these options describe.
    func configuration(torrent: String, path: String, mode: NodeConfiguration.Torrent.Mode) throws -> NodeConfiguration {
        let ip = try self.ip.map { text in
            guard let a = IPAddress(text) else { throw CLIError("--ip \(text): expected an IP address such as 10.0.0.7") }
            return a
        }
        guard let ports = PortRange.parse(portRange) else { throw ValidationError("--port-range \(portRange): expected \(PortRange.expectedForm)") }
        let peers = try peer.map { text in
            guard let e = IPEndpoint(parsing: text) else { throw ValidationError("--peer \(text): expected \(IPEndpoint.expectedForm)") }
            return e
        }
        var rates = NodeConfiguration.Rates(up: try parseRate(upRate, option: "--up-rate"), down: try parseRate(downRate, option: "--down-rate"))
        if let text = maxChange {
            guard let m = MaxChange(parsing: text) else { throw CLIError("--max-change \(text): expected \(MaxChange.expectedForm)") }
            rates.maxChange = m
        }
        guard maxPeers > 0 else { throw ValidationError("--max-peers must be at least 1") }
        guard uploadSlots > 0 else { throw ValidationError("--upload-slots must be at least 1") }
        let allowed = try allowPeers.map { try parseCIDR($0, option: "--allow-peers") }
        if !allowed.isEmpty, let ip, !ip.isUnspecified, !allowed.contains(where: { $0.contains(ip) }) {
            throw ValidationError("--allow-peers does not contain --ip \(ip): this host could not talk to its own network")
        }
        if let name = tcpCongestion, ValueParsing.congestionControl(name) == nil {
            throw ValidationError("--tcp-congestion \(name): expected an algorithm name such as cubic or bbr (letters, digits, _; at most 15)")
        }
        var gossip: NodeConfiguration.Gossip?
        if let subnet = gossipSubnet {
            let net = try parseCIDR(subnet, option: "--gossip-subnet")
            let port = gossipPort ?? Defaults.gossipPort
            let seeds = try gossipSeed.map { text in
                guard let e = IPEndpoint(parsing: text, defaultPort: port) else { throw ValidationError("--gossip-seed \(text): expected IP[:PORT]") }
                return e
            }
            gossip = NodeConfiguration.Gossip(subnet: net, port: port, keyFile: gossipKeyFile, seeds: seeds,
                                              insecure: gossipInsecure, broadcast: gossipBroadcast)
        } else if gossipPort != nil || gossipKeyFile != nil || !gossipSeed.isEmpty || gossipInsecure || gossipBroadcast {
            throw ValidationError("gossip options need --gossip-subnet CIDR")
        }
        var http = NodeConfiguration.HTTP(adminTokenFile: adminTokenFile)
        if let value = metricsListen {
            guard let e = IPEndpoint(parsing: value) else { throw ValidationError("--metrics-listen \(value): expected \(IPEndpoint.expectedForm)") }
            http.metricsListen = e
        }
        if let value = adminListen {
            guard let e = IPEndpoint(parsing: value) else { throw ValidationError("--admin-listen \(value): expected \(IPEndpoint.expectedForm)") }
            if adminTokenFile == nil, ValueParsing.adminNeedsToken(listenHost: e.host) {
                throw CLIError("--admin-listen \(value) is not a loopback address, so admin actions need a token: pass --admin-token-file FILE, or listen on 127.0.0.1")
            }
            http.adminListen = e
        }
        if adminTokenFile != nil, adminListen == nil { throw ValidationError("--admin-token-file needs --admin-listen IP:PORT") }
        return NodeConfiguration(
            name: NodeConfiguration.defaultName, dataDir: FilePaths.parent(path), ip: ip, portRange: ports, randomPort: randomPort,
            tcpCongestion: tcpCongestion, roles: [mode == .seed ? .seeder : .peer],
            torrents: [NodeConfiguration.Torrent(torrent: torrent, path: path, mode: mode, peers: peers)],
            rates: rates, limits: NodeConfiguration.Limits(maxPeers: maxPeers, uploadSlots: uploadSlots),
            allowedPeers: allowed, sites: try siteOptions.map(), gossip: gossip, noTracker: noTracker, http: http)
    }

    func makeLogger(_ label: String) -> Logger {
        var logger = Logger(label: label)
        logger.logLevel = log.level
        return logger
    }
}

/// How `seed` and `peer` name a setting in an error or a log line: by its flag.
func flag(_ setting: Setting) -> String {
    switch setting {
    case .ip: "--ip"
    case .portRange: "--port-range"
    case .tcpCongestion: "--tcp-congestion"
    case .gossip: "gossip"
    case .gossipKeyFile: "--gossip-key-file"
    case .metricsListen: "--metrics-listen"
    case .adminListen: "--admin-listen"
    case .adminTokenFile: "--admin-token-file"
    case .trackerListen: "--listen"
    case .trackerStateFile: "--state"
    case .trackerAllowDir: "--allow-dir"
    case .watchDir: "watch_dir"
    }
}

func parseCIDR(_ text: String, option: String) throws -> CIDR {
    do throws(CIDR.ParseError) {
        return try CIDR(parsing: text)
    } catch {
        throw ValidationError("\(option): \(error)")
    }
}

func parseRate(_ text: String, option: String) throws -> Int64 {
    guard let r = Units.parseRate(text) else {
        throw ValidationError("\(option) \(text): expected \(Units.rateForm)")
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
        let config = try swarm.configuration(torrent: torrent, path: path, mode: .seed)
        let runtime = NodeRuntime(configuration: config, policy: RunPolicy(exit: .onSignal, progressInterval: 5), naming: flag,
                                  logger: swarm.makeLogger("starling.seed"))
        let status = try await runCatching { try await runtime.run() }
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
        let config = try swarm.configuration(torrent: torrent, path: out, mode: .fetch)
        let policy = RunPolicy(exit: .whenComplete(seedAfter: seedAfter, timeout: timeout), progressInterval: 5)
        let runtime = NodeRuntime(configuration: config, policy: policy, naming: flag, logger: swarm.makeLogger("starling.peer"))
        let status = try await runCatching { try await runtime.run() }
        if status != 0 { throw ExitCode(status) }
    }
}

/// Turns runtime errors into one-line CLI errors: by default a setting is named by its flag.
func runCatching(describe: (SettingError) -> String = { $0.described(naming: flag) },
                 _ body: () async throws -> Int32) async throws -> Int32 {
    do {
        return try await body()
    } catch let e as SettingError {
        throw CLIError(describe(e))
    } catch let e as ExitCode {
        throw e
    } catch {
        throw CLIError("\(error)")
    }
}
