import BitTorrent

/// Which blocks to request from which peer: rarest first, random among equals and for the
/// first few pieces, partial pieces finished first, and endgame duplicates at the very end.
///
/// Pure state: the engine tells it what peers have and what arrived; it answers with
/// requests to send and cancels to issue. Peers are identified by an opaque integer.
public struct PiecePicker: Sendable {
    public let layout: PieceLayout
    public private(set) var have: Bitfield
    /// How many connected peers have each piece.
    public private(set) var availability: [Int]
    /// Pieces downloaded at random before rarest-first takes over (spreads the seeder's first pieces).
    public var randomFirstPieces = 4
    /// In endgame, most peers that may be asked for the same block.
    public var endgameDuplicates = 2

    /// Random tie-break rank of each piece, fixed at start so that each peer spreads differently.
    private let rank: [Int]
    private var partial: [Int: PartialPiece] = [:]
    /// Pieces (not had) with at least one block not yet requested, to find work quickly.
    private var unrequested: Bitfield
    /// Pieces in `partial`: bit sets, so finding a new piece scans bytes, not hash tables.
    private var started: Bitfield
    /// Pieces that failed their hash: fetched again from one peer only (`PartialPiece.owner`),
    /// so the next copy either verifies (and shows which earlier blocks were bad) or has a
    /// single sender to blame. Mixed again, a liar's blocks could keep spoiling it.
    private var suspect: Set<Int> = []

    struct PartialPiece: Sendable {
        var requesters: [[Int]]   // per block: peers it is requested from
        var received: [Bool]
        var receivedCount = 0
        var unrequestedCount: Int
        /// The one peer a suspect piece is fetched from.
        var owner: Int?

        init(blocks: Int) {
            requesters = Array(repeating: [], count: blocks)
            received = Array(repeating: false, count: blocks)
            unrequestedCount = blocks
        }
    }

    public init(layout: PieceLayout, have: Bitfield, random: inout some RandomNumberGenerator) {
        self.layout = layout
        self.have = have
        availability = Array(repeating: 0, count: layout.pieceCount)
        var rank = [Int](repeating: 0, count: layout.pieceCount)
        for (position, piece) in Array(0..<layout.pieceCount).shuffled(using: &random).enumerated() {
            rank[piece] = position
        }
        self.rank = rank
        unrequested = Bitfield(count: layout.pieceCount)
        for i in 0..<layout.pieceCount where !have[i] { unrequested.set(i) }
        started = Bitfield(count: layout.pieceCount)
    }

    public var isComplete: Bool { have.isComplete }
    public var inEndgame: Bool { unrequested.isEmpty && !have.isComplete }

    // MARK: availability

    public mutating func peerHas(piece: Int) { availability[piece] += 1 }
    public mutating func peerHas(_ bits: Bitfield) { bits.forEachSet { availability[$0] += 1 } }
    public mutating func peerGone(had bits: Bitfield) { bits.forEachSet { availability[$0] -= 1 } }

    // MARK: picking

    /// Up to `count` block requests for `peer`, which has the pieces in `peerHas`.
    /// `outstanding` are the peer's requests in flight (never duplicated to the same peer; in
    /// endgame a peer is asked for a duplicate only when it has none).
    /// `suggested` pieces (the peer's BEP 6 suggestions) come first; with `onlySuggested`
    /// nothing else is asked of this peer but endgame duplicates (a seeder that hands out
    /// distinct pieces to each peer refuses the others).
    public mutating func pick(for peer: Int, peerHas: Bitfield, count: Int,
                              outstanding: Set<BlockRequest>,
                              suggested: [Int] = [], onlySuggested: Bool = false) -> [BlockRequest] {
        guard count > 0 else { return [] }
        var out: [BlockRequest] = []
        for index in suggested where out.count < count {
            guard index >= 0, index < layout.pieceCount, peerHas[index], unrequested[index], mayTake(index, peer) else { continue }
            takeBlocks(piece: index, peer: peer, max: count - out.count, into: &out)
        }
        if !onlySuggested {
            // 1. Finish pieces already started, most complete first, so they can be verified and shared.
            // Started and not fully requested: both bits set.
            var inProgress: [(received: Int, piece: Int)] = []
            let open = started.bytes, free = unrequested.bytes, theirs = peerHas.bytes
            Bitfield.forEachSetBit(byteCount: open.count, of: { open[$0] & free[$0] & theirs[$0] }) { i in
                inProgress.append((partial[i]!.receivedCount, i))
            }
            inProgress.sort { ($0.received, -$0.piece) > ($1.received, -$1.piece) }
            for (_, index) in inProgress where out.count < count && mayTake(index, peer) {
                takeBlocks(piece: index, peer: peer, max: count - out.count, into: &out)
            }
            // 2. New pieces: random for the first few, then rarest first with a random tie-break.
            while out.count < count, let index = nextNewPiece(peerHas: peerHas) {
                takeBlocks(piece: index, peer: peer, max: count - out.count, into: &out)
            }
        }
        // 3. Endgame: a peer with nothing left to deliver is asked for one block already
        // requested elsewhere, in case that request is stuck behind a slow or vanished peer.
        // Idle links only, one block at a time (libtorrent's rule too): when the downlink is
        // the bottleneck, every duplicate delays the copy already on its way
        // (docs/design/engine.md).
        if out.isEmpty, outstanding.isEmpty, unrequested.isEmpty, let req = endgameBlock(for: peer, peerHas: peerHas) {
            partial[req.piece]!.requesters[req.begin / PieceLayout.blockSize].append(peer)
            out.append(req)
        }
        return out
    }

    /// The endgame duplicate for `peer`: a missing block it was not asked for and fewer than
    /// `endgameDuplicates` peers were, with the fewest requesters, then of the piece nearest to
    /// complete (it can be verified and shared soonest), then the lowest piece and block.
    private func endgameBlock(for peer: Int, peerHas: Bitfield) -> BlockRequest? {
        var best: (requesters: Int, missing: Int, piece: Int, block: Int)?
        for (index, p) in partial where peerHas[index] && (p.owner ?? peer) == peer {
            let missing = p.received.count - p.receivedCount
            for b in 0..<p.received.count where !p.received[b] {
                let n = p.requesters[b].count
                guard n < endgameDuplicates, !p.requesters[b].contains(peer) else { continue }
                let key = (n, missing, index, b)
                if best.map({ key < $0 }) ?? true { best = key }
            }
        }
        return best.map { blockRequest(piece: $0.piece, block: $0.block) }
    }

    /// The unstarted piece the peer has that is rarest, ties broken by the random rank (during
    /// the first `randomFirstPieces`, by the rank alone). Scans the three bitfields a byte at a
    /// time: this runs for every refill of every pipeline, and a torrent may have 10,000s of pieces.
    private func nextNewPiece(peerHas: Bitfield) -> Int? {
        let random = have.setCount < randomFirstPieces
        var best = -1
        var bestKey = (Int.max, Int.max)
        let candidates = unrequested.bytes, busy = started.bytes, theirs = peerHas.bytes
        Bitfield.forEachSetBit(byteCount: candidates.count, of: { candidates[$0] & ~busy[$0] & theirs[$0] }) { i in
            let key = (random ? 0 : availability[i], rank[i])
            if key < bestKey { best = i; bestKey = key }
        }
        return best < 0 ? nil : best
    }

    /// False for a suspect piece that another peer is fetching.
    private func mayTake(_ index: Int, _ peer: Int) -> Bool {
        (partial[index]?.owner ?? peer) == peer
    }

    private mutating func takeBlocks(piece index: Int, peer: Int, max: Int, into out: inout [BlockRequest]) {
        var p = partial.removeValue(forKey: index) ?? PartialPiece(blocks: layout.blockCount(ofPiece: index))
        if suspect.contains(index) { p.owner = peer }
        var taken = 0
        for b in 0..<p.requesters.count where taken < max && p.requesters[b].isEmpty && !p.received[b] {
            p.requesters[b] = [peer]
            p.unrequestedCount -= 1
            out.append(blockRequest(piece: index, block: b))
            taken += 1
        }
        partial[index] = p
        started.set(index)
        if p.unrequestedCount == 0 { unrequested.clear(index) }
    }

    private func blockRequest(piece: Int, block: Int) -> BlockRequest {
        BlockRequest(piece: piece, begin: block * PieceLayout.blockSize,
                     length: layout.length(ofBlock: block, inPiece: piece))
    }

    // MARK: outcomes

    /// What receiving a block means for the engine.
    public struct Received: Sendable, Equatable {
        /// False when the block was not wanted: already received, or not asked of this peer.
        public var accepted: Bool
        /// True when every block of the piece has now arrived: hash and store it.
        public var pieceComplete: Bool
        /// Other peers that were asked for the same block (endgame): send them a cancel.
        public var cancelFrom: [Int]
    }

    /// Takes a block only from a peer it is requested from: a block nobody asked this peer for
    /// could be anyone's bytes, and once in a piece it spoils the piece and the blame for it.
    public mutating func blockReceived(_ req: BlockRequest, from peer: Int) -> Received {
        let b = req.begin / PieceLayout.blockSize
        // The index comes from the wire: check it before `have` (a Bitfield subscript traps out of range).
        guard req.piece >= 0, req.piece < layout.pieceCount, req.begin >= 0,
              !have[req.piece], let existing = partial[req.piece], b < existing.received.count,
              req.begin % PieceLayout.blockSize == 0, req.length == layout.length(ofBlock: b, inPiece: req.piece),
              !existing.received[b], existing.requesters[b].contains(peer) else {
            return Received(accepted: false, pieceComplete: false, cancelFrom: [])
        }
        // Taken out of the dictionary so the arrays inside are mutated in place, not copied.
        var p = partial.removeValue(forKey: req.piece)!
        let others = p.requesters[b].filter { $0 != peer }
        p.received[b] = true
        p.receivedCount += 1
        // From here on the one entry is the block's sender, for blame if the piece fails.
        p.requesters[b] = [peer]
        partial[req.piece] = p
        return Received(accepted: true, pieceComplete: p.receivedCount == p.received.count, cancelFrom: others)
    }

    /// The peer will not deliver `req` (choked, rejected, gone, snubbed): the block is free again.
    public mutating func requestDropped(_ req: BlockRequest, by peer: Int) {
        let b = req.begin / PieceLayout.blockSize
        guard req.piece >= 0, req.piece < layout.pieceCount,
              var p = partial[req.piece], b < p.received.count, !p.received[b] else { return }
        guard let k = p.requesters[b].firstIndex(of: peer) else { return }
        p.requesters[b].remove(at: k)
        if p.requesters[b].isEmpty {
            p.unrequestedCount += 1
            unrequested.set(req.piece)
        }
        if p.owner == peer, !p.requesters.indices.contains(where: { !p.received[$0] && !p.requesters[$0].isEmpty }) {
            // Its owner stopped fetching a suspect piece: start it over with the next peer, so
            // the piece still comes from one sender.
            p = PartialPiece(blocks: p.received.count)
        }
        partial[req.piece] = p
    }

    /// The piece hashed correctly and is stored.
    public mutating func pieceVerified(_ index: Int) {
        partial[index] = nil
        suspect.remove(index)
        started.clear(index)
        unrequested.clear(index)
        have.set(index)
    }

    /// The piece failed its hash: every block must be fetched again, from one peer (see
    /// `suspect`). Returns the sender of each block, for the engine's blame.
    public mutating func pieceFailed(_ index: Int) -> [Int] {
        let senders = partial[index]?.requesters.compactMap(\.first) ?? []
        partial[index] = nil
        suspect.insert(index)
        started.clear(index)
        unrequested.set(index)
        return senders
    }

    /// Forgets every block `peer` delivered to pieces still being fetched (it was banned:
    /// its other blocks are as suspect as the ones that proved bad). Pieces already complete
    /// are with the hash check, which judges them. Returns the bytes dropped.
    @discardableResult
    public mutating func discardBlocks(from peer: Int) -> Int {
        var dropped = 0
        for (index, var p) in partial where p.receivedCount < p.received.count {
            var changed = false
            for b in p.received.indices where p.received[b] && p.requesters[b] == [peer] {
                p.received[b] = false
                p.receivedCount -= 1
                p.requesters[b] = []
                p.unrequestedCount += 1
                dropped += layout.length(ofBlock: b, inPiece: index)
                changed = true
            }
            if p.owner == peer { p.owner = nil; changed = true }
            guard changed else { continue }
            partial[index] = p
            unrequested.set(index)
        }
        return dropped
    }

    /// True while a piece in progress holds a block delivered by `peer`.
    public func holdsBlocks(from peer: Int) -> Bool {
        partial.values.contains { p in p.received.indices.contains { p.received[$0] && p.requesters[$0] == [peer] } }
    }

    /// True when we lack a piece the peer has (so we are interested in it).
    public func wantsAny(of peerHas: Bitfield) -> Bool {
        if peerHas.isComplete { return !have.isComplete }
        return peerHas.hasAny(notIn: have)
    }
}
