import ArgumentParser
import BitTorrent
import Logging
import NodeConfig
import StarlingNode
import Swarm
import Storage
import Values

struct TrackerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tracker",
        abstract: "Run an HTTP BitTorrent tracker (announce, scrape, metrics).",
        discussion: """
        Serves /announce (BEP 3, compact peer lists per BEP 23, IPv6 peers per BEP 7), \
        /scrape (BEP 48), /metrics (Prometheus text) and /healthz. A peer's address is the \
        connection's source address; an ip= parameter counts only from a --trusted-cidr network. \
        Leechers get a random mix of seeders and leechers, seeders get leechers only. Peers that \
        stop announcing are forgotten after about three intervals.

        With --state the swarms are saved atomically every --save-interval seconds and at \
        shutdown, and reloaded at start, so a restarted tracker still knows its peers. With \
        --allow-dir only the info-hashes of the .torrent files in that folder are served \
        (the folder is re-read when it changes); others get a 'failure reason'. \
        Runs until SIGINT or SIGTERM, then saves state and exits 0.

        Example:
          starling tracker --listen 10.0.0.1:6969 \\
              --state /var/lib/starling/tracker.state
          starling tracker --listen 0.0.0.0:6969 --allow-dir /srv/torrents \\
              --trusted-cidr 10.0.0.0/8
        """
    )

    @Option(name: .long, help: "Address and port to listen on: IP:PORT, [IPv6]:PORT or :PORT for all addresses.",
            transform: Self.parseListen)
    var listen: IPEndpoint

    @Option(name: .long, help: "File to save swarms to and reload them from.")
    var state: String?

    @Option(name: .long, help: "Announce interval handed to clients, in seconds (plus up to 20% jitter).")
    var interval: Int = Defaults.trackerInterval

    @Option(name: .long, help: "'min interval' handed to clients, in seconds (default: half the interval).")
    var minInterval: Int?

    @Option(name: .long, help: "Forget a peer after this many seconds without an announce (default: about 3 intervals, at least 60).")
    var peerTimeout: Int?

    @Option(name: .long, help: "Serve only torrents whose .torrent file is in this folder (re-read when it changes).")
    var allowDir: String?

    @Option(name: .long, help: "A network whose clients may set their address with ip= (e.g. a NAT gateway); repeatable.",
            transform: { text in
                do { return try CIDR(parsing: text) } catch { throw ValidationError("\(error)") }
            })
    var trustedCidr: [CIDR] = []

    @Option(name: .long, help: "Seconds between state saves.")
    var saveInterval: Int = TrackerConfiguration.defaultSaveInterval

    @Option(name: .long, help: "Most peers handed out per announce.")
    var maxNumwant: Int = TrackerRegistry.Configuration.defaultMaxNumWant

    @Option(name: .long, help: "Most connections open at once.")
    var maxConnections: Int = TrackerConfiguration.defaultMaxConnections

    @Option(name: .long, help: "Event-loop threads (default: one per core).")
    var threads: Int?

    @OptionGroup var siteOptions: SiteOptions

    @Option(name: .long, help: "With --site: peers of other sites handed to a peer in a site per announce, so every site stays joined to the rest.")
    var remotePeers: Int = TrackerRegistry.Configuration.defaultRemotePeers

    @OptionGroup var log: LogOptions

    func validate() throws {
        guard interval >= 1, interval <= 86_400 else { throw ValidationError("--interval must be 1 to 86400 seconds") }
        if let m = minInterval, m < 0 || m > interval { throw ValidationError("--min-interval must be 0 to --interval") }
        if let t = peerTimeout, t < interval { throw ValidationError("--peer-timeout must be at least --interval") }
        guard saveInterval >= 1 else { throw ValidationError("--save-interval must be at least 1 second") }
        guard maxNumwant >= 1 else { throw ValidationError("--max-numwant must be at least 1") }
        guard maxConnections >= 1 else { throw ValidationError("--max-connections must be at least 1") }
        if let t = threads, t < 1 || t > 256 { throw ValidationError("--threads must be 1 to 256") }
        guard remotePeers >= 0 else { throw ValidationError("--remote-peers must not be negative") }
    }

    func run() async throws {
        let level = log.level
        LoggingSystem.bootstrap { label in
            var h = StreamLogHandler.standardError(label: label)
            h.logLevel = level
            return h
        }
        let logger = Logger(label: "starling.tracker")
        if let dir = allowDir, !FilePaths.isDirectory(dir) { throw CLIError("--allow-dir \(dir): not a folder") }
        if let s = state, !FilePaths.isDirectory(FilePaths.parent(s)) {
            throw CLIError("--state \(s): folder \(FilePaths.parent(s)) does not exist")
        }
        let sites = try siteOptions.map()
        if !sites.isEmpty {
            logger.info("site map", metadata: ["sites": "\(sites.sites.map { "\($0.name)=\($0.blocks.map(\.description).joined(separator: ","))" })"])
        }
        let tracker = NodeConfiguration.Tracker(listen: listen, stateFile: state, interval: interval, allowDir: allowDir,
                                                trustedCIDRs: trustedCidr, minInterval: minInterval, peerTimeout: peerTimeout,
                                                saveInterval: saveInterval, maxNumWant: maxNumwant, maxConnections: maxConnections,
                                                threads: threads, remotePeers: remotePeers)
        let config = NodeConfiguration(name: NodeConfiguration.defaultName, dataDir: "", ip: nil,
                                       roles: [.tracker], tracker: tracker, sites: sites)
        let runtime = NodeRuntime(configuration: config, policy: .serve, naming: flag, logger: logger)
        let status = try await runCatching {
            do {
                return try await runtime.run()
            } catch let e as SettingError {
                throw e
            } catch {
                throw CLIError("cannot run the tracker on \(listen): \(error)")
            }
        }
        if status != 0 { throw ExitCode(status) }
    }

    /// `IP:PORT`, `[IPv6]:PORT` or `:PORT` (all IPv4 addresses); port 0 picks a free one.
    static func parseListen(_ s: String) throws -> IPEndpoint {
        guard let e = IPEndpoint(parsing: s.hasPrefix(":") ? "0.0.0.0" + s : s, portZero: true) else {
            throw ValidationError("expected IP:PORT, e.g. 10.0.0.1:6969, [::]:6969 or :6969")
        }
        return e
    }
}
