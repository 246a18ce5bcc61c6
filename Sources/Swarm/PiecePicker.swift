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
    /// Pieces being fetched, in slots: `slotOf[piece]` names a piece's slot in `partial`
    /// (-1: none), so a lookup is an index where a dictionary hashed the piece for every
    /// block and request. A free slot's piece is -1.
    private var slotOf: [Int32]
    private var partial: [PartialPiece] = []
    private var freeSlots: [Int] = []
    /// Pieces (not had) with at least one block not yet requested, to find work quickly.
    private var unrequested: Bitfield
    /// Pieces in `partial`: bit sets, so finding a new piece scans bytes, not hash tables.
    private var started: Bitfield
    /// Pieces that failed their hash: fetched again from one peer only (`PartialPiece.owner`),
    /// so the next copy either verifies (and shows which earlier blocks were bad) or has a
    /// single sender to blame. Mixed again, a liar's blocks could keep spoiling it.
    private var suspect: Set<Int> = []

    struct PartialPiece: Sendable {
        var piece: Int
        /// Per block, the peers it is requested from, in the order they were asked: `width`
        /// entries from `block * width`, unused ones -1 (one array for the piece, not one per block).
        private var requesters: [Int]
        private var width: Int
        var received: [Bool]
        var receivedCount = 0
        var unrequestedCount: Int
        /// The one peer a suspect piece is fetched from.
        var owner: Int?

        init(piece: Int, blocks: Int) {
            self.piece = piece
            width = 2
            requesters = Array(repeating: -1, count: 2 * blocks)
            received = Array(repeating: false, count: blocks)
            unrequestedCount = blocks
        }

        var blockCount: Int { received.count }
        func requesterCount(_ b: Int) -> Int {
            var n = 0
            while n < width, requesters[b * width + n] >= 0 { n += 1 }
            return n
        }
        func first(_ b: Int) -> Int? { requesters[b * width] >= 0 ? requesters[b * width] : nil }
        func isRequested(_ b: Int) -> Bool { requesters[b * width] >= 0 }
        func isRequested(_ b: Int, by peer: Int) -> Bool { (0..<width).contains { requesters[b * width + $0] == peer } }
        /// True when `peer` is the block's one requester (its sender, once received).
        func isOnly(_ b: Int, _ peer: Int) -> Bool { requesters[b * width] == peer && (width == 1 || requesters[b * width + 1] < 0) }
        /// The block's requesters other than `peer`, in order.
        func requesters(_ b: Int, besides peer: Int) -> [Int] {
            (0..<requesterCount(b)).map { requesters[b * width + $0] }.filter { $0 != peer }
        }

        /// Makes `peer` the block's one requester (nil: none).
        mutating func setOnly(_ b: Int, _ peer: Int?) {
            for k in 0..<width { requesters[b * width + k] = -1 }
            if let peer { requesters[b * width] = peer }
        }

        mutating func add(_ b: Int, _ peer: Int) {
            let n = requesterCount(b)
            if n == width { widen() }
            requesters[b * width + n] = peer
        }

        /// Removes `peer` from the block's requesters; false when it was not one.
        mutating func remove(_ b: Int, _ peer: Int) -> Bool {
            let n = requesterCount(b)
            guard let k = (0..<n).first(where: { requesters[b * width + $0] == peer }) else { return false }
            for j in k..<(n - 1) { requesters[b * width + j] = requesters[b * width + j + 1] }
            requesters[b * width + n - 1] = -1
            return true
        }

        /// Room for one more requester per block (`endgameDuplicates` above 2).
        private mutating func widen() {
            var wider = Array(repeating: -1, count: (width + 1) * blockCount)
            for b in 0..<blockCount {
                for k in 0..<width { wider[b * (width + 1) + k] = requesters[b * width + k] }
            }
            requesters = wider
            width += 1
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
        slotOf = Array(repeating: -1, count: layout.pieceCount)
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
            Bitfield.forEachSetBit(in: started, unrequested, peerHas, where: { $0 & $1 & $2 }) { i in
                inProgress.append((partial[Int(slotOf[i])].receivedCount, i))
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
            partial[Int(slotOf[req.piece])].add(req.begin / layout.blockLength, peer)
            out.append(req)
        }
        return out
    }

    /// The endgame duplicate for `peer`: a missing block it was not asked for and fewer than
    /// `endgameDuplicates` peers were, with the fewest requesters, then of the piece nearest to
    /// complete (it can be verified and shared soonest), then the lowest piece and block.
    private func endgameBlock(for peer: Int, peerHas: Bitfield) -> BlockRequest? {
        var best: (requesters: Int, missing: Int, piece: Int, block: Int)?
        for p in partial where p.piece >= 0 && peerHas[p.piece] && (p.owner ?? peer) == peer {
            let index = p.piece, missing = p.blockCount - p.receivedCount
            for b in 0..<p.blockCount where !p.received[b] {
                let n = p.requesterCount(b)
                guard n < endgameDuplicates, !p.isRequested(b, by: peer) else { continue }
                let key = (n, missing, index, b)
                if best.map({ key < $0 }) ?? true { best = key }
            }
        }
        return best.map { blockRequest(piece: $0.piece, block: $0.block) }
    }

    /// The unstarted piece the peer has that is rarest, ties broken by the random rank (during
    /// the first `randomFirstPieces`, by the rank alone). Scans the three bitfields a word at a
    /// time: this runs for every refill of every pipeline, and a torrent may have 10,000s of pieces.
    private func nextNewPiece(peerHas: Bitfield) -> Int? {
        let random = have.setCount < randomFirstPieces
        var best = -1
        var bestKey = (Int.max, Int.max)
        Bitfield.forEachSetBit(in: unrequested, started, peerHas, where: { $0 & ~$1 & $2 }) { i in
            let key = (random ? 0 : availability[i], rank[i])
            if key < bestKey { best = i; bestKey = key }
        }
        return best < 0 ? nil : best
    }

    /// False for a suspect piece that another peer is fetching.
    private func mayTake(_ index: Int, _ peer: Int) -> Bool {
        slotOf[index] < 0 || (partial[Int(slotOf[index])].owner ?? peer) == peer
    }

    /// The slot of a piece in progress, made for it if it has none.
    private mutating func slot(for index: Int) -> Int {
        if slotOf[index] >= 0 { return Int(slotOf[index]) }
        let p = PartialPiece(piece: index, blocks: layout.blockCount(ofPiece: index))
        let s: Int
        if let free = freeSlots.popLast() {
            partial[free] = p
            s = free
        } else {
            s = partial.count
            partial.append(p)
        }
        slotOf[index] = Int32(s)
        return s
    }

    /// Forgets a piece's progress.
    private mutating func release(_ index: Int) {
        let s = Int(slotOf[index])
        guard s >= 0 else { return }
        partial[s] = PartialPiece(piece: -1, blocks: 0)
        slotOf[index] = -1
        freeSlots.append(s)
    }

    private mutating func takeBlocks(piece index: Int, peer: Int, max: Int, into out: inout [BlockRequest]) {
        let s = slot(for: index)
        if suspect.contains(index) { partial[s].owner = peer }
        var taken = 0
        for b in 0..<partial[s].blockCount where taken < max && !partial[s].isRequested(b) && !partial[s].received[b] {
            partial[s].setOnly(b, peer)
            partial[s].unrequestedCount -= 1
            out.append(blockRequest(piece: index, block: b))
            taken += 1
        }
        started.set(index)
        if partial[s].unrequestedCount == 0 { unrequested.clear(index) }
    }

    private func blockRequest(piece: Int, block: Int) -> BlockRequest {
        BlockRequest(piece: piece, begin: block * layout.blockLength,
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
        let b = req.begin / layout.blockLength
        // The index comes from the wire: check it before `have` (a Bitfield subscript traps out of range).
        guard req.piece >= 0, req.piece < layout.pieceCount, req.begin >= 0,
              !have[req.piece], slotOf[req.piece] >= 0 else {
            return Received(accepted: false, pieceComplete: false, cancelFrom: [])
        }
        let s = Int(slotOf[req.piece])
        guard b < partial[s].blockCount, req.begin % layout.blockLength == 0,
              req.length == layout.length(ofBlock: b, inPiece: req.piece),
              !partial[s].received[b], partial[s].isRequested(b, by: peer) else {
            return Received(accepted: false, pieceComplete: false, cancelFrom: [])
        }
        let others = partial[s].requesters(b, besides: peer)
        partial[s].received[b] = true
        partial[s].receivedCount += 1
        // From here on the one entry is the block's sender, for blame if the piece fails.
        partial[s].setOnly(b, peer)
        return Received(accepted: true, pieceComplete: partial[s].receivedCount == partial[s].blockCount, cancelFrom: others)
    }

    /// The peer will not deliver `req` (choked, rejected, gone, snubbed): the block is free again.
    public mutating func requestDropped(_ req: BlockRequest, by peer: Int) {
        let b = req.begin / layout.blockLength
        guard req.piece >= 0, req.piece < layout.pieceCount, slotOf[req.piece] >= 0 else { return }
        let s = Int(slotOf[req.piece])
        guard b < partial[s].blockCount, !partial[s].received[b], partial[s].remove(b, peer) else { return }
        if !partial[s].isRequested(b) {
            partial[s].unrequestedCount += 1
            unrequested.set(req.piece)
        }
        if partial[s].owner == peer, !(0..<partial[s].blockCount).contains(where: { !partial[s].received[$0] && partial[s].isRequested($0) }) {
            // Its owner stopped fetching a suspect piece: start it over with the next peer, so
            // the piece still comes from one sender.
            partial[s] = PartialPiece(piece: req.piece, blocks: partial[s].blockCount)
        }
    }

    /// `peer` is gone: a suspect piece it was fetching alone starts over for whoever asks next.
    /// Its requests are dropped with it, but when none was in flight (all it had been asked
    /// for had arrived) nothing released the piece, and no other peer may take it: the download
    /// stalled one piece short (starling-sim, liars and churn together).
    public mutating func peerLeft(_ peer: Int) {
        for s in partial.indices where partial[s].piece >= 0 && partial[s].owner == peer
            && partial[s].receivedCount < partial[s].blockCount {
            partial[s] = PartialPiece(piece: partial[s].piece, blocks: partial[s].blockCount)
            unrequested.set(partial[s].piece)
        }
    }

    /// The piece hashed correctly and is stored.
    public mutating func pieceVerified(_ index: Int) {
        release(index)
        suspect.remove(index)
        started.clear(index)
        unrequested.clear(index)
        have.set(index)
    }

    /// The piece failed its hash: every block must be fetched again, from one peer (see
    /// `suspect`). Returns the sender of each block, for the engine's blame.
    public mutating func pieceFailed(_ index: Int) -> [Int] {
        var senders: [Int] = []
        if slotOf[index] >= 0 {
            let p = partial[Int(slotOf[index])]
            senders = (0..<p.blockCount).compactMap { p.first($0) }
        }
        release(index)
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
        for s in partial.indices where partial[s].piece >= 0 && partial[s].receivedCount < partial[s].blockCount {
            let index = partial[s].piece
            var changed = false
            for b in 0..<partial[s].blockCount where partial[s].received[b] && partial[s].isOnly(b, peer) {
                partial[s].received[b] = false
                partial[s].receivedCount -= 1
                partial[s].setOnly(b, nil)
                partial[s].unrequestedCount += 1
                dropped += layout.length(ofBlock: b, inPiece: index)
                changed = true
            }
            if partial[s].owner == peer { partial[s].owner = nil; changed = true }
            guard changed else { continue }
            unrequested.set(index)
        }
        return dropped
    }

    /// True while a piece in progress holds a block delivered by `peer`.
    public func holdsBlocks(from peer: Int) -> Bool {
        partial.contains { p in p.piece >= 0 && p.received.indices.contains { p.received[$0] && p.isOnly($0, peer) } }
    }

    /// True when we lack a piece the peer has (so we are interested in it).
    public func wantsAny(of peerHas: Bitfield) -> Bool {
        if peerHas.isComplete { return !have.isComplete }
        return peerHas.hasAny(notIn: have)
    }
}
