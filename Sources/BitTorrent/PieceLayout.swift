/// Sizes of pieces and of the blocks requests ask for, for a torrent of a given total length.
public struct PieceLayout: Sendable, Hashable {
    /// The standard request size (BEP 3 practice; larger requests are refused by peers).
    public static let blockSize = 16 * 1024

    public let totalLength: Int64
    public let pieceLength: Int
    public let pieceCount: Int
    /// The unit of requests and blocks: `blockSize` for every peer on a wire. The fleet
    /// simulator passes a multiple of it, so that the rules decide per 64 KiB or per piece
    /// what they would decide per 16 KiB, in a quarter of the messages or fewer.
    public let blockLength: Int

    public init(totalLength: Int64, pieceLength: Int, blockLength: Int = PieceLayout.blockSize) {
        precondition(pieceLength > 0 && totalLength >= 0 && blockLength > 0)
        self.totalLength = totalLength
        self.pieceLength = pieceLength
        self.blockLength = blockLength
        pieceCount = Int((totalLength + Int64(pieceLength) - 1) / Int64(pieceLength))
    }

    /// Byte length of piece `index` (the last one may be short).
    public func length(ofPiece index: Int) -> Int {
        let start = offset(ofPiece: index)
        return Int(min(Int64(pieceLength), totalLength - start))
    }

    public func offset(ofPiece index: Int) -> Int64 { Int64(index) * Int64(pieceLength) }

    public func blockCount(ofPiece index: Int) -> Int {
        (length(ofPiece: index) + blockLength - 1) / blockLength
    }

    public func length(ofBlock block: Int, inPiece index: Int) -> Int {
        min(blockLength, length(ofPiece: index) - block * blockLength)
    }

    /// True when a request lies inside one piece and is at most one block long. Alignment to
    /// blocks is not required (BEP 3 does not demand it). Never traps, whatever the values.
    public func isValidRequest(piece: Int, begin: Int, length: Int) -> Bool {
        guard piece >= 0, piece < pieceCount, begin >= 0, length > 0, length <= blockLength else { return false }
        return begin <= self.length(ofPiece: piece) - length
    }
}

extension PieceLayout {
    /// The SHA-1 of each block of a piece's bytes, for blame (`Swarm.BlameLedger`).
    public static func blockDigests(_ piece: UnsafeRawBufferPointer) -> [SHA1Digest] {
        stride(from: 0, to: piece.count, by: blockSize).map { start in
            SHA1Hasher.hash(UnsafeRawBufferPointer(rebasing: piece[start..<min(start + blockSize, piece.count)]))
        }
    }
}
