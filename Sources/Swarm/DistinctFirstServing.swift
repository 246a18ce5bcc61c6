import BitTorrent

/// A seeder's rule for spending its upload on data the swarm does not have yet.
///
/// In a rollout the origin seeder's uplink is the scarcest resource: every byte it sends
/// twice is a byte of the artifact it has not sent at all. While some block has never been
/// uploaded, a request for a block already uploaded once is refused (a BEP 6 reject), and
/// the requester fetches it from the peer that got it. Once every block has gone out, all
/// requests are served, so a peer that left with the only copy cannot stall the swarm.
public struct DistinctFirstServing: Sendable {
    public let layout: PieceLayout
    private var served: [UInt8]
    private let blocksPerPiece: Int
    public private(set) var unservedBlocks: Int

    public init(layout: PieceLayout) {
        self.layout = layout
        blocksPerPiece = max(1, layout.pieceLength / PieceLayout.blockSize)
        let total = (0..<layout.pieceCount).reduce(0) { $0 + layout.blockCount(ofPiece: $1) }
        served = [UInt8](repeating: 0, count: max(1, layout.pieceCount * blocksPerPiece))
        unservedBlocks = total
    }

    /// True when `req` should be uploaded now; counts it as served when so.
    /// Requests not aligned to 16 KiB blocks are always served (other clients may split differently).
    public mutating func admit(_ req: BlockRequest) -> Bool {
        guard req.begin % PieceLayout.blockSize == 0 else { return true }
        let index = req.piece * blocksPerPiece + req.begin / PieceLayout.blockSize
        guard index < served.count else { return true }
        if served[index] == 0 {
            served[index] = 1
            unservedBlocks -= 1
            return true
        }
        return unservedBlocks <= 0
    }
}
