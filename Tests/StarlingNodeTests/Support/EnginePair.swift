import BitTorrent
import Foundation
import TestSupport
import Logging
import NIOCore
@testable import StarlingNode
import Storage

/// A seed engine and a peer engine in this process, each on a loop of `group`, listening.
func startEnginePair(seed: EngineConfig, peer: EngineConfig, group: EventLoopGroup,
                     label: String) async throws -> (seed: PeerEngine, peer: PeerEngine) {
    let logger = Logger(label: label)
    let s = try PeerEngine(config: seed, loop: group.next(), logger: logger)
    let p = try PeerEngine(config: peer, loop: group.next(), logger: logger)
    try await s.start()
    try await p.start()
    return (s, p)
}

/// A scratch folder holding `data.bin` (`size` bytes of seeded random data) and its torrent.
/// The caller removes `dir`.
func scratchTorrent(_ name: String, size: Int, seed: UInt64, pieceLength: Int? = nil) throws
    -> (dir: URL, file: URL, data: Data, metainfo: Metainfo) {
    let dir = try TestPaths.scratch(name)
    let file = dir.appendingPathComponent("data.bin")
    let data = randomData(size, seed: seed)
    try data.write(to: file)
    var builder = TorrentBuilder()
    if let pieceLength { builder.pieceLength = pieceLength }
    return (dir, file, data, try builder.build(path: file.path).metainfo)
}
