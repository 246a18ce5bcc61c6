import Bencode
import BitTorrent
import FuzzSupport

/// Metainfo (.torrent) parser: never traps, and what it accepts is self-consistent.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard let m = try? Metainfo(bytes: bytes(data, size)) else { return 0 }
    require(m.pieceLength > 0, "piece length \(m.pieceLength)")
    require(m.pieceHashes.count % 20 == 0, "pieces not a multiple of 20")
    require(m.totalLength >= 0 && m.totalLength <= Metainfo.maxTotalLength, "total length \(m.totalLength)")
    let layout = m.layout
    require(layout.pieceCount == m.pieceCount, "layout has \(layout.pieceCount) pieces, metainfo \(m.pieceCount)")
    if m.pieceCount > 0 {
        _ = m.pieceHash(m.pieceCount - 1)
        let last = layout.length(ofPiece: m.pieceCount - 1)
        require(last > 0 && last <= m.pieceLength, "last piece of \(last) bytes")
        _ = layout.length(ofBlock: layout.blockCount(ofPiece: m.pieceCount - 1) - 1, inPiece: m.pieceCount - 1)
    }
    _ = m.trackers
    return 0
}
