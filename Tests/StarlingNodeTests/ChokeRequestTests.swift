import BitTorrent
import NIOCore
@testable import StarlingNode
import Testing

@Suite("Requests across a choke")
struct ChokeRequestTests {
    /// Two peers A and B with every piece; A unchokes us and is asked for a full pipeline.
    func askOnePeer(_ name: String, fast: Bool) throws -> (h: SessionHarness, a: PeerLink, b: PeerLink, asked: [BlockRequest]) {
        let h = try SessionHarness(name)
        do {
            let a = try h.connect(id: 1, fast: fast)
            let b = try h.connect(id: 2, fast: fast)
            h.session.handle(.unchoke, from: a)
            let asked = try h.requests(to: a)
            try #require(asked.count == h.session.config.minPipeline)
            return (h, a, b, asked)
        } catch {
            try? h.close()
            throw error
        }
    }

    @Test("with the fast extension a choke keeps our requests: the blocks sent before it count, and only a reject frees a block")
    func fastChokeKeepsRequests() throws {
        let (h, a, b, asked) = try askOnePeer("choke-fast", fast: true)
        defer { try? h.close() }

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
        let (h, a, b, asked) = try askOnePeer("choke-plain", fast: false)
        defer { try? h.close() }

        h.session.handle(.choke, from: a)
        #expect(a.outstanding.isEmpty)
        h.session.handle(.unchoke, from: b)
        #expect(Set(try h.requests(to: b)).isSuperset(of: asked), "the blocks of the choke go to the other peer")
    }
}
