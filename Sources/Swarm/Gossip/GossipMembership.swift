import BitTorrent
import Values

/// Both clocks the membership needs, passed in by the caller so tests can drive time.
public struct GossipTime: Sendable, Hashable {
    /// A monotonic clock in nanoseconds (timers, suspicion, expiry).
    public var monotonicNanos: UInt64
    /// Wall-clock milliseconds since the Unix epoch (message timestamps, the replay window).
    public var unixMillis: UInt64

    public init(monotonicNanos: UInt64, unixMillis: UInt64) {
        self.monotonicNanos = monotonicNanos
        self.unixMillis = unixMillis
    }
}

/// Timers and limits of the membership protocol. Durations are nanoseconds.
public struct GossipMembershipSettings: Sendable, Hashable {
    /// One gossip round: ping `fanout` random members.
    public var gossipInterval: UInt64 = 1_000_000_000
    public var fanout = 3
    /// A member not heard of (first- or second-hand) for this long becomes suspect, and we
    /// ping it directly.
    public var suspectAfter: UInt64 = 3_000_000_000
    /// A suspect that answers none of `probeAttempts` pings, `probeTimeout` apart, is declared
    /// dead by us, and the verdict is gossiped so others drop it too.
    public var probeTimeout: UInt64 = 1_000_000_000
    public var probeAttempts = 2
    /// How long a node keeps gossiping a death verdict it made or accepted.
    public var verdictTTL: UInt64 = 3_000_000_000
    /// Verdicts per message at most (they go first; the rest of the sample is members).
    public var maxVerdictsPerMessage = 8
    /// Hard limit: a member silent this long is removed even if no probe could be sent. The
    /// worst-case "forgotten" bound.
    public var deadAfter: UInt64 = 8_000_000_000
    /// Lengthen both timeouts in large clusters, where each member's news reaches a node less
    /// often (see `GossipMembership.effectiveDeadAfter`); off, large clusters see false deaths.
    public var scaleTimeoutsWithSize = true
    /// How long a removed member's id, incarnation and last sequence are remembered, so stale
    /// hearsay cannot resurrect it and its old datagrams cannot be replayed. Must exceed the replay window.
    public var tombstoneTTL: UInt64 = 60_000_000_000
    /// While the table is empty: ping every seed (and broadcast) this often.
    public var joinInterval: UInt64 = 2_000_000_000
    /// Even with members, ping seeds that are not members this often (heals partitions).
    public var rejoinInterval: UInt64 = 10_000_000_000
    /// Outgoing datagrams per second (token bucket) and the bucket's burst.
    public var sendRate: Double = 20
    public var sendBurst: Double = 40
    public var maxMembers = 1024
    public var maxTombstones = 1024
    /// Members probed directly after being learned second-hand (to learn their torrents); bounded queue.
    public var maxPendingProbes = 256
    /// Accept timestamps within this many milliseconds of our wall clock, either way.
    public var replayWindowMillis: UInt64 = 30_000
    /// Added to every second-hand age, so hearsay cycling between nodes only ever grows older
    /// and cannot keep a dead member alive (it outweighs LAN transit time).
    public var hopPenaltyMillis: UInt64 = 50
    /// Random jitter of each round, as a fraction of `gossipInterval`, so nodes started together desynchronise.
    public var jitter: Double = 0.1

    public init() {}
}

/// A member as the engine sees it.
public struct GossipMember: Sendable, Hashable {
    public var id: GossipMemberID
    /// Where its gossip datagrams come from and where we send ours.
    public var gossipEndpoint: IPEndpoint
    /// Its peer-wire address and TCP port (port 0: serves nothing).
    public var peerAddress: IPAddress
    public var peerPort: UInt16
    public var status: GossipMemberStatus
    public var incarnation: UInt32
    /// Torrents it told us first-hand it serves (empty until it has spoken to us directly).
    public var torrents: [GossipTorrent]
}

/// A candidate peer for one torrent.
public struct GossipPeer: Sendable, Hashable {
    public var address: IPAddress
    public var port: UInt16
    public var complete: Bool

    public init(address: IPAddress, port: UInt16, complete: Bool) {
        self.address = address
        self.port = port
        self.complete = complete
    }
}

/// What the membership asks its runtime to do, or tells it happened.
public enum GossipDirective: Sendable, Hashable {
    /// Seal and send this message to this endpoint.
    case send(GossipMessage, to: IPEndpoint)
    /// Seal and send this message to the scope's broadcast address on the gossip port.
    case broadcast(GossipMessage)
    case memberAdded(GossipMember)
    case memberUpdated(GossipMember)
    case memberRemoved(GossipMember)
    /// A member serves `infoHash` at `peer` (new, or its address or completeness changed).
    case peerDiscovered(InfoHash, GossipPeer)
}

/// What became of a received message.
public enum GossipReceiveResult: String, Sendable, Hashable {
    case accepted
    /// Its source or claimed peer address lies outside the scope.
    case outOfScope = "out_of_scope"
    /// Its sequence number is not above the last one seen from that sender.
    case replayed
    /// Its timestamp is outside the replay window.
    case stale
    /// Our own message (broadcast echo).
    case fromSelf = "self"
}

/// Counters a runtime may export.
public struct GossipMembershipStats: Sendable, Hashable {
    public init() {}

    /// Sample entries dropped because their address is outside the scope.
    public var outOfScopeEntries = 0
    /// Sample entries dropped for a zero port or unspecified address.
    public var malformedEntries = 0
    /// Members learned second-hand and not kept because the table was full.
    public var tableFull = 0
    /// Members dropped to make room for a new one that spoke to us first-hand.
    public var evicted = 0
    /// Sends skipped because the rate cap was reached.
    public var rateLimited = 0
    /// Times we raised our incarnation to refute a suspicion.
    public var refutations = 0
    /// Seeds ignored at start because they lie outside the scope.
    public var seedsOutOfScope = 0
    /// Torrents beyond `GossipMessage.maxTorrents` left out of our announcements.
    public var torrentsTruncated = 0
    /// Death verdicts we made after unanswered probes, and gossiped ones we accepted.
    public var verdictsMade = 0
    public var verdictsAccepted = 0
}

/// The outcome of `receive`: how the message was judged, and what to do.
public struct GossipReceiveOutcome: Sendable {
    public var result: GossipReceiveResult
    public var directives: [GossipDirective]
}

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
public struct GossipMembership<RNG: RandomNumberGenerator & Sendable>: Sendable {
    public let id: GossipMemberID
    public let gossipEndpoint: IPEndpoint
    public let scope: CIDR
    public let settings: GossipMembershipSettings
    public let broadcastEnabled: Bool
    public let seeds: [IPEndpoint]
    public private(set) var incarnation: UInt32 = 0
    public private(set) var stats = GossipMembershipStats()

    private var peerAddress: IPAddress
    private var peerPort: UInt16 = 0
    private var torrents: [GossipTorrent] = []
    private var sequence: UInt64 = 0
    private var rng: RNG

    private struct Record: Sendable {
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

    private struct Tombstone: Sendable {
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
    private var records: [GossipMemberID: Record] = [:]
    /// `records`' keys, sorted: random choices draw from it so a seeded run is reproducible
    /// (dictionary order is not). Kept sorted by insertion, not by sorting the keys on each
    /// change: at 1,000 members the sort was a fifth of a simulated fleet's time.
    private var ids: [GossipMemberID] = []
    private var tombstones: [GossipMemberID: Tombstone] = [:]
    private var pendingProbes: [GossipMemberID] = []
    /// Members whose ping we could not answer for the rate cap: answered as tokens return,
    /// since the answer is how a pinger learns our torrents.
    private var owedAcks: [GossipMemberID] = []
    private var nextRound: UInt64
    private var announceNow = false
    private var nextJoin: UInt64
    private var nextRejoin: UInt64
    private var tokens: Double
    private var lastRefill: UInt64
    /// What lets `expire` skip its walk of the table: no member is suspect or being probed
    /// (`unsettled` false), and none of the others was last heard of before `calmSince`, so
    /// none can time out before `calmSince` plus the suspect timeout. Walked on every tick, a
    /// table of 1,000 members was half of a gossip-only fleet's time.
    private var calmSince = UInt64.max
    private var unsettled = false

    /// - Parameters:
    ///   - gossipEndpoint: our own bound gossip address (never contacted; used to ignore ourselves).
    ///   - peerAddress: the peer-wire address we advertise; nil advertises `gossipEndpoint.ip`.
    ///   - seeds: gossip endpoints to ping until we know members (out-of-scope ones are ignored).
    public init(id: GossipMemberID, gossipEndpoint: IPEndpoint, peerAddress: IPAddress? = nil, scope: CIDR,
                seeds: [IPEndpoint] = [], broadcast: Bool = false,
                settings: GossipMembershipSettings = GossipMembershipSettings(), rng: RNG, now: GossipTime) {
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
        while let mid = pendingProbes.first, tokens >= 1 {
            pendingProbes.removeFirst()
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
        for (oid, r) in records where oid != m.sender && r.member.gossipEndpoint == source {
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
    private var lastEndpoint: [GossipMemberID: IPEndpoint] = [:]

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
        if var r = records[e.id] {
            var m = r.member
            // Status is never taken from hearsay: suspect and dead are each node's own reading of
            // the member's silence. Spreading them (SWIM's "suspect beats alive") let one node's
            // late news contaminate everyone until the member refuted; ages make that unnecessary.
            // A higher incarnation is the member's refutation: believe it is alive.
            if e.incarnation > m.incarnation {
                m.incarnation = e.incarnation
                if e.status == .alive { m.status = .alive }
            }
            r.lastHeard = max(r.lastHeard, heard)
            let changed = m != r.member
            r.member = m
            records[e.id] = r
            if changed { out.append(.memberUpdated(m)) }
            return
        }

        guard e.status != .dead, t - min(t, heard) < effectiveDeadAfter else { return }
        if let tomb = tombstones[e.id] {
            let fresher = !tomb.left && heard > tomb.lastHeard
            guard e.incarnation > tomb.incarnation || fresher else { return }
        }
        guard endpoint != gossipEndpoint,
              !records.values.contains(where: { $0.member.gossipEndpoint == endpoint }) else { return }
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

    private mutating func expire(now time: GossipTime, into out: inout [GossipDirective]) {
        let t = time.monotonicNanos
        let dead = effectiveDeadAfter
        let suspect = effectiveSuspectAfter
        if !unsettled, calmSince == .max || t - min(t, calmSince) < min(suspect, dead) {
            expireTombstones(t)
            return
        }
        calmSince = .max
        unsettled = false
        for mid in ids {
            var r = records[mid]!
            let silent = t > r.lastHeard ? t - r.lastHeard : 0
            if silent >= dead {
                remove(mid, now: t, left: false, into: &out)
                continue
            }
            if silent < suspect {
                calmSince = min(calmSince, r.lastHeard)
                guard r.member.status == .suspect || r.probeStarted != nil else { continue }
                // Fresh news since: it is alive after all.
                r.probeStarted = nil
                r.probes = 0
                if r.member.status == .suspect {
                    r.member.status = .alive
                    out.append(.memberUpdated(r.member))
                }
                records[mid] = r
                continue
            }
            unsettled = true
            if r.member.status == .alive {
                r.member.status = .suspect
                out.append(.memberUpdated(r.member))
            }
            // Suspect: ask it directly. Silence may only mean news of it is slow to reach us
            // (large clusters); an answer settles that, no answer is a verdict.
            if r.probeStarted == nil || (t - r.lastProbe >= settings.probeTimeout && r.probes < settings.probeAttempts) {
                if send(.ping, to: r.member.gossipEndpoint, now: time, into: &out) {
                    if r.probeStarted == nil { r.probeStarted = t }
                    r.lastProbe = t
                    r.probes += 1
                }
                records[mid] = r
            } else if r.probes >= settings.probeAttempts, t - r.lastProbe >= settings.probeTimeout {
                records[mid] = r
                stats.verdictsMade += 1
                remove(mid, now: t, left: false, verdict: (at: t, revivesAfter: r.probeStarted ?? t), into: &out)
            } else {
                records[mid] = r
            }
        }
        expireTombstones(t)
    }

    private mutating func expireTombstones(_ t: UInt64) {
        for (mid, tomb) in tombstones where tomb.expires <= t {
            tombstones[mid] = nil
            lastEndpoint[mid] = nil
        }
    }

    /// Drops a member and keeps its tombstone. With a `verdict` (a failed probe, ours or
    /// gossiped) the tombstone is gossiped as `dead` for `verdictTTL`, and only news newer than
    /// `revivesAfter` (or a higher incarnation) brings the member back.
    private mutating func remove(_ mid: GossipMemberID, now t: UInt64, left: Bool,
                                 verdict: (at: UInt64, revivesAfter: UInt64)? = nil, incarnation: UInt32? = nil,
                                 into out: inout [GossipDirective]) {
        guard let r = forget(mid) else { return }
        if tombstones.count >= settings.maxTombstones,
           let oldest = tombstones.min(by: { ($0.value.expires, $0.key) < ($1.value.expires, $1.key) })?.key {
            tombstones[oldest] = nil
            lastEndpoint[oldest] = nil
        }
        tombstones[mid] = Tombstone(incarnation: max(r.member.incarnation, incarnation ?? 0),
                                    lastHeard: max(r.lastHeard, verdict?.revivesAfter ?? 0),
                                    lastSequence: r.lastSequence, expires: t &+ settings.tombstoneTTL, left: left,
                                    verdictAt: verdict?.at, gossipUntil: verdict == nil ? 0 : t &+ settings.verdictTTL)
        var gone = r.member
        gone.status = .dead
        out.append(.memberRemoved(gone))
    }

    /// Drops the member heard from longest ago, second-hand ones first (their torrents are
    /// not known anyway), without a tombstone: it is not dead, and may be learned again.
    private mutating func evictStalest(into out: inout [GossipDirective]) {
        guard let mid = records.min(by: { a, b in
            (a.value.direct ? 1 : 0, a.value.lastHeard, a.key) < (b.value.direct ? 1 : 0, b.value.lastHeard, b.key)
        })?.key, let r = forget(mid) else { return }
        stats.evicted += 1
        out.append(.memberRemoved(r.member))
    }

    /// Takes a member out of the table and of every queue that names it.
    private mutating func forget(_ mid: GossipMemberID) -> Record? {
        guard let r = records.removeValue(forKey: mid) else { return nil }
        ids.remove(at: idIndex(mid))
        pendingProbes.removeAll { $0 == mid }
        owedAcks.removeAll { $0 == mid }
        return r
    }

    /// The `k` members heard of most recently (ties by id, for reproducibility).
    private func freshestIDs(_ k: Int) -> [GossipMemberID] {
        guard k > 0 else { return [] }
        var best: [(UInt64, GossipMemberID)] = []
        best.reserveCapacity(k + 1)
        for (mid, r) in records {
            let key = (r.lastHeard, mid)
            if best.count == k, let last = best.last, !(key > last) { continue }
            let at = best.firstIndex { key > $0 } ?? best.count
            best.insert(key, at: at)
            if best.count > k { best.removeLast() }
        }
        return best.map(\.1)
    }

    private mutating func store(_ record: Record, for id: GossipMemberID) {
        calmSince = min(calmSince, record.lastHeard)
        if record.member.status != .alive || record.probeStarted != nil { unsettled = true }
        if records.updateValue(record, forKey: id) == nil { ids.insert(id, at: idIndex(id)) }
    }

    /// Where `id` is or would go in `ids`.
    private func idIndex(_ id: GossipMemberID) -> Int {
        var lo = 0, hi = ids.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if ids[mid] < id { lo = mid + 1 } else { hi = mid }
        }
        return lo
    }

    /// Up to `k` distinct member ids chosen at random (partial Fisher-Yates over a copy of `ids`).
    private mutating func randomIDs(_ k: Int) -> [GossipMemberID] {
        var pool = ids
        let n = min(k, pool.count)
        for i in 0..<n { pool.swapAt(i, Int.random(in: i..<pool.count, using: &rng)) }
        return Array(pool.prefix(n))
    }

    private mutating func refill(_ t: UInt64) {
        guard t > lastRefill else { return }
        tokens = min(settings.sendBurst, tokens + Double(t - lastRefill) / 1e9 * settings.sendRate)
        lastRefill = t
    }

    private mutating func take() -> Bool {
        guard tokens >= 1 else { stats.rateLimited += 1; return false }
        tokens -= 1
        return true
    }

    @discardableResult
    private mutating func send(_ kind: GossipMessage.Kind, to endpoint: IPEndpoint, now: GossipTime,
                               into out: inout [GossipDirective]) -> Bool {
        // Defence in depth: nothing outside the scope is ever contacted, whatever put it here.
        guard endpoint != gossipEndpoint, scope.contains(endpoint.ip) else { return true }
        guard take() else { return false }
        out.append(.send(makeMessage(kind, now: now), to: endpoint))
        return true
    }

    private mutating func makeMessage(_ kind: GossipMessage.Kind, now: GossipTime) -> GossipMessage {
        sequence += 1
        var sample: [GossipMemberEntry] = []
        if kind != .leave {
            let t = now.monotonicNanos
            // Half the sample is the members we heard of most recently: fresh ages spread in
            // a hop or two, which keeps silence (and false suspicion) short. The rest is random,
            // so every member still reaches everyone.
            var room = GossipCodec.memberCapacity(torrents: torrents.count)
            // Death verdicts first, so they outrun the stale news that would keep a member alive.
            for (mid, tomb) in tombstones.filter({ $0.value.gossipUntil > t }).sorted(by: { $0.key < $1.key })
            where sample.count < settings.maxVerdictsPerMessage {
                guard let at = tomb.verdictAt, let endpoint = lastEndpoint[mid] else { continue }
                sample.append(GossipMemberEntry(id: mid, address: endpoint.ip, peerPort: 0, gossipPort: endpoint.port,
                                                status: .dead, incarnation: tomb.incarnation,
                                                ageMillis: UInt32(min((t - min(t, at)) / 1_000_000, UInt64(UInt32.max)))))
            }
            room -= sample.count
            var chosen = freshestIDs(room / 2)
            for mid in randomIDs(room + room / 2) where chosen.count < room && !chosen.contains(mid) {
                chosen.append(mid)
            }
            for mid in chosen {
                let r = records[mid]!
                let age = min((t > r.lastHeard ? t - r.lastHeard : 0) / 1_000_000, UInt64(UInt32.max))
                sample.append(GossipMemberEntry(id: mid, address: r.member.gossipEndpoint.ip,
                                                peerPort: r.member.peerPort, gossipPort: r.member.gossipEndpoint.port,
                                                status: r.member.status, incarnation: r.member.incarnation,
                                                ageMillis: UInt32(age)))
            }
        }
        return GossipMessage(kind: kind, sender: id, peerAddress: peerAddress, peerPort: peerPort,
                             gossipPort: gossipEndpoint.port, timestampMillis: now.unixMillis, sequence: sequence,
                             incarnation: incarnation, torrents: kind == .leave ? [] : torrents, members: sample)
    }
}

extension GossipMembership: CustomStringConvertible {
    public var description: String {
        "GossipMembership(id: \(String(id, radix: 16)), \(gossipEndpoint), \(records.count) members, incarnation \(incarnation))"
    }
}
