import ArgumentParser
import BitTorrent
import Foundation
import Storage
import SwarmSim
import Values

/// `starling-sim`: the swarm's real rules over a modelled network, in virtual time.
struct StarlingSim: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "starling-sim",
        abstract: "Simulate a Starling rollout to a fleet: the engine's own rules, a modelled network, virtual time.",
        discussion: "The network model and its validation against ../shared/swarmlab: docs/simulator.md.",
        subcommands: [Run.self])
}

struct Run: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Distribute one file from one seed to N-1 peers and report as swarmlab does.")

    @Option(help: "Hosts, the seed included.") var hosts = 16
    @Option(name: .customLong("size-mb"), help: "File size in MiB.") var sizeMB = 64.0
    @Option(help: "Link rate of every host, each direction (e.g. 100mbit, 20mbit).") var rate = "100mbit"
    @Option(help: "One-way latency between hosts, milliseconds.") var delay = 0.0
    @Option(name: .customLong("piece-size"), help: "Piece size (e.g. 256KiB); default: make-torrent's choice.") var pieceSize: String?
    @Option(help: "Seed of every random choice: the same arguments and seed give the same run.") var seed: UInt64 = 1
    @Option(name: .customLong("up-rate"), help: "Host-wide upload cap (e.g. 20mbit).") var upRate: String?
    @Option(name: .customLong("down-rate"), help: "Host-wide download cap.") var downRate: String?
    @Option(help: "Fraction of the peers that send corrupt blocks (0-1).") var liars = 0.0
    @Option(name: .customLong("kill-seeder-after-complete-of"), help: "Stop the origin seed once this many peers are complete.")
    var killSeeder: Int?
    @Flag(name: .customLong("tracker-dead"), help: "No tracker: hosts find each other by gossip only, joining through the seed.")
    var trackerDead = false
    @Option(help: "Fraction of the peers that crash once mid-run and restart 5 s later with what they had verified (0-1).")
    var churn = 0.0
    @Option(help: "Sites (racks, data centres): host I is in site I*K/N, as in swarmlab.") var sites = 1
    @Option(name: [.customLong("site-rate"), .customLong("site-uplink")], help: "Each site's shared uplink, each direction (e.g. 40mbit).")
    var siteRate: String?
    @Option(name: .customLong("site-delay"), help: "One-way latency added between sites, milliseconds.") var siteDelay = 0.0
    @Flag(name: .customLong("site-map"), help: "Give the hosts and the tracker the site map (as `--site` does): one copy per site across its uplink.")
    var siteMap = false
    @Option(name: .customLong("site-fallback"), help: "With --site-map: the longest a host may receive nothing before it fetches across sites what its site-mates own, milliseconds (the engine's siteFallbackAfter; sooner on fast links).")
    var siteFallback: Double?
    @Option(name: .customLong("max-peers"), help: "Connections per host (the engine's peer.max_peers).") var maxPeers: Int?
    @Option(name: .customLong("upload-slots"), help: "Peers a downloading host uploads to at once.") var uploadSlots: Int?
    @Option(name: .customLong("have-flush-delay"), help: "Longest a have waits for other bytes to the same peer, milliseconds (0: sent at once).") var haveFlushDelay: Double?
    @Option(name: .customLong("request-horizon"), help: "Data asked of a peer ahead, in milliseconds at its rate.") var requestHorizon: Double?
    @Option(name: .customLong("min-pipeline"), help: "Requests kept at a peer at least.") var minPipeline: Int?
    @Option(name: .customLong("block-size"), help: "Unit the hosts request and send, at most a piece (16KiB: the wire's; larger: the same decisions in fewer messages).")
    var blockSize = "32KiB"
    @Option(help: "Step of the network model, milliseconds.") var step = 5.0
    @Option(name: .customLong("gossip-tick"), help: "With --tracker-dead: how often each host's gossip membership is ticked, milliseconds (the node's tickIntervalMillis).")
    var gossipTick = 100.0
    @Option(name: .customLong("gossip-members"), help: "With --tracker-dead: most members each gossip membership keeps (maxMembers, 1024).")
    var gossipMembers: Int?
    @Option(name: .customLong("gossip-seeds"), help: "With --tracker-dead: how many hosts, the origin first, every host is given as gossip seeds (as --gossip-seed, repeated, gives a node).")
    var gossipSeeds = 1
    @Flag(help: "Print one line per simulated second: completions and the use of the links.") var timeline = false
    @Option(help: "Write the figures as JSON (swarmlab's field names) to this file.") var json: String?

    func validate() throws {
        guard hosts >= 2 else { throw ValidationError("--hosts must be at least 2 (a seed and a peer)") }
        guard sizeMB > 0 else { throw ValidationError("--size-mb must be positive") }
        guard Units.parseRate(rate).map({ $0 > 0 }) == true else { throw ValidationError("--rate \(rate): expected a rate such as 100mbit") }
        guard (0...1).contains(liars) else { throw ValidationError("--liars must be between 0 and 1") }
        guard gossipTick > 0 else { throw ValidationError("--gossip-tick must be positive") }
        guard gossipMembers.map({ $0 > 0 }) ?? true else { throw ValidationError("--gossip-members must be positive") }
        guard (1...hosts).contains(gossipSeeds) else { throw ValidationError("--gossip-seeds must be between 1 and --hosts") }
        guard step > 0, delay >= 0, siteDelay >= 0 else { throw ValidationError("--step must be positive, --delay and --site-delay not negative") }
        guard (0...1).contains(churn) else { throw ValidationError("--churn must be between 0 and 1") }
        guard (1...hosts).contains(sites) else { throw ValidationError("--sites must be between 1 and --hosts") }
        guard (sites > 1) == (siteRate != nil) else { throw ValidationError("--sites K (K > 1) and --site-rate RATE go together") }
        guard !siteMap || sites > 1 else { throw ValidationError("--site-map needs --sites K (K > 1)") }
        guard !siteMap || (sites <= 250 && hosts / sites < 65_000) else {
            throw ValidationError("--site-map: at most 250 sites of fewer than 65,000 hosts (each site is a /16)")
        }
        if let siteRate, Units.parseRate(siteRate).map({ $0 > 0 }) != true {
            throw ValidationError("--site-rate \(siteRate): expected a rate such as 40mbit")
        }
    }

    func run() throws {
        var s = Scenario()
        s.hosts = hosts
        s.fileBytes = Int64(sizeMB * 1024 * 1024)
        s.rate = Double(Units.parseRate(rate)!)
        s.latency = UInt64(delay * 1e6)
        s.seed = seed
        s.liars = liars
        s.killSeederAfterCompleteOf = killSeeder
        s.step = UInt64(step * 1e6)
        s.gossipTick = UInt64(gossipTick * 1e6)
        if let gossipMembers { s.gossip.maxMembers = gossipMembers }
        s.gossipSeeds = gossipSeeds
        if let maxPeers { s.rules.maxPeers = maxPeers }
        if let uploadSlots { s.rules.uploadSlots = uploadSlots }
        if let requestHorizon { s.rules.requestHorizon = UInt64(requestHorizon * 1e6) }
        if let haveFlushDelay { s.rules.haveFlushDelay = UInt64(haveFlushDelay * 1e6) }
        if let minPipeline { s.rules.minPipeline = minPipeline }
        if let siteFallback { s.rules.siteFallbackAfter = UInt64(siteFallback * 1e6) }
        s.trackerDead = trackerDead
        s.churn = churn
        s.sites = sites
        s.siteRate = siteRate.flatMap(Units.parseRate).map(Double.init) ?? .infinity
        s.siteLatency = UInt64(siteDelay * 1e6)
        s.siteMap = siteMap
        // Pieces and transfer units alike: what make-torrent accepts as a piece size.
        func powerOfTwo(_ text: String, _ option: String) throws -> Int {
            guard let n = Units.parseSize(text), TorrentBuilder.isValidPieceLength(n) else {
                throw ValidationError("\(option) \(text): expected a power of two of at least 16KiB (at most 1GiB)")
            }
            return Int(n)
        }
        if let p = pieceSize { s.pieceLength = try powerOfTwo(p, "--piece-size") }
        s.blockLength = try powerOfTwo(blockSize, "--block-size")
        for (text, option, keyPath) in [(upRate, "--up-rate", \Scenario.upCap), (downRate, "--down-rate", \Scenario.downCap)] {
            guard let text else { continue }
            guard let r = Units.parseRate(text), r > 0 else { throw ValidationError("\(option) \(text): expected a rate such as 20mbit") }
            s[keyPath: keyPath] = r
        }
        let started = Date()
        let simulation = Simulation(s)
        if isatty(STDERR_FILENO) != 0 {
            // Progress for a person watching a long run; stdout stays the report alone.
            simulation.progress = { t, done, all in
                let wall = Date().timeIntervalSince(started)
                FileHandle.standardError.write(Data(String(format: "  t=%6.1f s  %d/%d complete  (%.0f s wall)\n", t, done, all, wall).utf8))
            }
        }
        let report = simulation.run()
        let wall = Date().timeIntervalSince(started)
        if timeline {
            // Per downloading peer: uploading to, requests queued at it, its requests out.
            // Per downloading peer: uploading to, requests queued at it, its requests out; link
            // use as 10th/50th/90th percentiles over the downloading peers.
            print("second  complete  origin-up (fresh)  peers-up  peers-down  unchoked  queued  outstanding  up p10/50/90  down p10/50/90")
            for t in simulation.timeline {
                let up = t.upPercentiles.map { String(format: "%3.0f", $0 * 100) }.joined(separator: "/")
                let down = t.downPercentiles.map { String(format: "%3.0f", $0 * 100) }.joined(separator: "/")
                print(String(format: "%6d  %8d  %8.0f%% (%3.0f%%)  %7.0f%%  %9.0f%%  %8.1f  %6.1f  %11.1f", t.second, t.complete,
                             t.originUp * 100, t.originFresh * 100, t.peersUp * 100, t.peersDown * 100, t.unchoked, t.queued, t.outstanding)
                      + "  \(up)   \(down)")
            }
        }
        print(report.summary(rate: rate, wallSeconds: wall, peakRSSMiB: Self.peakRSSMiB()))
        if let json {
            try report.json(rate: rate, wallSeconds: wall, peakRSSMiB: Self.peakRSSMiB())
                .write(toFile: json, atomically: true, encoding: .utf8)
        }
        if !report.allComplete {
            for line in simulation.stragglers() { print("incomplete           \(line)") }
            throw ExitCode(1)
        }
    }

    /// Peak resident memory of this process (VmHWM), MiB.
    static func peakRSSMiB() -> Double {
        guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
              let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmHWM:") }),
              let kb = Double(line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first ?? "") else { return 0 }
        return kb / 1024
    }
}

// Swift seeds each dictionary's hashing per process and per instance, and the rules iterate
// dictionaries of peers: with the seed fixed, a run's order of events follows from its
// arguments alone. The variable is read at start-up, so the process starts itself again.
// It also asks glibc's malloc for 2 MiB pages (where transparent huge pages are on request):
// a fleet's state is hundreds of MiB read all over, and with 4 KiB pages most reads missed
// the TLB (1,000 hosts x 220 MiB: 123 -> 109 s of CPU, 57,000 -> 4,600 page faults).
if getenv("SWIFT_DETERMINISTIC_HASHING") == nil {
    setenv("SWIFT_DETERMINISTIC_HASHING", "1", 1)
    let tunables = getenv("GLIBC_TUNABLES").map { String(cString: $0) + ":" } ?? ""
    setenv("GLIBC_TUNABLES", tunables + "glibc.malloc.hugetlb=1", 1)
    let args = CommandLine.arguments.map { strdup($0) } + [nil]
    execv("/proc/self/exe", args)
    FileHandle.standardError.write(Data("starling-sim: cannot restart with deterministic hashing (errno \(errno))\n".utf8))
    exit(70)
}
StarlingSim.main()
