import BitTorrent

/// Which connected peers have each piece: a row of bits per piece over the peers' slots
/// (`PeerTable.slot(of:)`), and per slot the counts the verified-piece rules need.
///
/// Each peer's `Bitfield` answers "what does this peer have"; this answers "who has piece p",
/// asked for every piece we verify (whom to tell, whose interest may end). Asked of every
/// peer's field, that is a cache miss per peer per piece, the largest single cost of a
/// 1,000-host simulation (10 %); a row is a word or two, and hot while its piece spreads.
struct PieceHolders {
    private let pieceCount: Int
    /// Words per row: slots 0 ..< 64 * words fit.
    private var words = 1
    private var rows: [UInt64]
    private var slots: [Slot] = []

    struct Slot {
        /// Pieces the peer has, and of those the ones we lack (interest is `wanted > 0`).
        var held: Int32 = 0
        var wanted: Int32 = 0
        /// Interest in a peer of another site follows what our site lacks, not `wanted` alone.
        var acrossSites = false
    }

    init(pieceCount: Int) {
        self.pieceCount = pieceCount
        rows = Array(repeating: 0, count: pieceCount)
    }

    func contains(piece: Int, slot: Int) -> Bool {
        slot < 64 * words && rows[piece * words + slot >> 6] & (1 << UInt64(slot & 63)) != 0
    }

    func isSeed(slot: Int) -> Bool { slot < slots.count && Int(slots[slot].held) == pieceCount }
    func wanted(slot: Int) -> Int { slot < slots.count ? Int(slots[slot].wanted) : 0 }
    func isAcrossSites(slot: Int) -> Bool { slot < slots.count && slots[slot].acrossSites }

    /// A peer took `slot`, holding nothing yet.
    mutating func joined(slot: Int, acrossSites: Bool) {
        make(slot)
        slots[slot] = Slot(acrossSites: acrossSites)
    }

    /// The peer in `slot` announced `piece`; `weLack` unless we have it verified.
    mutating func peerHas(piece: Int, slot: Int, weLack: Bool) {
        guard !contains(piece: piece, slot: slot) else { return }
        make(slot)
        rows[piece * words + slot >> 6] |= 1 << UInt64(slot & 63)
        slots[slot].held += 1
        if weLack { slots[slot].wanted += 1 }
    }

    /// The peer in `slot` announced all of `bits` (it had nothing before, or `peerLost`).
    mutating func peerHas(_ bits: Bitfield, slot: Int, have: Bitfield) {
        bits.forEachSet { peerHas(piece: $0, slot: slot, weLack: !have[$0]) }
    }

    /// The peer in `slot` replaced its holdings (`bits` were its old ones), or left: it
    /// holds nothing now.
    mutating func peerLost(_ bits: Bitfield, slot: Int) {
        guard slot < slots.count else { return }
        bits.forEachSet { rows[$0 * words + slot >> 6] &= ~(1 << UInt64(slot & 63)) }
        slots[slot].held = 0
        slots[slot].wanted = 0
    }

    /// We verified `piece` (it was not ours before): no holder of it has it for us any more.
    mutating func weVerified(piece: Int) {
        for w in 0..<words {
            var bits = rows[piece * words + w]
            while bits != 0 {
                slots[w << 6 | bits.trailingZeroBitCount].wanted -= 1
                bits &= bits - 1
            }
        }
    }

    /// Room for `slot`: rows widen a word at a time as the peer table grows.
    private mutating func make(_ slot: Int) {
        if slot >= slots.count { slots.append(contentsOf: repeatElement(Slot(), count: slot + 1 - slots.count)) }
        guard slot >= 64 * words else { return }
        let wider = slot >> 6 + 1
        var grown = [UInt64](repeating: 0, count: pieceCount * wider)
        for p in 0..<pieceCount {
            for w in 0..<words { grown[p * wider + w] = rows[p * words + w] }
        }
        rows = grown
        words = wider
    }
}
