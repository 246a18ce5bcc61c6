import BitTorrent
import Swarm
import Values

/// A swarm of `TorrentState`s over a modelled network, in virtual time (docs/simulator.md).
///
/// The hosts run the engine's own rules; this type plays the part `TorrentSession` and
/// `PeerEngine` play in a process: it carries out their actions, moves bytes over links of
/// the scenario's capacity, and feeds back what arrives. Single-threaded and seeded: the same
/// scenario gives the same run, event for event.
public final class Simulation {
    private(set) var fleet: Fleet

    public init(_ scenario: Scenario) { fleet = Fleet(scenario) }

    public var scenario: Scenario { fleet.scenario }
    public var now: UInt64 { fleet.now }
    /// Once a second of virtual time: how busy the links were (`--timeline`).
    public var timeline: [Sample] { fleet.timeline }
    /// Called every 5 s of virtual time with the time, the peers complete and the peers that must be.
    public var progress: ((Double, Int, Int) -> Void)? {
        get { fleet.progress }
        set { fleet.progress = newValue }
    }

    /// Runs until every honest peer is complete or the time limit; returns the figures.
    public func run() -> Report { fleet.run() }

    /// One line per host that did not complete: what it holds and whom it is connected to.
    public func stragglers() -> [String] { fleet.stragglers() }
}

/// The simulation's hosts, connections and network, and each step of the run. A value, not
/// the stored properties of `Simulation`: Swift checks every access to a class's stored
/// property for exclusivity at run time (a sixth of a simulated swarm's instructions), a
/// struct's when it compiles.
struct Fleet {
    let scenario: Scenario
    let layout: PieceLayout
    var hosts: [Host] = []
    var conns: [Conn] = []
    /// Two per connection: `links[2c]` carries a -> b, `links[2c + 1]` b -> a.
    var links: [Link] = []
    var network = NetworkScratch()
    /// Items in flight in arrival order, within a site and across sites: each queue's
    /// arrivals are a fixed delay after their send.
    var arrivals = [ArrivalQueue(), ArrivalQueue()]
    /// The bytes of bitfields on their way (`Item`), by key: rare (a restarted host's).
    var bitfields: [Int: [UInt8]] = [:]
    var bitfieldKey = 0
    /// Once a second of virtual time: how busy the links were (`timeline`).
    var timeline: [Simulation.Sample] = []
    var sample = (origin: 0.0, peers: 0.0, fresh: 0.0)
    /// Blocks the origin has sent at least once.
    var originSent = Set<Int>()
    var hostSecond: [(up: Double, down: Double)] = []
    /// Wire bytes through each site's uplink, into the site and out of it.
    var siteBytes: [(in: Double, out: Double)]
    var tracker: TrackerRegistry
    /// Host index by address, when addresses follow the sites (`Scenario.siteMap`).
    private(set) var hostByAddress: [String: Int] = [:]
    let infoHash = InfoHash(bytes: [UInt8](repeating: 7, count: 20))!
    var events = EventQueue()
    /// Scratch for `deliverArrivals` and `transmit`, kept between steps.
    var batch = StepScratch()

    /// Per link: the step it was last read in, `closed` once it closed (or never opened). Apart
    /// from `links`, so that handing over an arrival reads eight bytes, not the link.
    var readAt: [UInt64] = []
    static let closed = UInt64.max
    /// Open and not read yet: no step has this number.
    static let unread = UInt64.max - 1

    struct StepScratch {
        var arrived: [ArrivalQueue.Arrival] = []
        /// Blocks the kernel took this step: link, block.
        var sent: [(link: Int, block: BlockRequest)] = []
        var keys: [Int] = []
        var touched: [Int] = []
        var groups = HostGroups()
    }
    var random: SplitMix64
    var now: UInt64 = 0
    var completed = 0
    var crashes = 0
    /// Honest peers, crashed or not: the run ends when they all are complete.
    let mustComplete: Int
    private(set) var rules: TorrentRules
    /// Each host's site, when there are sites.
    let siteOf: [Int]?

    struct Host {
        let index: Int
        let address: PeerAddress
        let gossipEndpoint: IPEndpoint
        let peerID: [UInt8]
        let site: Int
        var state: TorrentState
        var dial: DialSchedule
        var gossip: GossipMembership?
        /// Per slot of `state.peers` (`PeerTable.slot(of:)`): the peer's id and the link we send
        /// it on, id -1 for none. An index where a dictionary hashed the id for every send.
        var out: [(id: Int, link: Int)] = []
        /// The same connections by peer id, read only when the host crashes: it closes them
        /// in this dictionary's order, as it always has (the run's output follows that order).
        var conn: [Int: Int] = [:]
        var alive = true
        /// Counts crashes: timers set before a crash are ignored after the restart.
        var epoch = 0
        var liar = false
        var doneAt: UInt64?
        /// Per piece, per block: the block assembled was corrupt (for the piece's verdict); a
        /// piece without an entry has no corrupt block.
        var corrupt: [Int: [Bool]] = [:]
        var uploaded: Int64 = 0
        /// Links holding haves, and whether the flush timer that sends them is set.
        var heldLinks: [Int] = []
        var flushArmed = false

        /// The link to the peer `id` while connected to it.
        func out(to id: Int) -> Int? {
            let s = PeerTable.slot(of: id)
            return s < out.count && out[s].id == id ? out[s].link : nil
        }

        /// Notes the link to the peer `id` (nil: the connection closed).
        mutating func setOut(_ link: Int?, for id: Int) {
            let s = PeerTable.slot(of: id)
            if s >= out.count { out += repeatElement((id: -1, link: -1), count: s + 1 - out.count) }
            if let link {
                out[s] = (id, link)
            } else if out[s].id == id {
                out[s] = (-1, -1)
            }
            conn[id] = link.map { $0 >> 1 }
        }
    }

    /// One TCP connection between two hosts; its bytes move on `links[2c]` and `links[2c + 1]`.
    struct Conn {
        var a: Int, b: Int           // host indices; `a` dialled
        var idAtA: Int, idAtB: Int   // each side's peer id for the other
        var open = true
    }

    var progress: ((Double, Int, Int) -> Void)?

    init(_ scenario: Scenario) {
        self.scenario = scenario
        layout = PieceLayout(totalLength: scenario.fileBytes, pieceLength: scenario.effectivePieceLength,
                             blockLength: scenario.effectiveBlockLength)
        random = SplitMix64(seed: scenario.seed)
        rules = scenario.rules
        siteOf = scenario.sites > 1 ? (0..<scenario.hosts).map(scenario.site(of:)) : nil
        siteBytes = Array(repeating: (0, 0), count: scenario.sites)
        var trackerConfig = TrackerRegistry.Configuration()
        if scenario.siteMap {
            for k in 0..<scenario.sites { try! trackerConfig.sites.add(parsing: "s\(k)=\(Self.siteBlock(k))") }
        }
        tracker = TrackerRegistry(configuration: trackerConfig)
        hostSecond = Array(repeating: (0, 0), count: scenario.hosts)
        let liarCount = Int((Double(scenario.hosts - 1) * scenario.liars).rounded())
        let churnCount = Int((Double(scenario.hosts - 1) * scenario.churn).rounded())
        mustComplete = scenario.hosts - 1 - liarCount
        var firstOfSite = 0
        for i in 0..<scenario.hosts {
            var ip = "10.\(i >> 16).\((i >> 8) & 255).\(i & 255)"
            if scenario.siteMap {
                // Each site in its own /16 (`siteBlock`), as the site map describes it.
                let k = scenario.site(of: i)
                if i == 0 || k != scenario.site(of: i - 1) { firstOfSite = i }
                let j = i - firstOfSite + 1
                ip = "10.\(k + 1).\(j >> 8).\(j & 255)"
                hostByAddress[ip] = i
            }
            let id = Array("-SL0100-".utf8) + Array(String(i, radix: 36).leftPadded(to: 12).utf8)
            let have = Bitfield(count: layout.pieceCount, allSet: i == 0)
            var host = Host(index: i, address: PeerAddress(host: ip, port: Defaults.portRange.lowerBound),
                            gossipEndpoint: IPEndpoint(ip: IPAddress(ip)!, port: Defaults.gossipPort), peerID: id,
                            site: scenario.site(of: i),
                            state: TorrentState(layout: layout, have: have, rules: rules, ownPeerID: id, ownAddress: ip,
                                                seed: random.next(), now: 0),
                            dial: DialSchedule(capacity: 1000))
            host.liar = i > 0 && i <= liarCount
            if i == 0 { host.doneAt = 0 }
            hosts.append(host)
        }
        // The seeder and the tracker are up first; peers start within 100 ms, as a rollout's do.
        for i in hosts.indices {
            start(i, at: i == 0 ? 0 : 1_000_000 + random.next() % 100_000_000)
        }
        // Churn: the last peers crash once each, at a uniformly random moment before the bound.
        for i in hosts.indices.suffix(churnCount) where i > liarCount {
            schedule(.crash(i), at: 1_000_000_000 + random.next() % UInt64(max(1, scenario.tMin * 1e9)))
        }
    }

    /// Starts (or restarts) a host's process: its timers, its first announce, its gossip.
    mutating func start(_ i: Int, at t: UInt64) {
        let epoch = hosts[i].epoch
        if scenario.trackerDead {
            // Gossip only: every host joins through the seeds' endpoints, as `--gossip-seed`
            // gives them (a seed drops its own).
            let seeds = hosts.prefix(scenario.gossipSeeds).map(\.gossipEndpoint)
            var m = GossipMembership(id: random.next() | 1, gossipEndpoint: hosts[i].gossipEndpoint, scope: Self.gossipScope,
                                     seeds: seeds, settings: scenario.gossip, rng: SplitMix64(seed: random.next()),
                                     now: gossipTime(t))
            m.announce(torrents: [GossipTorrent(infoHash: infoHash, complete: hosts[i].doneAt != nil)], peerPort: UInt16(Defaults.portRange.lowerBound))
            hosts[i].gossip = m
            schedule(.timer(.gossip, i, epoch), at: t)
        } else {
            schedule(.timer(.announce, i, epoch), at: t)
        }
        schedule(.timer(.tick, i, epoch), at: t + 1_000_000_000)
        schedule(.timer(.rechoke, i, epoch), at: t + 10_000_000_000)
    }

    static let gossipScope = CIDR("10.0.0.0/8")!

    /// The membership's two clocks: virtual time, and a wall clock that starts at a fixed date.
    func gossipTime(_ t: UInt64) -> GossipTime {
        GossipTime(monotonicNanos: t, unixMillis: 1_800_000_000_000 + t / 1_000_000)
    }
}

extension String {
    func leftPadded(to n: Int) -> String { count >= n ? String(suffix(n)) : String(repeating: "0", count: n - count) + self }
}
