import BitTorrent
import Foundation
import Logging
import NIOCore
import NIOEmbedded
import NIOPosix
@testable import StarlingNode
import Storage
import Testing

/// A downloading session on an embedded loop with two peers on embedded channels: the test
/// plays both peers and reads back what the session asks each of them for.
private final class SessionHarness {
    let loop = EmbeddedEventLoop()
    let pool = NIOThreadPool(numberOfThreads: 1)
    let dir: URL
    let data: Data
    let metainfo: Metainfo
    let session: TorrentSession
    var decoders: [Int: PeerWireDecoder] = [:]

    /// 8 pieces of 64 KiB, 4 blocks each.
    init(_ name: String) throws {
        let scratch = try scratchTorrent(name, size: 512 * 1024, seed: 63, pieceLength: 64 * 1024)
        (dir, data, metainfo) = (scratch.dir, scratch.data, scratch.metainfo)
        pool.start()
        let out = dir.appendingPathComponent("out.bin").path
        let store = try PieceStore(metainfo: metainfo, target: out, mode: .download)
        session = TorrentSession(metainfo: metainfo, store: store, have: Bitfield(count: metainfo.pieceCount),
                                 loop: loop, pieceWorker: pool, config: EngineConfig(ip: "127.0.0.1"),
                                 logger: Logger(label: name))
    }

    /// A connected peer that has every piece and has not unchoked us yet.
    func connect(id: Int, fast: Bool) throws -> PeerLink {
        let channel = EmbeddedChannel(loop: loop)
        try channel.connect(to: SocketAddress(ipAddress: "127.0.63.\(id)", port: 6881)).wait()
        let link = PeerLink(id: id, channel: channel, outbound: true,
                            remote: PeerAddress(host: "127.0.63.\(id)", port: 6881), pieceCount: metainfo.pieceCount)
        link.fast = fast
        decoders[id] = PeerWireDecoder(pieceCount: metainfo.pieceCount, expectHandshake: false)
        session.attach(link)
        session.handle(.bitfield(Bitfield(count: metainfo.pieceCount, allSet: true).bytes), from: link)
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

@Suite("Requests across a choke")
struct ChokeRequestTests {
    @Test("with the fast extension a choke keeps our requests: the blocks sent before it count, and only a reject frees a block")
    func fastChokeKeepsRequests() throws {
        let h = try SessionHarness("choke-fast")
        defer { try? h.close() }
        let a = try h.connect(id: 1, fast: true)
        let b = try h.connect(id: 2, fast: true)
        h.session.handle(.unchoke, from: a)
        let asked = try h.requests(to: a)
        try #require(asked.count == EngineConfig(ip: "127.0.0.1").minPipeline)

        h.session.handle(.choke, from: a)
        #expect(a.outstanding == Set(asked), "requests stand until a block or a reject answers them")
        h.session.handle(.unchoke, from: b)
        let fromB = try h.requests(to: b)
        #expect(!fromB.isEmpty)
        #expect(Set(fromB).isDisjoint(with: asked), "nothing requested from the choking peer is asked twice")

        // A block A had already sent arrives after its choke: wanted, not wasted.
        h.deliver(asked[0], from: a)
        #expect(h.session.downloadedBytes == Int64(asked[0].length))
        #expect(h.session.wastedBytes == 0)

        // A rejects another: that block is free again, and B is asked for it next.
        h.session.handle(.reject(asked[1]), from: a)
        #expect(!a.outstanding.contains(asked[1]))
        h.deliver(fromB[0], from: b)
        #expect(try h.requests(to: b).contains(asked[1]))
        #expect(h.session.wastedBytes == 0)
    }

    @Test("without the fast extension a choke discards our requests: they are asked elsewhere at once")
    func plainChokeDropsRequests() throws {
        let h = try SessionHarness("choke-plain")
        defer { try? h.close() }
        let a = try h.connect(id: 1, fast: false)
        let b = try h.connect(id: 2, fast: false)
        h.session.handle(.unchoke, from: a)
        let asked = try h.requests(to: a)
        try #require(!asked.isEmpty)

        h.session.handle(.choke, from: a)
        #expect(a.outstanding.isEmpty)
        h.session.handle(.unchoke, from: b)
        #expect(Set(try h.requests(to: b)).isSuperset(of: asked), "the blocks of the choke go to the other peer")
    }
}
