import BitTorrent

/// Which pieces a host may fetch across its site's uplink (docs/design/sites.md).
///
/// A piece some connected peer of our own site has is fetched inside the site, never again
/// across the uplink. A piece the site lacks is fetched across by one host of the site only:
/// its owner by rendezvous hashing over the site's peers we are connected to and ourselves
/// (the highest `score(key, piece)` wins). Views differ when hosts do not all see each other,
/// but the site-wide winner is the winner in every view that holds it, so a piece always has
/// an owner: partial views cost duplicates, never a piece nobody fetches. When a host has
/// received nothing for a while (its owners' remote peers lack what it misses, or the owner
/// left), it may fetch any piece the site lacks (`TorrentState`'s fallback).
///
/// Pure state, owned by `TorrentState`: members are site-local peers by their ids there.
public struct SiteAffinity: Sendable {
    private let ownKey: UInt64
    private var members: [Int: UInt64] = [:]
    /// Members that are the origin seed: in the site, but neither a source of its pieces
    /// (`origin(_:had:)`) nor an owner.
    private var origins: Set<Int> = []
    /// How many connected site-local peers have each piece.
    private var availability: [Int]
    /// Pieces some connected site-local peer has.
    public private(set) var inSite: Bitfield
    /// Pieces this host fetches across sites when the site lacks them.
    public private(set) var share: Bitfield

    public init(pieceCount: Int, ownPeerID: [UInt8]) {
        ownKey = Self.key(ownPeerID)
        availability = Array(repeating: 0, count: pieceCount)
        inSite = Bitfield(count: pieceCount)
        share = Bitfield(count: pieceCount, allSet: true)
    }

    public var memberCount: Int { members.count }

    /// A site-local peer connected; its pieces follow through `memberHas`.
    public mutating func memberJoined(_ id: Int, peerID: [UInt8]) {
        members[id] = Self.key(peerID)
        recomputeShare()
    }

    /// A site-local peer left holding `had`.
    public mutating func memberLeft(_ id: Int, had: Bitfield) {
        guard members.removeValue(forKey: id) != nil else { return }
        if origins.remove(id) == nil { memberLost(id, had) }
        recomputeShare()
    }

    /// The member turned out to be the origin seed (it assigns pieces): its pieces no longer
    /// count as in the site. The origin's uplink is the scarcest in the swarm and it hands
    /// its pieces to every site alike; counted, it made the whole file look present in its
    /// own site, whose hosts then never fetched back what the origin sent elsewhere and
    /// waited for the origin to send it all again (starling-sim, 3 sites of 10: that site
    /// finished 20 s after the others).
    public mutating func origin(_ id: Int, had: Bitfield) {
        guard members[id] != nil, !origins.contains(id) else { return }
        memberLost(id, had)
        origins.insert(id)
        recomputeShare()
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

    public func isMember(_ id: Int) -> Bool { members[id] != nil }

    /// Of the pieces a remote peer has, those worth fetching across: none in the site, and
    /// (unless `anyOwner`) ours to fetch.
    public func acrossSites(_ peerHas: Bitfield, anyOwner: Bool = false) -> Bitfield {
        let outside = peerHas.subtracting(inSite)
        return anyOwner ? outside : outside.intersection(share)
    }

    private mutating func recomputeShare() {
        var s = Bitfield(count: availability.count)
        let keys = members.filter { !origins.contains($0.key) }.map(\.value)
        for p in 0..<availability.count {
            let mine = Self.score(ownKey, p)
            if keys.allSatisfy({ Self.score($0, p) < mine }) { s.set(p) }
        }
        share = s
    }

    /// FNV-1a of the peer id: stable across processes, so every host computes the same owner.
    static func key(_ peerID: [UInt8]) -> UInt64 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in peerID { h = (h ^ UInt64(b)) &* 0x100_0000_01b3 }
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
