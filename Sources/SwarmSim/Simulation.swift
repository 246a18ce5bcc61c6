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
    private var fleet: Fleet

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

    /// One second of the run: completions so far and the share of link capacity used.
    public struct Sample: Sendable {
        public var second: Int
        public var complete: Int
        public var originUp: Double
        /// Blocks the origin had not sent before, as a share of its uplink, counted when the
        /// kernel takes them (so above 1 while its socket buffers fill).
        public var originFresh: Double
        /// Mean over all peers of their uplinks' use, and over the downloading ones of their
        /// downlinks' (above 1 in a second in which hosts completed: it divides by those
        /// still downloading at its end).
        public var peersUp: Double
        public var peersDown: Double
        /// Means over the downloading peers: peers each uploads to (unchoked and interested),
        /// requests queued at it, blocks it has asked for and not received.
        public var unchoked: Double
        public var queued: Double
        public var outstanding: Double
        /// Peers' uplink and downlink use: 10th, 50th and 90th percentile over the downloading peers.
        public var upPercentiles: [Double]
        public var downPercentiles: [Double]
    }

    public struct Report: Sendable, Equatable {
        public var hosts: Int
        public var fileBytes: Int64
        public var makespan: Double?
        public var median: Double?
        public var p90: Double?
        public var tMin: Double
        public var seederUploadXFile: Double
        public var allComplete: Bool
        public var completeHosts: Int
        /// Peers that are not liars: the ones that must complete.
        public var honestPeers: Int
        public var virtualSeconds: Double
        /// Per site (when there are sites): what crossed its uplink in and out, x file.
        public var siteInXFile: [Double] = []
        public var siteOutXFile: [Double] = []
        public var crashes = 0

        public var maxSiteInXFile: Double? { siteInXFile.max() }
    }
}

/// The simulation's hosts, connections and network, and each step of the run. A value, not
/// the stored properties of `Simulation`: Swift checks every access to a class's stored
/// property for exclusivity at run time (a sixth of a simulated swarm's instructions), a
/// struct's when it compiles.
struct Fleet {
    let scenario: Scenario
    let layout: PieceLayout
    private(set) var hosts: [Host] = []
    private var conns: [Conn] = []
    /// Two per connection: `links[2c]` carries a -> b, `links[2c + 1]` b -> a.
    private var links: [Link] = []
    private var network = NetworkScratch()
    /// Items in flight in arrival order, within a site and across sites: each queue's
    /// arrivals are a fixed delay after their send.
    private var arrivals = [ArrivalQueue(), ArrivalQueue()]
    /// The bytes of bitfields on their way (`Item`), by key: rare (a restarted host's).
    private var bitfields: [Int: [UInt8]] = [:]
    private var bitfieldKey = 0
    /// Once a second of virtual time: how busy the links were (`timeline`).
    private(set) var timeline: [Simulation.Sample] = []
    private var sample = (origin: 0.0, peers: 0.0, fresh: 0.0)
    /// Blocks the origin has sent at least once.
    private var originSent = Set<Int>()
    private var hostSecond: [(up: Double, down: Double)] = []
    /// Wire bytes through each site's uplink, into the site and out of it.
    private(set) var siteBytes: [(in: Double, out: Double)]
    private var tracker: TrackerRegistry
    /// Host index by address, when addresses follow the sites (`Scenario.siteMap`).
    private var hostByAddress: [String: Int] = [:]
    private let infoHash = InfoHash(bytes: [UInt8](repeating: 7, count: 20))!
    private var events = EventQueue()
    /// Scratch for `deliverArrivals` and `transmit`, kept between steps.
    private var batch = StepScratch()

    /// Per link: the step it was last read in, `closed` once it closed (or never opened). Apart
    /// from `links`, so that handing over an arrival reads eight bytes, not the link.
    private var readAt: [UInt64] = []
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
    private var random: SplitMix64
    private(set) var now: UInt64 = 0
    private var completed = 0
    private var crashes = 0
    /// Honest peers, crashed or not: the run ends when they all are complete.
    private let mustComplete: Int
    private var rules: TorrentRules
    /// Each host's site, when there are sites.
    private let siteOf: [Int]?
    /// Unsent bytes the kernel takes per connection before a write waits: the origin's
    /// sockets are set to TCP_NOTSENT_LOWAT 128 KiB, the others keep deep default buffers.
    static let kernelBuffer = (seed: 128 * 1024, peer: 1 << 20)

    /// Wire bytes per payload byte: Ethernet, IP and TCP headers of full 1514-byte frames.
    static let frameOverhead = 1514.0 / 1448.0

    struct Host {
        let index: Int
        let address: PeerAddress
        let gossipEndpoint: IPEndpoint
        let peerID: [UInt8]
        let site: Int
        var state: TorrentState
        var dial: DialSchedule
        var gossip: GossipMembership<SplitMix64>?
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

    /// One direction of a connection: a FIFO of messages and blocks.
    struct Link {
        var from = 0, to = 0
        /// The sender's id for the receiver in its rules, and the receiver's for the sender.
        var idAtFrom = -1, idAtTo = -1
        var open = false
        var active = false
        var items: [Item] = []
        var head = 0
        var headSent = 0
        var queued = 0
        var credit = 0.0
        /// First item whose `blockSent` is not yet reported (the kernel has not taken it), and
        /// the bytes of the items from `head` up to it.
        var firstUnreported = 0
        var taken = 0
        /// Haves written and not yet flushed (`TorrentRules.haveFlushDelay`), the last `held`
        /// items: they may go with the next item for this peer, or at the sender's flush timer.
        /// In the queue itself, where a list of their own cost an allocation per have.
        var held = 0
        var heldBytes = 0
    }

    /// A message or a block on a link, as plain integers: the links and the arrival queues
    /// hold millions of them, and a `TorrentState.Message` (an enum with an array payload) is
    /// three times the size and counts references on every copy.
    struct Item {
        enum Kind: UInt8 {
            case choke, unchoke, interested, notInterested, have, bitfield, request, block, cancel, suggest
            case haveAll, haveNone, reject, allowedFast
        }

        var bytes: Int
        var kind: Kind
        var corrupt = false
        /// The piece (for a bitfield, its bytes' key in `Fleet.bitfields`), a block's offset and length.
        var piece: Int32 = 0, begin: Int32 = 0, length: Int32 = 0

        /// Any message but a bitfield, which `Fleet.perform` packs with its bytes set aside.
        init(bytes: Int, message m: TorrentState.Message) {
            self.bytes = bytes
            switch m {
            case .choke: kind = .choke
            case .unchoke: kind = .unchoke
            case .interested: kind = .interested
            case .notInterested: kind = .notInterested
            case .haveAll: kind = .haveAll
            case .haveNone: kind = .haveNone
            case .have(let p): kind = .have; piece = Int32(p)
            case .suggest(let p): kind = .suggest; piece = Int32(p)
            case .allowedFast(let p): kind = .allowedFast; piece = Int32(p)
            case .request(let r): kind = .request; set(r)
            case .cancel(let r): kind = .cancel; set(r)
            case .reject(let r): kind = .reject; set(r)
            case .piece(let r): kind = .block; set(r)
            case .bitfield: preconditionFailure("a bitfield's bytes are kept apart (Fleet.perform)")
            }
        }

        init(bytes: Int, bitfieldKey: Int) {
            self.bytes = bytes
            kind = .bitfield
            piece = Int32(bitfieldKey)
        }

        init(block: BlockRequest, corrupt: Bool) {
            bytes = Fleet.wireLength(.piece(block))
            kind = .block
            self.corrupt = corrupt
            set(block)
        }

        private mutating func set(_ r: BlockRequest) {
            piece = Int32(r.piece)
            begin = Int32(r.begin)
            length = Int32(r.length)
        }

        private var request: BlockRequest { BlockRequest(piece: Int(piece), begin: Int(begin), length: Int(length)) }
        var block: BlockRequest? { kind == .block ? request : nil }

        /// The message as it arrives; a bitfield's bytes come from `Fleet.bitfields`.
        func message(bitfield: () -> [UInt8]) -> TorrentState.Message {
            switch kind {
            case .choke: return .choke
            case .unchoke: return .unchoke
            case .interested: return .interested
            case .notInterested: return .notInterested
            case .haveAll: return .haveAll
            case .haveNone: return .haveNone
            case .have: return .have(piece: Int(piece))
            case .suggest: return .suggest(piece: Int(piece))
            case .allowedFast: return .allowedFast(piece: Int(piece))
            case .request: return .request(request)
            case .cancel: return .cancel(request)
            case .reject: return .reject(request)
            case .block: return .piece(request)
            case .bitfield: return .bitfield(bitfield())
            }
        }
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
    private mutating func start(_ i: Int, at t: UInt64) {
        let epoch = hosts[i].epoch
        if scenario.trackerDead {
            // Gossip only: every host joins through the origin's endpoint, as `--gossip-seed` gives it.
            let seeds = i == 0 ? [] : [hosts[0].gossipEndpoint]
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
    private func gossipTime(_ t: UInt64) -> GossipTime {
        GossipTime(monotonicNanos: t, unixMillis: 1_800_000_000_000 + t / 1_000_000)
    }

    // MARK: events

    enum Timer {
        case announce, tick, rechoke, gossip, wake, haveFlush
    }

    enum Event {
        /// A host's periodic work, from the host's incarnation `epoch`.
        case timer(Timer, Int, Int)
        case connect(from: Int, to: Int, epoch: Int)
        case checked(Int, piece: Int, digests: Bool, epoch: Int)
        case datagram(to: Int, GossipMessage, from: IPEndpoint)
        case crash(Int)
        case restart(Int)
    }

    private mutating func schedule(_ e: Event, at t: UInt64) { events.push(e, at: t) }

    mutating func run() -> Simulation.Report {
        while now <= scenario.timeLimit {
            while let (t, e) = events.peek(), t <= now {
                _ = events.pop()
                handle(e)
            }
            deliverArrivals()
            if completed >= mustComplete { break }
            transmit()
            now += scenario.step
            if now % 1_000_000_000 == 0 {
                takeSample()
                if now % 5_000_000_000 == 0 { progress?(Double(now) / 1e9, completed, mustComplete) }
            }
        }
        return report()
    }

    /// Hands this step's arrivals to their hosts, one host at a time: each host gets its
    /// items in arrival order, then one read batch end per connection that had any, as NIO
    /// ends one per socket read. Hosts take their turns in the order of their first arrival,
    /// so that a host's state is read once per step, not once per item: at 10,000 hosts the
    /// fleet's state is gigabytes, and visiting it item by item missed the cache on each.
    private mutating func deliverArrivals() {
        var batch = self.batch
        self.batch = StepScratch()
        batch.arrived.removeAll(keepingCapacity: true)
        batch.keys.removeAll(keepingCapacity: true)
        for q in arrivals.indices {
            while let a = arrivals[q].pop(dueBy: now) {
                batch.arrived.append(a)
                batch.keys.append(a.to)
            }
        }
        if !batch.arrived.isEmpty {
            batch.groups.group(batch.keys, hosts: hosts.count)
            for h in batch.groups.order {
                batch.touched.removeAll(keepingCapacity: true)
                for k in batch.groups.range(of: h) {
                    let a = batch.arrived[batch.groups.index[k]]
                    // The read batch ends once per step and connection: noted on the first item.
                    guard readAt[a.link] != Self.closed else { continue }
                    deliver(a.item, to: h, from: a.peer)
                    if readAt[a.link] != now {
                        readAt[a.link] = now
                        batch.touched.append(a.peer)
                    }
                }
                for p in batch.touched where hosts[h].alive && hosts[h].state.peers.contains(p) {
                    perform(h, hosts[h].state.readBatchEnded(p, now: now))
                }
            }
            batch.groups.reset()
        }
        self.batch = batch
    }

    private mutating func handle(_ e: Event) {
        switch e {
        case .timer(let timer, let h, let epoch):
            guard hosts[h].alive, hosts[h].epoch == epoch else { return }
            switch timer {
            case .announce:
                announce(h)
                schedule(.timer(.announce, h, epoch), at: now + scenario.announceInterval)
            case .tick:
                perform(h, hosts[h].state.tick(now: now))
                dialCandidates(h)
                schedule(.timer(.tick, h, epoch), at: now + 1_000_000_000)
            case .rechoke:
                perform(h, hosts[h].state.rechoke(now: now))
                schedule(.timer(.rechoke, h, epoch), at: now + 10_000_000_000)
            case .gossip:
                guard hosts[h].gossip != nil else { return }
                gossip(h, hosts[h].gossip!.tick(now: gossipTime(now)))
                schedule(.timer(.gossip, h, epoch), at: now + scenario.gossipTick)
            case .wake:
                perform(h, hosts[h].state.wake(now: now))
            case .haveFlush:
                hosts[h].flushArmed = false
                var held: [Int] = []
                swap(&held, &hosts[h].heldLinks)
                for l in held where links[l].held > 0 { flushHeld(l) }
                held.removeAll(keepingCapacity: true)
                hosts[h].heldLinks = held
            }
        case .connect(let from, let to, let epoch):
            guard hosts[from].epoch == epoch else { return }
            connect(from, to)
        case .checked(let h, let piece, let wanted, let epoch):
            guard hosts[h].alive, hosts[h].epoch == epoch else { return }
            let flags = hosts[h].corrupt.removeValue(forKey: piece) ?? [Bool](repeating: false, count: layout.blockCount(ofPiece: piece))
            let bad = flags.contains(true)
            let digests = bad || wanted ? flags.enumerated().map { Self.digest(piece: piece, block: $0.offset, corrupt: $0.element) } : nil
            let verdict: TorrentState.PieceCheck = bad ? .mismatched(blockDigests: digests!) : .matched(blockDigests: digests)
            perform(h, hosts[h].state.pieceChecked(piece, verdict, now: now))
        case .datagram(let h, let message, let source):
            guard hosts[h].alive, hosts[h].gossip != nil else { return }
            gossip(h, hosts[h].gossip!.receive(message, from: source, now: gossipTime(now)).directives)
        case .crash(let h):
            guard hosts[h].alive else { return }
            kill(h)
            crashes += 1
            schedule(.restart(h), at: now + scenario.churnDowntime)
        case .restart(let h):
            // A new process on the same disk: what was verified is kept, the rest is fetched again.
            hosts[h].alive = true
            hosts[h].epoch += 1
            hosts[h].corrupt = [:]
            hosts[h].state = TorrentState(layout: layout, have: hosts[h].state.have, rules: rules,
                                          ownPeerID: hosts[h].peerID, ownAddress: hosts[h].address.host, seed: random.next(), now: now)
            hosts[h].dial = DialSchedule(capacity: 1000)
            start(h, at: now)
        }
    }

    /// Carries out what a host's membership decided: datagrams, and peers for its dialler.
    private mutating func gossip(_ h: Int, _ directives: [GossipDirective]) {
        var found: [PeerAddress] = []
        for d in directives {
            switch d {
            case .send(let m, let to):
                guard let dest = index(of: to.ip.description) else { continue }
                schedule(.datagram(to: dest, m, from: hosts[h].gossipEndpoint), at: now + delay(h, dest))
            case .peerDiscovered(_, let p):
                found.append(PeerAddress(host: p.address.description, port: Int(p.port)))
            case .broadcast, .memberAdded, .memberUpdated, .memberRemoved:
                break
            }
        }
        if !found.isEmpty {
            learnSiteMates(h, found)
            _ = hosts[h].dial.add(found)
            dialCandidates(h)
        }
    }

    /// One-way latency from host `a` to host `b`: the hosts' links, and the sites' uplinks between them.
    private func delay(_ a: Int, _ b: Int) -> UInt64 {
        scenario.latency + (hosts[a].site != hosts[b].site ? scenario.siteLatency : 0)
    }

    /// A stand-in for a block's SHA-1: equal for equal content, so blame compares as it would.
    static func digest(piece: Int, block: Int, corrupt: Bool) -> SHA1Digest {
        var bytes = [UInt8](repeating: 0, count: 9)
        for k in 0..<4 { bytes[k] = UInt8(truncatingIfNeeded: piece >> (8 * k)); bytes[4 + k] = UInt8(truncatingIfNeeded: block >> (8 * k)) }
        bytes[8] = corrupt ? 1 : 0
        return SHA1Hasher.hash(bytes)
    }

    private mutating func deliver(_ item: Item, to h: Int, from peer: Int) {
        var bits: [UInt8] = []
        if item.kind == .bitfield { bits = bitfields.removeValue(forKey: Int(item.piece)) ?? [] }
        guard hosts[h].alive, hosts[h].state.peers.contains(peer) else { return }
        let actions = hosts[h].state.received(item.message { bits }, from: peer, now: now)
        // Noted only while some piece holds a corrupt block: a piece without an entry is all honest.
        if let req = item.block, item.corrupt || !hosts[h].corrupt.isEmpty, actions.contains(.assemble(req)) {
            let blocks = layout.blockCount(ofPiece: req.piece)
            hosts[h].corrupt[req.piece, default: [Bool](repeating: false, count: blocks)][req.begin / layout.blockLength] = item.corrupt
        }
        perform(h, actions)
    }

    // MARK: tracker and connections

    private mutating func announce(_ h: Int) {
        let host = hosts[h]
        let left = host.state.left
        let request = AnnounceRequest(infoHash: infoHash, peerID: host.peerID, port: UInt16(host.address.port),
                                      downloaded: 0, left: left, event: host.doneAt == nil ? .started : nil)
        guard let ip = IPAddress(host.address.host),
              let result = try? tracker.announce(request, address: ip, now: Int64(now / 1_000_000_000), using: &random) else { return }
        let addresses = result.peers.map { PeerAddress(host: $0.host, port: Int($0.port)) }
        learnSiteMates(h, addresses)
        _ = hosts[h].dial.add(addresses)
        dialCandidates(h)
    }

    /// Site k's address block when hosts know the site map.
    static func siteBlock(_ k: Int) -> String { "10.\(k + 1).0.0/16" }

    /// Tells host `h`'s rules which of these candidates share its site, as `PeerEngine` does.
    private mutating func learnSiteMates(_ h: Int, _ addresses: [PeerAddress]) {
        guard scenario.siteMap else { return }
        let mates = addresses.filter { a in index(of: a.host).map { hosts[$0].site == hosts[h].site } ?? false }
        if !mates.isEmpty { hosts[h].state.siteMembersKnown(mates.map(\.host)) }
    }

    private func index(of host: String) -> Int? {
        if scenario.siteMap { return hostByAddress[host] }
        let parts = host.split(separator: ".").compactMap { Int($0) }
        guard parts.count == 4 else { return nil }
        let i = parts[1] << 16 | parts[2] << 8 | parts[3]
        return i < hosts.count ? i : nil
    }

    private mutating func dialCandidates(_ h: Int) {
        let state = hosts[h].state
        let budget = state.dialBudget(dialling: hosts[h].dial.inProgress)
        guard budget > 0 else { return }
        let connected = state.listenAddresses
        let due = hosts[h].dial.due(now: now, budget: budget) { connected.contains($0) || state.isBanned($0.host) }
        for address in due {
            guard let to = index(of: address.host) else { continue }
            // The handshake reaches the other side after a round trip and a half.
            schedule(.connect(from: h, to: to, epoch: hosts[h].epoch), at: now + 3 * delay(h, to) + scenario.step)
        }
    }

    private mutating func connect(_ from: Int, _ to: Int) {
        let target = hosts[to].address
        defer { if hosts[from].alive { dialCandidates(from) } }
        guard hosts[from].alive, hosts[to].alive else {
            hosts[from].dial.dialEnded(target, connected: false)
            return
        }
        hosts[from].dial.dialEnded(target, connected: true)
        let c = conns.count
        let sameSite = scenario.siteMap ? hosts[from].site == hosts[to].site : nil
        let inbound = TorrentState.Arrival(remote: PeerAddress(host: hosts[from].address.host, port: 30000 + c % 30000),
                                           outbound: false, peerID: hosts[from].peerID, fast: true, sameSite: sameSite)
        let (acceptedAtB, actionsB) = hosts[to].state.admit(inbound, now: now)
        guard case .admitted(let idAtB) = acceptedAtB else { return perform(to, actionsB) }
        let outbound = TorrentState.Arrival(remote: target, outbound: true, peerID: hosts[to].peerID, fast: true, sameSite: sameSite)
        let (acceptedAtA, actionsA) = hosts[from].state.admit(outbound, now: now)
        conns.append(Conn(a: from, b: to, idAtA: -1, idAtB: idAtB))
        links.append(Link(from: from, to: to, idAtTo: idAtB, open: true))
        links.append(Link(from: to, to: from, idAtFrom: idAtB, open: true))
        readAt += [Self.unread, Self.unread]
        hosts[to].setOut(2 * c + 1, for: idAtB)
        perform(to, actionsB)
        guard case .admitted(let idAtA) = acceptedAtA else {
            perform(from, actionsA)
            return close(c)
        }
        conns[c].idAtA = idAtA
        links[2 * c].idAtFrom = idAtA
        links[2 * c + 1].idAtTo = idAtA
        hosts[from].setOut(2 * c, for: idAtA)
        perform(from, actionsA)
    }

    /// Both ends learn the connection is gone, as NIO's channelInactive tells each shell.
    private mutating func close(_ c: Int) {
        guard conns[c].open else { return }
        conns[c].open = false
        links[2 * c] = Link()
        links[2 * c + 1] = Link()
        readAt[2 * c] = Self.closed
        readAt[2 * c + 1] = Self.closed
        let conn = conns[c]
        for (h, id) in [(conn.a, conn.idAtA), (conn.b, conn.idAtB)] where id >= 0 {
            hosts[h].setOut(nil, for: id)
            if hosts[h].alive { perform(h, hosts[h].state.disconnected(id, now: now)) }
        }
    }

    // MARK: actions

    private mutating func perform(_ h: Int, _ actions: [TorrentState.Action]) {
        for action in actions {
            switch action {
            case .send(.bitfield(let bytes), let id):
                bitfieldKey += 1
                bitfields[bitfieldKey] = bytes
                enqueue(from: h, to: id, Item(bytes: 5 + bytes.count, bitfieldKey: bitfieldKey))
            case .send(.have(let piece), let id) where rules.haveFlushDelay > 0:
                let m = TorrentState.Message.have(piece: piece)
                hold(from: h, to: id, Item(bytes: Self.wireLength(m), message: m))
            case .send(let m, let id):
                enqueue(from: h, to: id, Item(bytes: Self.wireLength(m), message: m))
            case .serve(let req, let id):
                if h == 0 {
                    let block = req.piece * (layout.pieceLength / layout.blockLength) + req.begin / layout.blockLength
                    if originSent.insert(block).inserted { sample.fresh += Double(req.length) }
                }
                enqueue(from: h, to: id, Item(block: req, corrupt: hosts[h].liar))
                hosts[h].uploaded += Int64(req.length)
            case .assemble:
                break
            case .check(let piece, let digests):
                schedule(.checked(h, piece: piece, digests: digests, epoch: hosts[h].epoch), at: now)
            case .finalize:
                perform(h, hosts[h].state.finalized(now: now))
                if hosts[h].doneAt == nil {
                    hosts[h].doneAt = now
                    if !hosts[h].liar { completed += 1 }
                    if scenario.trackerDead {
                        hosts[h].gossip?.announce(torrents: [GossipTorrent(infoHash: infoHash, complete: true)], peerPort: UInt16(Defaults.portRange.lowerBound))
                    } else {
                        announce(h)
                    }
                    if let k = scenario.killSeederAfterCompleteOf, completed >= k, hosts[0].alive { kill(0) }
                }
            case .close(let id, _):
                if let l = hosts[h].out(to: id) { close(l >> 1) }
            case .wake(let after):
                schedule(.timer(.wake, h, hosts[h].epoch), at: now + after)
            case .failed, .log:
                break
            }
        }
    }

    private mutating func kill(_ h: Int) {
        hosts[h].alive = false
        hosts[h].gossip = nil
        for c in hosts[h].conn.values { close(c) }
        hosts[h].conn.removeAll()
        hosts[h].out.removeAll()
        hosts[h].heldLinks.removeAll()
        hosts[h].flushArmed = false
    }

    /// Peer-wire bytes of a message. A request, cancel, reject or block of a unit larger than
    /// 16 KiB (`Scenario.blockLength`) costs what its 16 KiB messages would.
    static func wireLength(_ m: TorrentState.Message) -> Int {
        switch m {
        case .choke, .unchoke, .interested, .notInterested, .haveAll, .haveNone: return 5
        case .have, .suggest, .allowedFast: return 9
        case .bitfield(let b): return 5 + b.count
        case .request(let r), .cancel(let r), .reject(let r): return 17 * wireParts(r.length)
        case .piece(let r): return 13 * wireParts(r.length) + r.length
        }
    }

    static func wireParts(_ length: Int) -> Int { max(1, (length + PieceLayout.blockSize - 1) / PieceLayout.blockSize) }

    private mutating func enqueue(from h: Int, to id: Int, _ item: Item) {
        guard let l = hosts[h].out(to: id) else { return }
        links[l].push(item)
        activate(l)
    }

    /// A have waits as `TorrentSession`'s do: for the next item to the same peer, or for the
    /// host's flush timer, set by the first have that waits.
    private mutating func hold(from h: Int, to id: Int, _ item: Item) {
        guard let l = hosts[h].out(to: id) else { return }
        if links[l].held == 0 { hosts[h].heldLinks.append(l) }
        links[l].hold(item)
        guard !hosts[h].flushArmed else { return }
        hosts[h].flushArmed = true
        schedule(.timer(.haveFlush, h, hosts[h].epoch), at: now + rules.haveFlushDelay)
    }

    private mutating func flushHeld(_ l: Int) {
        links[l].release()
        activate(l)
    }

    private mutating func activate(_ l: Int) {
        guard !links[l].active else { return }
        links[l].active = true
        network.active.append(l)
    }

    // MARK: network

    /// Moves one step of bytes: two rounds of water-filling along each busy link's path
    /// (`NetworkScratch.fillRound`), so an uplink's share that a downlink or a site's uplink
    /// could not take goes to its other connections; max-min fair to within a few percent.
    /// Items that finish arrive a step plus the latency later.
    private mutating func transmit() {
        let dt = Double(scenario.step) / 1e9
        let up = min(scenario.rate, scenario.upCap > 0 ? Double(scenario.upCap) * Self.frameOverhead : .infinity) * dt
        let down = min(scenario.rate, scenario.downCap > 0 ? Double(scenario.downCap) * Self.frameOverhead : .infinity) * dt
        network.prepare(links: &links, hosts: hosts.count, up: up, down: down,
                        sites: scenario.sites, site: scenario.siteRate * dt, siteOf: siteOf, overhead: Self.frameOverhead)
        guard !network.active.isEmpty else { return }
        for _ in 0..<2 { network.fillRound() }
        var done: [Item] = [], sent: [BlockRequest] = []
        batch.sent.removeAll(keepingCapacity: true)
        batch.keys.removeAll(keepingCapacity: true)
        for (k, l) in network.active.enumerated() where network.grant[k] > 0 {
            let sender = links[l].from
            let cross = siteOf.map { $0[sender] != $0[links[l].to] } ?? false
            if sender == 0 { sample.origin += network.grant[k] } else { sample.peers += network.grant[k] }
            hostSecond[sender].up += network.grant[k]
            hostSecond[links[l].to].down += network.grant[k]
            if cross {
                siteBytes[hosts[sender].site].out += network.grant[k]
                siteBytes[hosts[links[l].to].site].in += network.grant[k]
            }
            links[l].transmit(wireBytes: network.grant[k], overhead: Self.frameOverhead,
                              kernelBuffer: sender == 0 ? Self.kernelBuffer.seed : Self.kernelBuffer.peer,
                              done: &done, sent: &sent)
            let at = now + scenario.step + scenario.latency + (cross ? scenario.siteLatency : 0)
            for item in done { arrivals[cross ? 1 : 0].push((l, links[l].to, links[l].idAtTo, item), at: at) }
            for req in sent {
                batch.sent.append((l, req))
                batch.keys.append(sender)
            }
        }
        // Each sender hears of its writes the kernel took, one host at a time (as arrivals).
        guard !batch.sent.isEmpty else { return }
        var scratch = batch
        batch = StepScratch()
        scratch.groups.group(scratch.keys, hosts: hosts.count)
        for h in scratch.groups.order {
            for k in scratch.groups.range(of: h) {
                let (l, req) = scratch.sent[scratch.groups.index[k]]
                guard links[l].open else { continue }
                perform(h, hosts[h].state.blockSent(req, to: links[l].idAtFrom, sent: true, now: now))
            }
        }
        scratch.groups.reset()
        batch = scratch
    }

    // MARK: report

    private func percentiles(_ values: [Double]) -> [Double] {
        let v = values.sorted()
        return v.isEmpty ? [0, 0, 0] : [0.1, 0.5, 0.9].map { v[Int(Double(v.count - 1) * $0)] }
    }

    private mutating func takeSample() {
        let capacity = scenario.rate
        let peers = Double(max(1, hosts.count - 1))
        let active = hosts.dropFirst().filter { $0.alive && $0.doneAt == nil }
        let downloading = Double(max(1, active.count))
        func mean(_ f: (PeerState) -> Int) -> Double {
            Double(active.reduce(0) { sum, h in sum + h.state.peers.map(f).reduce(0, +) }) / downloading
        }
        timeline.append(Simulation.Sample(second: Int(now / 1_000_000_000), complete: completed,
                               originUp: sample.origin / capacity, originFresh: sample.fresh * Self.frameOverhead / capacity, peersUp: sample.peers / capacity / peers,
                               peersDown: (sample.origin + sample.peers) / capacity / downloading,
                               unchoked: mean { !$0.amChoking && $0.peerInterested ? 1 : 0 },
                               queued: mean { $0.incoming.count }, outstanding: mean { $0.outstanding.count },
                               upPercentiles: percentiles(active.map { hostSecond[$0.index].up / capacity }),
                               downPercentiles: percentiles(active.map { hostSecond[$0.index].down / capacity })))
        sample = (0, 0, 0)
        for i in hostSecond.indices { hostSecond[i] = (0, 0) }
    }

    func stragglers() -> [String] {
        hosts.filter { $0.alive && $0.doneAt == nil }.map { h in
            let p = h.state.peers.values
            return "host \(h.index): \(h.state.have.setCount)/\(layout.pieceCount) pieces, \(p.count) peers "
                + "(\(p.filter(\.isSeed).count) seeds, \(p.filter { !$0.peerChoking }.count) unchoking us, "
                + "\(p.filter(\.amInterested).count) interesting, \(p.reduce(0) { $0 + $1.outstanding.count }) requests out), "
                + "\(h.dial.count) addresses known, \(h.dial.inProgress) dialling, unchecked \(h.state.uncheckedBytes)"
        }
    }

    private func report() -> Simulation.Report {
        let peers = hosts.dropFirst()
        let honest = peers.filter { !$0.liar }
        let times = honest.map { $0.doneAt.map { Double($0) / 1e9 } ?? .infinity }.sorted()
        let all = !times.contains(.infinity)
        func percentile(_ p: Double) -> Double? {
            guard !times.isEmpty else { return nil }
            let k = Double(times.count - 1) * p / 100
            let lo = Int(k.rounded(.down)), hi = Int(k.rounded(.up))
            if times[hi] == .infinity { return nil }
            return times[lo] + (times[hi] - times[lo]) * (k - Double(lo))
        }
        return Simulation.Report(hosts: scenario.hosts, fileBytes: scenario.fileBytes, makespan: all ? times.last : nil,
                      median: percentile(50), p90: percentile(90), tMin: scenario.tMin,
                      seederUploadXFile: Double(hosts[0].uploaded) / Double(scenario.fileBytes),
                      allComplete: all, completeHosts: honest.filter { $0.doneAt != nil }.count, honestPeers: honest.count,
                      virtualSeconds: Double(now) / 1e9,
                      siteInXFile: scenario.sites > 1 ? siteBytes.map { $0.in / Double(scenario.fileBytes) } : [],
                      siteOutXFile: scenario.sites > 1 ? siteBytes.map { $0.out / Double(scenario.fileBytes) } : [],
                      crashes: crashes)
    }
}

/// Events in time order; equal times in the order they were scheduled.
struct EventQueue {
    private var heap: [(time: UInt64, seq: UInt64, event: Fleet.Event)] = []
    private var seq: UInt64 = 0

    mutating func push(_ e: Fleet.Event, at t: UInt64) {
        seq += 1
        heap.append((t, seq, e))
        var i = heap.count - 1
        while i > 0 {
            let p = (i - 1) / 2
            guard less(i, p) else { break }
            heap.swapAt(i, p)
            i = p
        }
    }

    func peek() -> (UInt64, Fleet.Event)? { heap.first.map { ($0.time, $0.event) } }

    mutating func pop() -> Fleet.Event? {
        guard !heap.isEmpty else { return nil }
        heap.swapAt(0, heap.count - 1)
        let top = heap.removeLast()
        var i = 0
        while true {
            let l = 2 * i + 1, r = l + 1
            var m = i
            if l < heap.count, less(l, m) { m = l }
            if r < heap.count, less(r, m) { m = r }
            guard m != i else { break }
            heap.swapAt(i, m)
            i = m
        }
        return top.event
    }

    private func less(_ a: Int, _ b: Int) -> Bool { (heap[a].time, heap[a].seq) < (heap[b].time, heap[b].seq) }
}

extension String {
    func leftPadded(to n: Int) -> String { count >= n ? String(suffix(n)) : String(repeating: "0", count: n - count) + self }
}

/// Items of one step grouped by host (a stable counting sort): hosts in the order of their
/// first item, each host's items in their own order. Kept between steps so that a step
/// allocates nothing.
struct HostGroups {
    /// The hosts that have items, in the order of their first item.
    private(set) var order: [Int] = []
    /// Indices of the items, grouped by host (`range(of:)`).
    private(set) var index: [Int] = []
    private var count: [Int] = []
    private var start: [Int] = []
    private var cursor: [Int] = []

    /// Groups the items whose hosts are `keys`; `reset` must follow before the next call.
    mutating func group(_ keys: [Int], hosts: Int) {
        if count.count < hosts {
            count = Array(repeating: 0, count: hosts)
            start = count
            cursor = count
        }
        for h in keys {
            if count[h] == 0 { order.append(h) }
            count[h] += 1
        }
        var next = 0
        for h in order {
            start[h] = next
            cursor[h] = next
            next += count[h]
        }
        index.removeAll(keepingCapacity: true)
        index.append(contentsOf: repeatElement(0, count: keys.count))
        for (k, h) in keys.enumerated() {
            index[cursor[h]] = k
            cursor[h] += 1
        }
    }

    func range(of h: Int) -> Range<Int> { start[h]..<(start[h] + count[h]) }

    mutating func reset() {
        for h in order { count[h] = 0 }
        order.removeAll(keepingCapacity: true)
    }
}
