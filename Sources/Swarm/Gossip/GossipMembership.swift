import BitTorrent
import Values

/// Gossip membership as a pure state machine (after swift-cluster-membership's `SWIM.Instance`):
/// no sockets, no clock, no global randomness. Inputs are `tick`, `receive`, `announce` and
/// `leave`; outputs are `GossipDirective`s for the runtime to carry out.
///
/// Failure detection: each member carries the time it was last heard of. First-hand messages
/// set it to now; second-hand samples carry an age, which is only trusted to be older (plus a
/// hop penalty). So every node's view of a member ages from the member's own last datagram and
/// a dead member is removed everywhere at most `deadAfter` (plus one tick) after it fell
/// silent, while suspicion and incarnation numbers follow SWIM: suspect overrides alive at
/// the same incarnation, and a member told it is suspected raises its incarnation to refute.
/// Addresses outside `scope` are never learned, answered or contacted.
///
/// Its random choices (samples, probe order) come from a seeded `SplitMix64`: a simulation
/// replays them, and a concrete type lets the compiler specialize the member tables (generic
/// over the generator, every table lookup went through runtime metadata, a tenth of a
/// gossip-only simulation).
public struct GossipMembership: Sendable {
    public let id: GossipMemberID
    public let gossipEndpoint: IPEndpoint
    public let scope: CIDR
    public let settings: GossipMembershipSettings
    public let broadcastEnabled: Bool
    public let seeds: [IPEndpoint]
    public private(set) var incarnation: UInt32 = 0
    public internal(set) var stats = GossipMembershipStats()

    private(set) var peerAddress: IPAddress
    private(set) var peerPort: UInt16 = 0
    private(set) var torrents: [GossipTorrent] = []
    var sequence: UInt64 = 0
    var rng: SplitMix64

    struct Record: Sendable {
        var member: GossipMember
        var lastHeard: UInt64
        var lastSequence: UInt64?
        /// It has spoken to us first-hand since it was (re)learned, so we know its torrents.
        var direct: Bool
        /// Direct probing of a suspect: when it began, the last ping, how many were sent.
        var probeStarted: UInt64? = nil
        var lastProbe: UInt64 = 0
        var probes = 0
    }

    struct Tombstone: Sendable {
        var incarnation: UInt32
        /// Second-hand news newer than this brings the member back (it spoke after all).
        var lastHeard: UInt64
        var lastSequence: UInt64?
        var expires: UInt64
        /// Left cleanly: only a first-hand message or a higher incarnation brings it back.
        var left: Bool
        /// Declared dead by a failed probe (ours or gossiped): when, and until when we gossip it.
        var verdictAt: UInt64? = nil
        var gossipUntil: UInt64 = 0
    }

    /// Add members with `store`, drop them with `remove`: both keep `ids` in step.
    var records: [GossipMemberID: Record] = [:]
    /// `records`' keys, sorted: random choices draw from it so a seeded run is reproducible
    /// (dictionary order is not). Kept sorted by insertion, not by sorting the keys on each
    /// change: at 1,000 members the sort was a fifth of a simulated fleet's time.
    var ids: [GossipMemberID] = []
    /// Two views of `records` kept in step with it, so that the per-datagram questions read no
    /// `Record` (a copy counts the references in its member on every read): who is at an
    /// endpoint, and (beside `ids`, index for index) when each member was last heard of, for
    /// `freshestIDs`. Scanning the table for both was a fifth of a 1,000-host gossip-only
    /// simulation.
    var byEndpoint: [IPEndpoint: GossipMemberID] = [:]
    var heardAt: [UInt64] = []
    var tombstones: [GossipMemberID: Tombstone] = [:]
    var pendingProbes: [GossipMemberID] = []
    /// Members whose ping we could not answer for the rate cap: answered as tokens return,
    /// since the answer is how a pinger learns our torrents.
    var owedAcks: [GossipMemberID] = []
    private var nextRound: UInt64
    private var announceNow = false
    private var nextJoin: UInt64
    private var nextRejoin: UInt64
    var tokens: Double
    var lastRefill: UInt64
    /// What lets `expire` skip its walk of the table: no member is suspect or being probed
    /// (`unsettled` false), and none of the others was last heard of before `calmSince`, so
    /// none can time out before `calmSince` plus the suspect timeout. Walked on every tick, a
    /// table of 1,000 members was half of a gossip-only fleet's time.
    var calmSince = UInt64.max
    var unsettled = false

    /// - Parameters:
    ///   - gossipEndpoint: our own bound gossip address (never contacted; used to ignore ourselves).
    ///   - peerAddress: the peer-wire address we advertise; nil advertises `gossipEndpoint.ip`.
    ///   - seeds: gossip endpoints to ping until we know members (out-of-scope ones are ignored).
    public init(id: GossipMemberID, gossipEndpoint: IPEndpoint, peerAddress: IPAddress? = nil, scope: CIDR,
                seeds: [IPEndpoint] = [], broadcast: Bool = false,
                settings: GossipMembershipSettings = GossipMembershipSettings(), rng: SplitMix64, now: GossipTime) {
        self.id = id
        self.gossipEndpoint = gossipEndpoint
        self.peerAddress = peerAddress ?? gossipEndpoint.ip
        self.scope = scope
        self.settings = settings
        self.broadcastEnabled = broadcast && scope.isIPv4
        self.rng = rng
        var kept: [IPEndpoint] = []
        var outside = 0
        for s in seeds where s != gossipEndpoint && !kept.contains(s) {
            if scope.contains(s.ip) { kept.append(s) } else { outside += 1 }
        }
        self.seeds = kept
        stats.seedsOutOfScope = outside
        nextRound = now.monotonicNanos
        nextJoin = now.monotonicNanos
        nextRejoin = now.monotonicNanos &+ settings.rejoinInterval
        tokens = settings.sendBurst
        lastRefill = now.monotonicNanos
    }

    // MARK: Queries

    /// Members currently alive or suspect, sorted by id.
    public var members: [GossipMember] { ids.map { records[$0]!.member } }

    public var memberCount: Int { records.count }

    public func member(_ id: GossipMemberID) -> GossipMember? { records[id]?.member }

    /// The dead timeout in force: `deadAfter`, or longer once the cluster is so large that news of
    /// a given member reaches us less than about twice a second. Every node receives roughly
    /// 2 x fanout messages per round, each naming `sample` members out of `memberCount`, so news
    /// of one member arrives at rate r = 2 x fanout x sample / (interval x members); waiting
    /// 12 / r makes a false death (no news at all for that long) a ~1e-5 event. With the
    /// defaults this takes over above about 100 members: ~12 s at 200, ~60 s at 1000.
    public var effectiveDeadAfter: UInt64 {
        guard settings.scaleTimeoutsWithSize, records.count > 0 else { return settings.deadAfter }
        let sample = Double(GossipCodec.memberCapacity(torrents: torrents.count))
        let perSecond = 2 * Double(settings.fanout) * sample / (Double(settings.gossipInterval) / 1e9) / Double(records.count)
        guard perSecond > 0 else { return settings.deadAfter }
        return max(settings.deadAfter, UInt64(min(12 / perSecond, 3600) * 1e9))
    }

    /// The suspect timeout in force: `suspectAfter`, scaled like `effectiveDeadAfter`.
    public var effectiveSuspectAfter: UInt64 {
        let dead = effectiveDeadAfter
        return dead == settings.deadAfter ? settings.suspectAfter : max(settings.suspectAfter, dead / 2)
    }

    /// Nanoseconds since we last heard of `id`, first- or second-hand (nil if unknown).
    public func silence(of id: GossipMemberID, now: GossipTime) -> UInt64? {
        guard let r = records[id] else { return nil }
        return now.monotonicNanos > r.lastHeard ? now.monotonicNanos - r.lastHeard : 0
    }

    /// Peer-wire addresses of members (alive or suspect) that serve `infoHash`, sorted for stability.
    public func peers(for infoHash: InfoHash) -> [GossipPeer] {
        var out: [GossipPeer] = []
        for r in records.values where r.member.peerPort != 0 {
            if let t = r.member.torrents.first(where: { $0.infoHash == infoHash }) {
                out.append(GossipPeer(address: r.member.peerAddress, port: r.member.peerPort, complete: t.complete))
            }
        }
        return out.sorted { ($0.address, $0.port) < ($1.address, $1.port) }
    }

    // MARK: Inputs

    /// Sets what we serve; announced from the next message on. At most `GossipMessage.maxTorrents`.
    public mutating func announce(torrents: [GossipTorrent], peerPort: UInt16) {
        var seen = Set<InfoHash>()
        let unique = torrents.filter { seen.insert($0.infoHash).inserted }
        stats.torrentsTruncated = max(0, unique.count - GossipMessage.maxTorrents)
        let list = Array(unique.prefix(GossipMessage.maxTorrents))
        // A change (say, a download just completed) goes out at the next tick, not the next round.
        if list != self.torrents || peerPort != self.peerPort { announceNow = true }
        self.torrents = list
        self.peerPort = peerPort
    }

    /// Advances timers: suspicion and expiry, the gossip round, probes of new members, joins.
    /// Call it often (every 100 ms or so); it decides itself when a round is due.
    public mutating func tick(now: GossipTime) -> [GossipDirective] {
        let t = now.monotonicNanos
        refill(t)
        var out: [GossipDirective] = []
        expire(now: now, into: &out)

        if t >= nextRound || (announceNow && !records.isEmpty) {
            announceNow = false
            let spread = Double(settings.gossipInterval) * settings.jitter
            let offset = spread > 0 ? Double.random(in: -spread...spread, using: &rng) : 0
            nextRound = t &+ UInt64(max(0, Double(settings.gossipInterval) + offset))
            // Members that have not yet spoken to us first (their probe or our answer was lost),
            // then random ones.
            var candidates: [GossipMemberID] = []
            for mid in ids where candidates.count < settings.fanout && !records[mid]!.direct { candidates.append(mid) }
            for mid in randomIDs(settings.fanout) where candidates.count < settings.fanout && !candidates.contains(mid) {
                candidates.append(mid)
            }
            for mid in candidates {
                send(.ping, to: records[mid]!.member.gossipEndpoint, now: now, into: &out)
            }
            // One recently dead member per round: if it was only cut off, this brings it back.
            if let ghost = tombstones.filter({ !$0.value.left }).keys.sorted().randomElement(using: &rng),
               let endpoint = lastEndpoint[ghost] {
                send(.ping, to: endpoint, now: now, into: &out)
            }
        }

        while let mid = owedAcks.first, tokens >= 1 {
            owedAcks.removeFirst()
            if let r = records[mid] { send(.ack, to: r.member.gossipEndpoint, now: now, into: &out) }
        }
        // In random order: nodes that learn the same sample (a seed's freshest members) would
        // otherwise all probe the same members first while the rest of a joining fleet waits.
        while !pendingProbes.isEmpty, tokens >= 1 {
            let mid = pendingProbes.remove(at: Int.random(in: 0..<pendingProbes.count, using: &rng))
            if let r = records[mid], !r.direct {
                send(.ping, to: r.member.gossipEndpoint, now: now, into: &out)
            }
        }

        if records.isEmpty {
            if t >= nextJoin {
                nextJoin = t &+ settings.joinInterval
                for s in seeds { send(.ping, to: s, now: now, into: &out) }
                if broadcastEnabled, take() { out.append(.broadcast(makeMessage(.ping, now: now))) }
            }
        } else if t >= nextRejoin {
            nextRejoin = t &+ settings.rejoinInterval
            let known = Set(records.values.map(\.member.gossipEndpoint))
            for s in seeds where !known.contains(s) { send(.ping, to: s, now: now, into: &out) }
        }
        return out
    }

    /// Judges and merges a message whose MAC, version and size the runtime has already checked.
    /// `source` is the datagram's source address.
    public mutating func receive(_ m: GossipMessage, from source: IPEndpoint, now: GossipTime) -> GossipReceiveOutcome {
        let t = now.monotonicNanos
        guard m.sender != id else { return GossipReceiveOutcome(result: .fromSelf, directives: []) }
        guard scope.contains(source.ip), source.port != 0,
              m.peerAddress.isUnspecified || scope.contains(m.peerAddress) else {
            return GossipReceiveOutcome(result: .outOfScope, directives: [])
        }
        let skew = m.timestampMillis > now.unixMillis ? m.timestampMillis - now.unixMillis : now.unixMillis - m.timestampMillis
        guard skew <= settings.replayWindowMillis else { return GossipReceiveOutcome(result: .stale, directives: []) }
        let lastSeq = records[m.sender]?.lastSequence ?? tombstones[m.sender]?.lastSequence
        if let last = lastSeq, m.sequence <= last { return GossipReceiveOutcome(result: .replayed, directives: []) }

        var out: [GossipDirective] = []
        if m.kind == .leave {
            if records[m.sender] != nil {
                remove(m.sender, now: t, left: true, into: &out)
                tombstones[m.sender]?.lastSequence = m.sequence
            } else if tombstones[m.sender] != nil {
                tombstones[m.sender]?.lastSequence = m.sequence
                tombstones[m.sender]?.left = true
            }
            return GossipReceiveOutcome(result: .accepted, directives: out)
        }

        if records[m.sender] == nil, records.count >= settings.maxMembers {
            // A node that speaks to us first-hand is alive, and joining through us it may know
            // nobody else: refused, every host after the first `maxMembers` to join through a
            // seed learned of no one. It takes the place of the member heard from longest ago.
            evictStalest(into: &out)
        }
        // A new id at a known endpoint is that node restarted: its old self is gone for good.
        if let oid = byEndpoint[source], oid != m.sender {
            remove(oid, now: t, left: true, into: &out)
        }
        let peerIP = m.peerAddress.isUnspecified ? source.ip : m.peerAddress
        let previous = records[m.sender]?.member
        var member = previous ?? GossipMember(id: m.sender, gossipEndpoint: source, peerAddress: peerIP,
                                              peerPort: m.peerPort, status: .alive, incarnation: m.incarnation,
                                              torrents: [])
        member.gossipEndpoint = source
        member.peerAddress = peerIP
        member.peerPort = m.peerPort
        member.status = .alive // first-hand contact refutes any suspicion we held
        member.incarnation = max(member.incarnation, m.incarnation)
        member.torrents = Array(m.torrents.prefix(GossipMessage.maxTorrents))
        store(Record(member: member, lastHeard: t, lastSequence: m.sequence, direct: true), for: m.sender)
        tombstones[m.sender] = nil
        lastEndpoint[m.sender] = source
        if let previous {
            if previous != member { out.append(.memberUpdated(member)) }
        } else {
            out.append(.memberAdded(member))
        }
        if member.peerPort != 0 {
            let moved = previous.map { $0.peerAddress != member.peerAddress || $0.peerPort != member.peerPort } ?? true
            for tor in member.torrents {
                let before = previous?.torrents.first { $0.infoHash == tor.infoHash }
                if moved || before == nil || before!.complete != tor.complete {
                    out.append(.peerDiscovered(tor.infoHash, GossipPeer(address: peerIP, port: member.peerPort,
                                                                        complete: tor.complete)))
                }
            }
        }

        for e in m.members { merge(e, now: t, into: &out) }

        if m.kind == .ping, !send(.ack, to: source, now: now, into: &out),
           !owedAcks.contains(m.sender), owedAcks.count < settings.maxPendingProbes {
            owedAcks.append(m.sender)
        }
        return GossipReceiveOutcome(result: .accepted, directives: out)
    }

    /// Says goodbye: a `leave` to every member, within the rate cap, so they forget us at once.
    public mutating func leave(now: GossipTime) -> [GossipDirective] {
        refill(now.monotonicNanos)
        var out: [GossipDirective] = []
        for mid in ids { send(.leave, to: records[mid]!.member.gossipEndpoint, now: now, into: &out) }
        return out
    }

    // MARK: Internals

    /// Last gossip endpoint of members, kept with tombstones so a ghost can be pinged.
    var lastEndpoint: [GossipMemberID: IPEndpoint] = [:]

    private mutating func merge(_ e: GossipMemberEntry, now t: UInt64, into out: inout [GossipDirective]) {
        if e.id == id {
            // SWIM refutation: someone suspects us at our current incarnation; outbid it.
            // (An incarnation at the ceiling cannot be outbid; we stay put rather than wrap.)
            if e.status != .alive, e.incarnation >= incarnation, e.incarnation < UInt32.max {
                incarnation = e.incarnation + 1
                stats.refutations += 1
                // Speak up now: our fresh first-hand contact is what clears the suspicion.
                nextRound = min(nextRound, t)
            }
            return
        }
        guard !e.address.isUnspecified, e.gossipPort != 0 else { stats.malformedEntries += 1; return }
        guard scope.contains(e.address) else { stats.outOfScopeEntries += 1; return }
        let ageNanos = (UInt64(e.ageMillis) + settings.hopPenaltyMillis) * 1_000_000
        let heard = t > ageNanos ? t - ageNanos : 0
        let endpoint = IPEndpoint(ip: e.address, port: e.gossipPort)

        if e.status == .dead, let r = records[e.id] {
            // A gossiped verdict: the reporter's probes went unanswered `age` ago. News of the
            // member newer than when that probing began outweighs it (the member will refute);
            // otherwise we drop the member too and pass the verdict on.
            guard e.incarnation >= r.member.incarnation else { return }
            let verdictAt = heard
            let probing = settings.probeTimeout * UInt64(max(1, settings.probeAttempts))
            let revivesAfter = verdictAt > probing ? verdictAt - probing : 0
            guard r.lastHeard <= revivesAfter else { return }
            stats.verdictsAccepted += 1
            remove(e.id, now: t, left: false, verdict: (at: verdictAt, revivesAfter: revivesAfter),
                   incarnation: e.incarnation, into: &out)
            return
        }
        if records[e.id] != nil {
            // In place: a copy of the record would count its member's references twice over.
            if let changed = Self.hear(e, at: heard, in: &records[e.id]!) { out.append(.memberUpdated(changed)) }
            let i = idIndex(e.id)
            heardAt[i] = max(heardAt[i], heard)
            return
        }

        guard e.status != .dead, t - min(t, heard) < effectiveDeadAfter else { return }
        if let tomb = tombstones[e.id] {
            let fresher = !tomb.left && heard > tomb.lastHeard
            guard e.incarnation > tomb.incarnation || fresher else { return }
        }
        guard endpoint != gossipEndpoint, byEndpoint[endpoint] == nil else { return }
        guard records.count < settings.maxMembers else { stats.tableFull += 1; return }
        let m = GossipMember(id: e.id, gossipEndpoint: endpoint, peerAddress: e.address, peerPort: e.peerPort,
                             status: t - min(t, heard) < effectiveSuspectAfter ? .alive : .suspect,
                             incarnation: e.incarnation, torrents: [])
        store(Record(member: m, lastHeard: heard, lastSequence: tombstones[e.id]?.lastSequence, direct: false), for: e.id)
        tombstones[e.id] = nil
        lastEndpoint[e.id] = endpoint
        out.append(.memberAdded(m))
        // Its torrents only come first-hand: ask it soon rather than waiting for random rounds.
        if pendingProbes.count < settings.maxPendingProbes { pendingProbes.append(e.id) }
    }

    /// Second-hand news of a known member. Status is never taken from hearsay: suspect and dead
    /// are each node's own reading of the member's silence. Spreading them (SWIM's "suspect
    /// beats alive") let one node's late news contaminate everyone until the member refuted;
    /// ages make that unnecessary. A higher incarnation is the member's refutation: believe it
    /// is alive. Returns the member if it changed.
    private static func hear(_ e: GossipMemberEntry, at heard: UInt64, in r: inout Record) -> GossipMember? {
        r.lastHeard = max(r.lastHeard, heard)
        guard e.incarnation > r.member.incarnation else { return nil }
        r.member.incarnation = e.incarnation
        if e.status == .alive { r.member.status = .alive }
        return r.member
    }

    private mutating func store(_ record: Record, for id: GossipMemberID) {
        calmSince = min(calmSince, record.lastHeard)
        if record.member.status != .alive || record.probeStarted != nil { unsettled = true }
        let endpoint = record.member.gossipEndpoint
        // One member per endpoint: `receive` drops whoever was at the sender's before it
        // stores the sender, and `merge` learns no one at an endpoint in use.
        assert(byEndpoint[endpoint] == nil || byEndpoint[endpoint] == id, "two members at \(endpoint)")
        let at = idIndex(id)
        if let previous = records.updateValue(record, forKey: id) {
            if previous.member.gossipEndpoint != endpoint { byEndpoint[previous.member.gossipEndpoint] = nil }
            heardAt[at] = record.lastHeard
        } else {
            ids.insert(id, at: at)
            heardAt.insert(record.lastHeard, at: at)
        }
        byEndpoint[endpoint] = id
    }

    /// Where `id` is or would go in `ids`.
    func idIndex(_ id: GossipMemberID) -> Int {
        var lo = 0, hi = ids.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if ids[mid] < id { lo = mid + 1 } else { hi = mid }
        }
        return lo
    }
}

extension GossipMembership: CustomStringConvertible {
    public var description: String {
        "GossipMembership(id: \(String(id, radix: 16)), \(gossipEndpoint), \(records.count) members, incarnation \(incarnation))"
    }
}
