/// Sizes of pieces and 16 KiB blocks for a torrent of a given total length.
public struct PieceLayout: Sendable, Hashable {
    /// The standard request size (BEP 3 practice; larger requests are refused by peers).
    public static let blockSize = 16 * 1024

    public let totalLength: Int64
    public let pieceLength: Int
    public let pieceCount: Int

    public init(totalLength: Int64, pieceLength: Int) {
        precondition(pieceLength > 0 && totalLength >= 0)
        self.totalLength = totalLength
        self.pieceLength = pieceLength
        pieceCount = Int((totalLength + Int64(pieceLength) - 1) / Int64(pieceLength))
    }

    /// Byte length of piece `index` (the last one may be short).
    public func length(ofPiece index: Int) -> Int {
        let start = offset(ofPiece: index)
        return Int(min(Int64(pieceLength), totalLength - start))
    }

    public func offset(ofPiece index: Int) -> Int64 { Int64(index) * Int64(pieceLength) }

    public func blockCount(ofPiece index: Int) -> Int {
        (length(ofPiece: index) + Self.blockSize - 1) / Self.blockSize
    }

    public func length(ofBlock block: Int, inPiece index: Int) -> Int {
        min(Self.blockSize, length(ofPiece: index) - block * Self.blockSize)
    }

    /// True when a request lies inside one piece and is at most one block long. Alignment to
    /// 16 KiB is not required (BEP 3 does not demand it). Never traps, whatever the values.
    public func isValidRequest(piece: Int, begin: Int, length: Int) -> Bool {
        guard piece >= 0, piece < pieceCount, begin >= 0, length > 0, length <= Self.blockSize else { return false }
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
