import BitTorrent
import Swarm
import Testing

@Suite("Distinct-first serving")
struct DistinctFirstServingTests {
    let layout = PieceLayout(totalLength: 3 * 32 * 1024 + 100, pieceLength: 32 * 1024)   // 7 blocks, the last short

    func req(_ piece: Int, _ block: Int) -> BlockRequest {
        BlockRequest(piece: piece, begin: block * PieceLayout.blockSize, length: layout.length(ofBlock: block, inPiece: piece))
    }

    /// Admits each request in turn and returns the answers.
    func admit(_ s: inout DistinctFirstServing, _ blocks: [(Int, Int)], idle: Bool = false) -> [Bool] {
        blocks.map { s.admit(req($0.0, $0.1), idle: idle) }
    }

    @Test("each block goes out once before any block goes out twice")
    func cyclesThroughTheFile() {
        var s = DistinctFirstServing(layout: layout)
        #expect(s.unservedBlocks == 7)
        let r1 = admit(&s, [(0, 0), (0, 0)])
        #expect(r1 == [true, false], "a second copy while other blocks never went out")
        let r2 = admit(&s, [(0, 1), (1, 0), (1, 1), (2, 0), (2, 1)])
        #expect(r2 == [true, true, true, true, true])
        let r3 = admit(&s, [(1, 1)])
        #expect(r3 == [false])
        let r4 = admit(&s, [(3, 0)])
        #expect(r4 == [true], "the short last block counts like any other")
        #expect(s.unservedBlocks == 0)
        #expect(s.minimumLevel == 1)
        let r5 = admit(&s, [(2, 1), (2, 1)])
        #expect(r5 == [true, false], "second round: one copy each before a third")
    }

    @Test("an idle seeder serves anything, so two seeders can never stall a swarm")
    func idleServesDuplicates() {
        var s = DistinctFirstServing(layout: layout)
        let r6 = admit(&s, [(0, 0)])
        #expect(r6 == [true])
        let r7 = admit(&s, [(0, 0)], idle: true)
        #expect(r7 == [true])
    }

    @Test("a withdrawn request (cancelled, choked, peer gone) no longer counts as sent")
    func withdrawRollsBack() {
        var s = DistinctFirstServing(layout: layout)
        for p in 0..<3 { for b in 0..<2 { _ = s.admit(req(p, b)) } }
        _ = s.admit(req(3, 0))
        #expect(s.minimumLevel == 1)
        s.withdraw(req(1, 0))
        #expect(s.minimumLevel == 0)
        let r8 = admit(&s, [(2, 0), (1, 0)])
        #expect(r8 == [false, true])
        #expect(s.minimumLevel == 1)
    }

    @Test("requests not on a 16 KiB boundary are always served")
    func unalignedRequests() {
        var s = DistinctFirstServing(layout: layout)
        let first = s.admit(BlockRequest(piece: 0, begin: 100, length: 1000))
        let second = s.admit(BlockRequest(piece: 0, begin: 100, length: 1000))
        #expect(first && second)
        #expect(s.unservedBlocks == 7)
    }
}
