import BitTorrent
@testable import StarlingNode
import Testing

@Suite("Who a session unchokes")
struct SeedUnchokeTests {
    /// `n` interested peers with nothing, and how many of them the session unchoked.
    func unchokedCount(_ h: SessionHarness, peers n: Int) throws -> (unchoked: Int, slots: Int) {
        let links = try (1...n).map { try h.connect(id: $0, fast: true, complete: false) }
        for link in links {
            h.session.handle(.interested, from: link)
            // The read batch ends, as channelReadComplete ends it: interest changes rechoke then.
            h.session.readBatchEnded(link)
        }
        return (links.filter { !$0.amChoking }.count, h.session.config.uploadSlots)
    }

    @Test("a distinct-first seed unchokes every interested peer, beyond the upload slots")
    func seedServesEveryone() throws {
        let h = try SessionHarness("unchoke-seed", seeding: true)
        defer { try? h.close() }
        let (unchoked, slots) = try unchokedCount(h, peers: 24)
        #expect(slots < 24)
        #expect(unchoked == 24)
    }

    @Test("a downloading session unchokes no more interested peers than its upload slots")
    func downloaderKeepsSlots() throws {
        let h = try SessionHarness("unchoke-download")
        defer { try? h.close() }
        // They lack everything we have (nothing yet), yet ask: the slots still bound the choker.
        let (unchoked, slots) = try unchokedCount(h, peers: 24)
        #expect(unchoked == slots)
    }
}
