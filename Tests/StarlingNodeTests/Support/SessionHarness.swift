import BitTorrent
import Foundation
import Logging
import NIOCore
import NIOEmbedded
import NIOPosix
@testable import StarlingNode
import Storage

/// A session on an embedded loop with peers on embedded channels: the test plays the peers
/// and reads back what the session sends each of them.
final class SessionHarness {
    let loop = EmbeddedEventLoop()
    let pool = NIOThreadPool(numberOfThreads: 1)
    let dir: URL
    let data: Data
    let metainfo: Metainfo
    let session: TorrentSession
    var decoders: [Int: PeerWireDecoder] = [:]

    /// A torrent of 8 pieces of 64 KiB (4 blocks each), downloaded from nothing, or seeded
    /// from its complete file (`seeding`).
    init(_ name: String, seeding: Bool = false) throws {
        let scratch = try scratchTorrent(name, size: 512 * 1024, seed: 63, pieceLength: 64 * 1024)
        (dir, data, metainfo) = (scratch.dir, scratch.data, scratch.metainfo)
        let store = seeding
            ? try PieceStore(metainfo: metainfo, target: scratch.file.path, mode: .seed)
            : try PieceStore(metainfo: metainfo, target: dir.appendingPathComponent("out.bin").path, mode: .download)
        pool.start()
        session = TorrentSession(metainfo: metainfo, store: store,
                                 have: Bitfield(count: metainfo.pieceCount, allSet: seeding),
                                 loop: loop, pieceWorker: pool, config: EngineConfig(ip: "127.0.0.1"),
                                 logger: Logger(label: name))
    }

    /// A connected peer with every piece (`complete`) or none, that has not unchoked us yet.
    func connect(id: Int, fast: Bool, complete: Bool = true) throws -> PeerLink {
        let channel = EmbeddedChannel(loop: loop)
        try channel.connect(to: SocketAddress(ipAddress: "127.0.63.\(id)", port: 6881)).wait()
        let link = PeerLink(id: id, channel: channel, outbound: true,
                            remote: PeerAddress(host: "127.0.63.\(id)", port: 6881), pieceCount: metainfo.pieceCount)
        link.fast = fast
        decoders[id] = PeerWireDecoder(pieceCount: metainfo.pieceCount, expectHandshake: false)
        session.attach(link)
        session.handle(.bitfield(Bitfield(count: metainfo.pieceCount, allSet: complete).bytes), from: link)
        return link
    }

    /// The requests the session has written to `link` since the last call.
    func requests(to link: PeerLink) throws -> [BlockRequest] {
        var found: [BlockRequest] = []
        while var bytes = try (link.channel as! EmbeddedChannel).readOutbound(as: ByteBuffer.self) {
            while let frame = try decoders[link.id]!.decode(buffer: &bytes) {
                if case .message(.request(let r)) = frame { found.append(r) }
            }
        }
        return found
    }

    /// The block as `link` would send it.
    func deliver(_ r: BlockRequest, from link: PeerLink) {
        var block = ByteBuffer()
        block.writeBytes(data[(r.piece * metainfo.pieceLength + r.begin)...].prefix(r.length))
        session.handle(.piece(index: r.piece, begin: r.begin, data: block), from: link)
        session.readBatchEnded(link)
    }

    func close() throws {
        session.closeAll()
        try pool.syncShutdownGracefully()
        try? FileManager.default.removeItem(at: dir)
    }
}

