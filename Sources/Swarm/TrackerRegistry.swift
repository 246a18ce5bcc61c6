import BitTorrent
import Values

/// The tracker's memory of every swarm: a pure state machine with no I/O and no clock.
///
/// Callers pass `now` (unix seconds) and a random generator into each call, so tests can
/// drive expiry and sampling deterministically. Every announce is O(1) plus O(numwant)
/// for the hand-out: each swarm keeps seeders and leechers in arrays with an index map,
/// removed by swap-remove, so a uniform random sample never scans the swarm.
///
/// Peers are keyed by address and port (as opentracker does), never by peer id: an id is
/// not a secret, so keying by it let any host stop or re-point another peer's entry. Only
/// the address itself, or a trusted proxy announcing for it (`address` is then the one the
/// proxy names), can change or remove an entry. Peer ids are kept for the state file but
/// never handed out (BEP 23's `no_peer_id`, always).
public struct TrackerRegistry: Sendable {
    /// Limits and defaults.
    public struct Configuration: Sendable {
        /// A peer not heard from for this many seconds is dropped by `expire(now:)`.
        public var peerTimeout: Int64
        /// Peers handed out when the client sends no `numwant`.
        public var defaultNumWant: Int
        /// Upper bound on peers handed out per announce, whatever `numwant` says.
        public var maxNumWant: Int
        /// Peers held across all swarms; new peers beyond it are refused (bounds memory).
        public var maxPeers: Int
        /// Sites by address block: a peer in a site is handed peers of its own site, and
        /// `remotePeers` of other sites so that each site stays joined to the rest.
        public var sites: SiteMap
        public var remotePeers: Int
        /// Enough that each site stays joined to the others when some peers leave, few enough
        /// that connections (and what flows over them) stay mostly inside the site.
        public static let defaultRemotePeers = 4
        public static let defaultNumWant = 50
        public static let defaultMaxNumWant = 200
        public static let defaultMaxPeers = 2_000_000

        public init(peerTimeout: Int64 = 60, defaultNumWant: Int = Configuration.defaultNumWant,
                    maxNumWant: Int = Configuration.defaultMaxNumWant, maxPeers: Int = Configuration.defaultMaxPeers,
                    sites: SiteMap = SiteMap(), remotePeers: Int = Configuration.defaultRemotePeers) {
            self.peerTimeout = peerTimeout
            self.defaultNumWant = defaultNumWant
            self.maxNumWant = maxNumWant
            self.maxPeers = maxPeers
            self.sites = sites
            self.remotePeers = remotePeers
        }
    }

    /// What an announce gets back: a sample of peers and the swarm's counts after the update.
    public struct AnnounceResult: Sendable, Equatable {
        public var peers: [TrackerPeer]
        /// Seeders.
        public var complete: Int
        /// Leechers.
        public var incomplete: Int
    }

    public var configuration: Configuration
    private var swarms: [InfoHash: SwarmPeers] = [:]
    /// Peers across all swarms.
    public private(set) var peerCount = 0

    public init(configuration: Configuration = Configuration()) {
        self.configuration = configuration
    }

    public var swarmCount: Int { swarms.count }

    /// Counts for one torrent, or nil when the tracker has never seen it (or it emptied and was swept).
    public func stats(_ infoHash: InfoHash) -> ScrapeStats? {
        swarms[infoHash].map { $0.stats }
    }

    /// Counts for every swarm, for a full scrape and for metrics.
    public func allStats() -> [InfoHash: ScrapeStats] {
        swarms.mapValues { $0.stats }
    }

    /// Counts for one torrent by site (only sites that hold peers; "" for peers outside
    /// every site), for metrics and `starling status`.
    public func siteStats(_ infoHash: InfoHash) -> [String: ScrapeStats] {
        guard let swarm = swarms[infoHash] else { return [:] }
        var out: [String: ScrapeStats] = [:]
        for (b, bucket) in swarm.buckets.enumerated() where bucket.seeders.count + bucket.leechers.count > 0 {
            out[b == 0 ? "" : configuration.sites.sites[b - 1].name] = bucket.stats(downloaded: 0)
        }
        return out
    }

    /// Counts by site over every swarm (only with a site map; "" for peers outside every site).
    public func siteTotals() -> [String: ScrapeStats] {
        guard !configuration.sites.isEmpty else { return [:] }
        var out: [String: ScrapeStats] = [:]
        for hash in swarms.keys {
            for (site, s) in siteStats(hash) {
                var t = out[site] ?? ScrapeStats(complete: 0, incomplete: 0, downloaded: 0, left: 0)
                t.complete += s.complete
                t.incomplete += s.incomplete
                t.left! += s.left ?? 0
                out[site] = t
            }
        }
        return out
    }

    /// Which of a swarm's buckets holds `address`: 0 outside every site, else 1 + the site's index.
    private func bucket(of address: IPAddress) -> Int {
        configuration.sites.index(of: address).map { $0 + 1 } ?? 0
    }

    /// Records an announce from `address` and returns the peers to hand out.
    ///
    /// `stopped` removes the peer at once and hands out nobody. A download is counted once per
    /// peer: when a leecher reports `left=0` (with `completed`, a regular announce, or even
    /// `stopped`), or when an unknown peer announces `completed`. A leecher gets a uniform
    /// random sample of seeders and leechers, never itself; a seeder gets leechers only,
    /// since seeders have nothing to give each other. Answers carry no peer ids.
    public mutating func announce(_ request: AnnounceRequest, address: IPAddress, now: Int64,
                                  using rng: inout some RandomNumberGenerator) throws(TrackerError) -> AnnounceResult {
        let key = PeerKey(ip: address, port: request.port)
        let b = bucket(of: address)
        if request.event == .stopped {
            guard swarms[request.infoHash] != nil else { return AnnounceResult(peers: [], complete: 0, incomplete: 0) }
            var removed = false
            swarms[request.infoHash]!.withUpdate { swarm in
                // A leecher that stops with nothing left finished without saying `completed`
                // (aria2c with --seed-time=0 does this): still a download.
                if request.left == 0, swarm.buckets[b].leechers.remove(key) {
                    removed = true
                    swarm.downloaded += 1
                } else {
                    removed = swarm.buckets[b].remove(key)
                }
            }
            if removed { peerCount -= 1 }
            let s = swarms[request.infoHash]!.stats
            return AnnounceResult(peers: [], complete: s.complete, incomplete: s.incomplete)
        }
        let isSeeder = request.left == 0
        let entry = Entry(key: key, id: PackedPeerID(request.peerID), lastSeen: now, left: max(0, request.left))
        let wantCount = min(max(request.numWant ?? configuration.defaultNumWant, 0), configuration.maxNumWant)
        let full = peerCount >= configuration.maxPeers

        // Mutate in place through the dictionary's modify accessor: copying a swarm out
        // and back would copy its arrays on every announce.
        var outcome: SiteBucket.UpdateOutcome = .refused
        var result = AnnounceResult(peers: [], complete: 0, incomplete: 0)
        if full && swarms[request.infoHash] == nil {
            throw .invalidRequest("tracker is full (\(configuration.maxPeers) peers)")
        }
        let sites = configuration.sites.sites.count
        let remote = configuration.remotePeers
        swarms[request.infoHash, default: SwarmPeers(sites: sites)].withUpdate { swarm in
            outcome = swarm.buckets[b].upsert(entry, seeder: isSeeder, allowNew: !full)
            guard outcome != .refused else { return }
            // Count a download once: when a known leecher turns seeder (whatever the event: some
            // clients skip `completed`), or when an unknown peer says `completed` (e.g. after a restart).
            if outcome == .becameSeeder || (request.event == .completed && outcome == .inserted && isSeeder) {
                swarm.downloaded += 1
            }
            result.peers = swarm.sample(for: key, in: b, seeder: isSeeder, count: wantCount, remote: remote, using: &rng)
            let s = swarm.stats
            result.complete = s.complete
            result.incomplete = s.incomplete
        }
        switch outcome {
        case .refused:
            throw .invalidRequest("tracker is full (\(configuration.maxPeers) peers)")
        case .inserted:
            peerCount += 1
        default:
            break
        }
        return result
    }

    /// Drops peers not heard from within `peerTimeout`, and swarms left empty. O(peers).
    @discardableResult
    public mutating func expire(now: Int64) -> Int {
        let cutoff = now - configuration.peerTimeout
        var removed = 0
        var emptied: [InfoHash] = []
        for hash in Array(swarms.keys) {
            swarms[hash]!.withUpdate { swarm in
                for b in swarm.buckets.indices {
                    removed += swarm.buckets[b].seeders.removeAll(lastSeenBefore: cutoff)
                    removed += swarm.buckets[b].leechers.removeAll(lastSeenBefore: cutoff)
                }
                if swarm.peerCount == 0 { emptied.append(hash) }
            }
        }
        for hash in emptied { swarms[hash] = nil }
        peerCount -= removed
        return removed
    }

    // MARK: Persistence

    /// Everything needed to rebuild the registry after a restart.
    public func snapshot() -> TrackerSnapshot {
        TrackerSnapshot(swarms: swarms.map { hash, swarm in
            TrackerSnapshot.Swarm(
                infoHash: hash, downloaded: swarm.downloaded,
                peers: swarm.buckets.flatMap { bucket in
                    bucket.seeders.entries.map { TrackerSnapshot.Peer(peer: $0.peer, isSeeder: true, lastSeen: $0.lastSeen) }
                        + bucket.leechers.entries.map {
                            TrackerSnapshot.Peer(peer: $0.peer, isSeeder: false, lastSeen: $0.lastSeen, left: $0.left)
                        }
                })
        })
    }

    /// Replaces the registry's contents with `snapshot`.
    ///
    /// Restored peers count as seen at `now`: they could not announce while the tracker was
    /// down, so each gets one full timeout to come back before it expires.
    /// Peers without an IP address are skipped.
    public mutating func restore(_ snapshot: TrackerSnapshot, now: Int64) {
        swarms = [:]
        peerCount = 0
        for s in snapshot.swarms {
            var swarm = SwarmPeers(sites: configuration.sites.sites.count)
            swarm.downloaded = s.downloaded
            for p in s.peers {
                guard let ip = p.peer.ip else { continue }
                guard peerCount < configuration.maxPeers else { break }
                let e = Entry(key: PeerKey(ip: ip, port: p.peer.port), id: PackedPeerID(p.peer.peerID ?? []),
                              lastSeen: max(p.lastSeen, now), left: p.isSeeder ? 0 : max(0, p.left))
                if swarm.buckets[bucket(of: ip)].upsert(e, seeder: p.isSeeder, allowNew: true) == .inserted { peerCount += 1 }
            }
            if swarm.peerCount > 0 || swarm.downloaded > 0 {
                swarms[s.infoHash] = swarm
            }
        }
    }
}

/// A registry's persistent form (see `TrackerRegistry.snapshot()`).
public struct TrackerSnapshot: Sendable, Equatable {
    public struct Peer: Sendable, Equatable {
        /// Address, port and the 20-byte peer id.
        public var peer: TrackerPeer
        public var isSeeder: Bool
        /// Unix seconds of the last announce.
        public var lastSeen: Int64
        /// Bytes it still missed then.
        public var left: Int64
        public init(peer: TrackerPeer, isSeeder: Bool, lastSeen: Int64, left: Int64 = 0) {
            self.peer = peer
            self.isSeeder = isSeeder
            self.lastSeen = lastSeen
            self.left = left
        }
    }

    public struct Swarm: Sendable, Equatable {
        public var infoHash: InfoHash
        public var downloaded: Int
        public var peers: [Peer]
        public init(infoHash: InfoHash, downloaded: Int, peers: [Peer]) {
            self.infoHash = infoHash
            self.downloaded = downloaded
            self.peers = peers
        }
    }

    public var swarms: [Swarm]
    public init(swarms: [Swarm]) { self.swarms = swarms }

    public var peerCount: Int { swarms.reduce(0) { $0 + $1.peers.count } }
}

/// What a swarm entry is keyed by: where the peer listens.
struct PeerKey: Hashable, Sendable {
    var ip: IPAddress
    var port: UInt16
}

/// A peer id packed into integers: no heap object per peer.
struct PackedPeerID: Sendable {
    var a: UInt64, b: UInt64, c: UInt32

    init(_ id: [UInt8]) {
        var a: UInt64 = 0, b: UInt64 = 0, c: UInt32 = 0
        for (i, byte) in id.prefix(20).enumerated() {
            switch i {
            case 0..<8: a = a << 8 | UInt64(byte)
            case 8..<16: b = b << 8 | UInt64(byte)
            default: c = c << 8 | UInt32(byte)
            }
        }
        self.a = a
        self.b = b
        self.c = c
    }

    /// The 20 bytes back (announces carry exactly 20; a state file without one gives zeros).
    var bytes: [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(20)
        for shift in stride(from: 56, through: 0, by: -8) { out.append(UInt8(truncatingIfNeeded: a >> UInt64(shift))) }
        for shift in stride(from: 56, through: 0, by: -8) { out.append(UInt8(truncatingIfNeeded: b >> UInt64(shift))) }
        for shift in stride(from: 24, through: 0, by: -8) { out.append(UInt8(truncatingIfNeeded: c >> UInt32(shift))) }
        return out
    }
}

/// One registered peer, all plain values: no heap object per peer (the 20-byte id is packed
/// in `id`), so 100,000 peers cost little memory and a sample copies no reference-counted data.
struct Entry: Sendable {
    var key: PeerKey
    /// The id it last announced with, for the state file only.
    var id: PackedPeerID
    var lastSeen: Int64
    /// Bytes it still missed at its last announce.
    var left: Int64 = 0

    /// With its id, for snapshots; answers use `key` alone.
    var peer: TrackerPeer { TrackerPeer(ip: key.ip, port: key.port, peerID: id.bytes) }
}

/// Peers in an array for O(1) random access, with an index map for O(1) lookup and swap-remove.
struct PeerSet: Sendable {
    var entries: [Entry] = []
    var index: [PeerKey: Int] = [:]
    /// Sum of the entries' `left`.
    private(set) var leftTotal: Int64 = 0

    var count: Int { entries.count }

    func contains(_ key: PeerKey) -> Bool { index[key] != nil }

    mutating func insert(_ e: Entry) {
        index[e.key] = entries.count
        entries.append(e)
        leftTotal += e.left
    }

    /// Updates in place when present; returns false when absent.
    mutating func update(_ e: Entry) -> Bool {
        guard let i = index[e.key] else { return false }
        leftTotal += e.left - entries[i].left
        entries[i] = e
        return true
    }

    @discardableResult
    mutating func remove(_ key: PeerKey) -> Bool {
        guard let i = index.removeValue(forKey: key) else { return false }
        removeAt(i)
        return true
    }

    /// Swap-remove of the entry at `i` whose index-map entry is already gone.
    private mutating func removeAt(_ i: Int) {
        leftTotal -= entries[i].left
        let last = entries.count - 1
        if i != last {
            entries[i] = entries[last]
            index[entries[i].key] = i
        }
        entries.removeLast()
    }

    mutating func removeAll(lastSeenBefore cutoff: Int64) -> Int {
        var removed = 0
        var i = entries.count - 1
        // Backwards, so the entry swapped into `i` has already been looked at.
        while i >= 0 {
            if entries[i].lastSeen < cutoff {
                index[entries[i].key] = nil
                removeAt(i)
                removed += 1
            }
            i -= 1
        }
        return removed
    }
}

/// One swarm's peers, by site: bucket 0 holds those outside every site (all of them without
/// a site map), bucket 1 + k those of the map's site k.
struct SwarmPeers: Sendable {
    var buckets: [SiteBucket]
    var downloaded = 0

    init(sites: Int) { buckets = Array(repeating: SiteBucket(), count: sites + 1) }

    var peerCount: Int { buckets.reduce(0) { $0 + $1.seeders.count + $1.leechers.count } }

    var stats: ScrapeStats {
        var s = ScrapeStats(complete: 0, incomplete: 0, downloaded: downloaded, left: 0)
        for b in buckets {
            s.complete += b.seeders.count
            s.incomplete += b.leechers.count
            s.left! += b.leechers.leftTotal
        }
        return s
    }

    mutating func withUpdate(_ body: (inout SwarmPeers) -> Void) { body(&self) }

    /// Up to `count` distinct peers, never `me` (in bucket `b`): a seeder draws from leechers
    /// only, a leecher from seeders and leechers. Without sites (`b` is 0) the draw is uniform
    /// over the swarm. In a site, `remote` of them (fewer when fewer exist) come uniformly
    /// from the other buckets and the rest from its own; when its own site runs short, more
    /// come from the others.
    func sample(for me: PeerKey, in b: Int, seeder: Bool, count: Int, remote: Int,
                using rng: inout some RandomNumberGenerator) -> [TrackerPeer] {
        func sets(_ bucket: SiteBucket) -> [PeerSet] { seeder ? [bucket.leechers] : [bucket.seeders, bucket.leechers] }
        guard b != 0 else {
            return Self.sample(from: buckets.flatMap(sets), excluding: me, count: count, using: &rng)
        }
        let own = sets(buckets[b])
        let others = buckets.indices.filter { $0 != b }.flatMap { sets(buckets[$0]) }
        let ownAvailable = own.reduce(0) { $0 + $1.count } - (own.contains { $0.contains(me) } ? 1 : 0)
        let othersAvailable = others.reduce(0) { $0 + $1.count }
        let fromOthers = min(othersAvailable, max(min(remote, count), count - ownAvailable))
        return Self.sample(from: own, excluding: me, count: count - fromOthers, using: &rng)
            + Self.sample(from: others, excluding: nil, count: fromOthers, using: &rng)
    }

    /// Up to `count` distinct entries, uniformly at random from the sets taken as one array,
    /// never `me`.
    static func sample(from sets: [PeerSet], excluding me: PeerKey?, count: Int,
                       using rng: inout some RandomNumberGenerator) -> [TrackerPeer] {
        let total = sets.reduce(0) { $0 + $1.count }
        // Where `me` sits in the virtual array, to skip it.
        var excluded: Int? = nil
        if let me {
            var offset = 0
            for set in sets {
                if let i = set.index[me] { excluded = offset + i; break }
                offset += set.count
            }
        }
        let available = total - (excluded == nil ? 0 : 1)
        let k = min(count, available)
        guard k > 0 else { return [] }
        var out: [TrackerPeer] = []
        out.reserveCapacity(k)
        func append(_ virtualIndex: Int) {
            var v = virtualIndex
            if let ex = excluded, v >= ex { v += 1 }
            var s = 0
            while v >= sets[s].count { v -= sets[s].count; s += 1 }
            let e = sets[s].entries[v]
            out.append(TrackerPeer(ip: e.key.ip, port: e.key.port))
        }
        if k == available {
            for v in 0..<available { append(v) }
            return out
        }
        // Floyd's algorithm: k distinct indices in 0..<available with k random draws.
        var chosen = Set<Int>(minimumCapacity: k)
        for j in (available - k)..<available {
            // Lemire's multiply-shift instead of `Int.random(in:using:)`: that generic
            // stdlib path is not specialised for a caller's generator across modules and
            // dominated the announce cost. The bias (j / 2^64) is immaterial here.
            let t = Int(truncatingIfNeeded: rng.next().multipliedFullWidth(by: UInt64(j + 1)).high)
            let pick = chosen.contains(t) ? j : t
            chosen.insert(pick)
            append(pick)
        }
        return out
    }
}

/// The seeders and leechers of one site (or of those outside every site).
struct SiteBucket: Sendable {
    var seeders = PeerSet()
    var leechers = PeerSet()

    func stats(downloaded: Int) -> ScrapeStats {
        ScrapeStats(complete: seeders.count, incomplete: leechers.count, downloaded: downloaded, left: leechers.leftTotal)
    }

    enum UpdateOutcome: Equatable {
        case inserted, unchangedSeeder, unchangedLeecher, becameSeeder, becameLeecher, refused
    }

    mutating func remove(_ key: PeerKey) -> Bool {
        seeders.remove(key) || leechers.remove(key)
    }

    mutating func upsert(_ e: Entry, seeder: Bool, allowNew: Bool) -> UpdateOutcome {
        if seeder {
            if seeders.update(e) { return .unchangedSeeder }
            if leechers.remove(e.key) { seeders.insert(e); return .becameSeeder }
            guard allowNew else { return .refused }
            seeders.insert(e)
            return .inserted
        } else {
            if leechers.update(e) { return .unchangedLeecher }
            if seeders.remove(e.key) { leechers.insert(e); return .becameLeecher }
            guard allowNew else { return .refused }
            leechers.insert(e)
            return .inserted
        }
    }
}
