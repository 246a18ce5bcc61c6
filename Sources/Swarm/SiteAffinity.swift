import BitTorrent

/// Which pieces a host may fetch across its site's uplink (docs/design/sites.md).
///
/// A piece some connected peer of our own site has is fetched inside the site, never again
/// across the uplink. A piece the site lacks is fetched across by one host of the site only:
/// its owner by rendezvous hashing over the site's hosts we know of (connected, or handed
/// to us by the tracker or gossip) and ourselves, each keyed by its address: the highest
/// `score(key, piece)` wins. Views differ when hosts do not all know each other, but the
/// site-wide winner is the winner in every view that holds it, so a piece always has an
/// owner: partial views cost duplicates, never a piece nobody fetches. A host once known
/// stays known (a rollout's hosts rarely leave); when an owner is gone, or its remote peers
/// lack the piece, `TorrentState`'s fallback (nothing received for a while: any piece the
/// site lacks) fetches it.
///
/// Pure state, owned by `TorrentState`: connected members are site-local peers by their ids there.
public struct SiteAffinity: Sendable {
    private let ownKey: UInt64
    /// Connected site-local peers, by id: their addresses.
    private var members: [Int: String] = [:]
    /// Members that are the origin seed: in the site, but neither a source of its pieces
    /// (`origin(_:had:)`) nor an owner.
    private var origins: Set<Int> = []
    private var originHosts: Set<String> = []
    /// Every site-mate known by address, connected or not.
    private var known: Set<String> = []
    /// Per piece, the highest score among `known`.
    private var best: [UInt64]
    /// How many connected site-local peers have each piece.
    private var availability: [Int]
    /// Pieces some connected site-local peer has.
    public private(set) var inSite: Bitfield
    /// Pieces this host fetches across sites when the site lacks them.
    public private(set) var share: Bitfield
    /// Site-mates remembered at most: enough for a rack or a data centre's share of a swarm.
    public static let maxKnown = 4096

    /// `ownAddress`: the address this host announces, as its site-mates see it.
    public init(pieceCount: Int, ownAddress: String) {
        ownKey = Self.key(ownAddress)
        best = Array(repeating: 0, count: pieceCount)
        availability = Array(repeating: 0, count: pieceCount)
        inSite = Bitfield(count: pieceCount)
        share = Bitfield(count: pieceCount, allSet: true)
    }

    public var memberCount: Int { members.count }
    public var knownCount: Int { known.count }

    public func isMember(_ id: Int) -> Bool { members[id] != nil }

    /// A site-local peer connected from or at `host`; its pieces follow through `memberHas`.
    public mutating func memberJoined(_ id: Int, host: String) {
        members[id] = host
        learn(host)
    }

    /// A site-mate's address, from the tracker or gossip: it takes part in who owns what.
    public mutating func learn(_ host: String) {
        let k = Self.key(host)
        guard k != ownKey, !originHosts.contains(host), known.count < Self.maxKnown, known.insert(host).inserted else { return }
        for p in best.indices {
            let s = Self.score(k, p)
            guard s > best[p] else { continue }
            best[p] = s
            if s > Self.score(ownKey, p) { share.clear(p) }
        }
    }

    /// A site-local peer left holding `had` (it stays known: see the type's note).
    public mutating func memberLeft(_ id: Int, had: Bitfield) {
        guard members.removeValue(forKey: id) != nil else { return }
        if origins.remove(id) == nil { memberLost(id, had) }
    }

    /// The member turned out to be the origin seed (it assigns pieces): its pieces no longer
    /// count as in the site, and it owns nothing. The origin's uplink is the scarcest in the
    /// swarm and it hands its pieces to every site alike; counted, it made the whole file look
    /// present in its own site, whose hosts then never fetched back what the origin sent
    /// elsewhere and waited for the origin to send it all again (starling-sim, 3 sites of
    /// 10: that site finished 20 s after the others).
    public mutating func origin(_ id: Int, had: Bitfield) {
        guard let host = members[id], !origins.contains(id) else { return }
        memberLost(id, had)
        origins.insert(id)
        originHosts.insert(host)
        if known.remove(host) != nil { recomputeShare() }
    }

    public mutating func memberHas(_ id: Int, piece: Int) {
        guard !origins.contains(id) else { return }
        availability[piece] += 1
        inSite.set(piece)
    }

    public mutating func memberHas(_ id: Int, _ bits: Bitfield) { bits.forEachSet { memberHas(id, piece: $0) } }

    /// A member's holdings are replaced (a later bitfield) or gone.
    public mutating func memberLost(_ id: Int, _ bits: Bitfield) {
        guard !origins.contains(id) else { return }
        bits.forEachSet { p in
            availability[p] -= 1
            if availability[p] == 0 { inSite.clear(p) }
        }
    }

    /// Of the pieces a remote peer has, those worth fetching across: none in the site, and
    /// (unless `anyOwner`) ours to fetch.
    public func acrossSites(_ peerHas: Bitfield, anyOwner: Bool = false) -> Bitfield {
        let outside = peerHas.subtracting(inSite)
        return anyOwner ? outside : outside.intersection(share)
    }

    private mutating func recomputeShare() {
        let keys = known.map(Self.key)
        share = Bitfield(count: best.count)
        for p in best.indices {
            best[p] = keys.reduce(0) { max($0, Self.score($1, p)) }
            if Self.score(ownKey, p) > best[p] { share.set(p) }
        }
    }

    /// FNV-1a of the address text: stable across processes, so every host computes the same owner.
    static func key(_ address: String) -> UInt64 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in address.utf8 { h = (h ^ UInt64(b)) &* 0x100_0000_01b3 }
        return h
    }

    /// SplitMix64's finaliser over key and piece: independent-looking scores per pair.
    static func score(_ key: UInt64, _ piece: Int) -> UInt64 {
        var z = key &+ UInt64(truncatingIfNeeded: piece) &* 0x9e37_79b9_7f4a_7c15
        z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
        z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
        return z ^ (z >> 31)
    }
}
