import BitTorrent

/// A seeder's rule for spending its upload on data the swarm has least of.
///
/// In a rollout the origin seeder's uplink is the scarcest resource: every block it sends
/// twice while another has gone out fewer times is wasted. A request is served only when its
/// block is among the least-uploaded blocks so far; otherwise it is refused (a BEP 6 reject)
/// and the requester fetches it from a peer that got it. The seeder thus cycles through the
/// file: each block once, then each block twice, and so on, so no block is ever withheld
/// for long. An idle seeder serves anything: duplicates cost nothing then, and this keeps
/// the rule from ever stalling a swarm (two seeders each refusing what the other sent).
public struct DistinctFirstServing: Sendable {
    public let layout: PieceLayout
    private var served: [UInt8]
    private let blocksPerPiece: Int
    /// How many blocks have been served exactly `level` times (index = level, capped at 255).
    private var blocksAtLevel: [Int]
    /// The fewest times any block has been served.
    public private(set) var minimumLevel = 0

    public init(layout: PieceLayout) {
        self.layout = layout
        blocksPerPiece = max(1, layout.pieceLength / PieceLayout.blockSize)
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
    }

    /// Blocks never uploaded yet.
    public var unservedBlocks: Int { blocksAtLevel[0] }

    private func slot(_ req: BlockRequest) -> Int? {
        guard req.begin % PieceLayout.blockSize == 0 else { return nil }
        let index = req.piece * blocksPerPiece + req.begin / PieceLayout.blockSize
        guard index < served.count, served[index] < 255 else { return nil }
        return index
    }

    /// True when `req` should be uploaded now; counts it as served when so. `idle` means the
    /// seeder has no other upload waiting. Requests not aligned to 16 KiB blocks are always
    /// served (other clients may split differently).
    public mutating func admit(_ req: BlockRequest, idle: Bool = false) -> Bool {
        guard let index = slot(req) else { return true }
        let level = Int(served[index])
        guard level <= minimumLevel || idle else { return false }
        if level < 254 {
            served[index] += 1
            blocksAtLevel[level] -= 1
            blocksAtLevel[level + 1] += 1
            while minimumLevel < 254, blocksAtLevel[minimumLevel] == 0 { minimumLevel += 1 }
        }
        return true
    }

    /// An admitted request that was never sent (cancelled, or the peer was choked or left).
    public mutating func withdraw(_ req: BlockRequest) {
        guard let index = slot(req), served[index] > 0, served[index] < 254 else { return }
        let level = Int(served[index])
        served[index] -= 1
        blocksAtLevel[level] -= 1
        blocksAtLevel[level - 1] += 1
        minimumLevel = min(minimumLevel, level - 1)
    }
}
