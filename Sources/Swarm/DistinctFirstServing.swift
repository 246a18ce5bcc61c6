import BitTorrent

/// A seeder's rule for spending its upload on data the swarm has least of.
///
/// In a rollout the origin seeder's uplink is the scarcest resource: the swarm can never
/// finish before every block has left the seeder once, so every block it sends twice while
/// another has not gone out at all delays everyone. Two parts:
///
/// - **Suggestions** (BEP 6 `suggest piece`): each peer is pointed at pieces it lacks that
///   have gone out the fewest times, a different piece for each peer, taken in a random
///   order so two seeders hand out different pieces. A peer that follows them always has
///   work at the seeder that nobody else is fetching from it.
/// - **Admission**: a block is sent when it has gone out no more often than any other, when
///   its piece was suggested to the requester, or when the seeder has nothing else to send
///   (duplicates cost nothing then, and two seeders refusing each other can never stall a
///   swarm). Otherwise the request is refused (a BEP 6 reject) and the peer fetches the block
///   from a peer that got it.
///
/// Pure state: peers are opaque integers and time is injected nanoseconds.
public struct DistinctFirstServing: Sendable {
    public let layout: PieceLayout
    private var served: [UInt8]
    private let blocksPerPiece: Int
    /// How many blocks have been served exactly `level` times (index = level, capped at 255).
    private var blocksAtLevel: [Int]
    /// The fewest times any block has been served.
    public private(set) var minimumLevel = 0
    /// The fewest times any block of each piece has been served.
    private var pieceLevel: [UInt8]
    /// Which peer each piece is suggested to (-1: none), and since when.
    private var claimedBy: [Int]
    private var claimedAt: [UInt64]
    /// Each claimed piece's level when it was suggested: it is sent once every block is above.
    private var claimLevel: [UInt8]
    /// The order suggestions are handed out in, and where the next search starts.
    private let order: [Int]
    private var cursor = 0
    /// A suggestion the peer has not acted on for this long is offered to others again.
    public var claimTimeout: UInt64 = 5_000_000_000

    public init(layout: PieceLayout, random: inout some RandomNumberGenerator) {
        self.layout = layout
        blocksPerPiece = max(1, layout.pieceLength / layout.blockLength)
        served = [UInt8](repeating: 0, count: max(1, layout.pieceCount * blocksPerPiece))
        // Slots past the end of a short last piece are not blocks: mark them as never eligible.
        var total = 0
        for p in 0..<layout.pieceCount {
            let n = layout.blockCount(ofPiece: p)
            total += n
            for b in n..<blocksPerPiece { served[p * blocksPerPiece + b] = 255 }
        }
        blocksAtLevel = [Int](repeating: 0, count: 256)
        blocksAtLevel[0] = total
        pieceLevel = [UInt8](repeating: 0, count: layout.pieceCount)
        claimedBy = [Int](repeating: -1, count: layout.pieceCount)
        claimedAt = [UInt64](repeating: 0, count: layout.pieceCount)
        claimLevel = [UInt8](repeating: 0, count: layout.pieceCount)
        order = Array(0..<layout.pieceCount).shuffled(using: &random)
    }

    public init(layout: PieceLayout) {
        var random = SystemRandomNumberGenerator()
        self.init(layout: layout, random: &random)
    }

    /// Blocks never uploaded yet.
    public var unservedBlocks: Int { blocksAtLevel[0] }

    private func slot(_ req: BlockRequest) -> Int? {
        guard req.begin % layout.blockLength == 0 else { return nil }
        let index = req.piece * blocksPerPiece + req.begin / layout.blockLength
        guard index < served.count, served[index] < 255 else { return nil }
        return index
    }

    // MARK: admission

    /// True when `req` from `peer` should be uploaded now; counts it as served when so.
    /// `idle` means the seeder has no other upload waiting. A block of a piece suggested to
    /// `peer` renews the claim (`now`). With `assignedOnly` (a peer that follows suggestions)
    /// only such blocks are sent, or any when idle: a piece it picked itself may be the one
    /// about to be suggested to another peer. Requests not aligned to the layout's blocks are
    /// always served (other clients may split differently).
    public mutating func admit(_ req: BlockRequest, from peer: Int = -1, idle: Bool = false,
                               assignedOnly: Bool = false, now: UInt64 = 0) -> Bool {
        guard let index = slot(req) else { return true }
        let level = Int(served[index])
        let claimed = peer >= 0 && claimedBy[req.piece] == peer
        guard claimed || idle || (level <= minimumLevel && !assignedOnly) else { return false }
        if claimed { claimedAt[req.piece] = now }
        if level < 254 {
            served[index] += 1
            blocksAtLevel[level] -= 1
            blocksAtLevel[level + 1] += 1
            while minimumLevel < 254, blocksAtLevel[minimumLevel] == 0 { minimumLevel += 1 }
            updatePieceLevel(req.piece)
        }
        return true
    }

    /// An admitted block that never reached the peer (its write failed).
    public mutating func withdraw(_ req: BlockRequest) {
        guard let index = slot(req), served[index] > 0, served[index] < 254 else { return }
        let level = Int(served[index])
        served[index] -= 1
        blocksAtLevel[level] -= 1
        blocksAtLevel[level - 1] += 1
        minimumLevel = min(minimumLevel, level - 1)
        updatePieceLevel(req.piece)
    }

    private mutating func updatePieceLevel(_ piece: Int) {
        let first = piece * blocksPerPiece
        pieceLevel[piece] = served[first..<(first + layout.blockCount(ofPiece: piece))].min() ?? 0
    }

    // MARK: suggestions

    /// A piece for `peer` to fetch from this seeder, or nil: the next piece in the random
    /// order that it lacks (`has`), with a block that has gone out the fewest times, and not
    /// claimed by another peer. The piece is claimed for `peer` until it announces the piece,
    /// leaves, or neither asks for nor receives a block of it for `claimTimeout`. None at all
    /// while the last such pieces are claimed: the seeder then sends those, and its spare
    /// upload serves plain requests (`idle`).
    public mutating func suggest(to peer: Int, has: Bitfield, now: UInt64) -> Int? {
        let n = order.count
        for k in 0..<n {
            let at = (cursor + k) % n
            let p = order[at]
            guard !has[p], pieceLevel[p] <= minimumLevel else { continue }
            let owner = claimedBy[p]
            if owner >= 0, owner == peer || now &- claimedAt[p] < claimTimeout { continue }
            // Pieces go out in the random order, round after round.
            cursor = (at + 1) % n
            claimedBy[p] = peer
            claimedAt[p] = now
            claimLevel[p] = pieceLevel[p]
            return p
        }
        return nil
    }

    /// The peer announced the piece: its claim is used up.
    public mutating func peerHas(piece: Int, peer: Int) {
        guard piece >= 0, piece < claimedBy.count, claimedBy[piece] == peer else { return }
        claimedBy[piece] = -1
    }

    /// The peer asked for a block of the piece: its claim holds while the request waits.
    public mutating func renew(piece: Int, peer: Int, now: UInt64) {
        guard piece >= 0, piece < claimedBy.count, claimedBy[piece] == peer else { return }
        claimedAt[piece] = now
    }

    /// True once every block of a claimed piece has gone out since it was suggested.
    public func isSent(piece: Int) -> Bool {
        piece >= 0 && piece < pieceLevel.count && pieceLevel[piece] > claimLevel[piece]
    }

    /// True while `piece` is claimed for `peer` and the claim has not timed out.
    public func isClaimed(_ piece: Int, by peer: Int, now: UInt64) -> Bool {
        piece >= 0 && piece < claimedBy.count && claimedBy[piece] == peer && now &- claimedAt[piece] < claimTimeout
    }

    /// The peer left: its suggestions are free for others.
    public mutating func release(peer: Int) {
        for p in claimedBy.indices where claimedBy[p] == peer { claimedBy[p] = -1 }
    }
}
