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

    // MARK: suggestions

    let pieces8 = PieceLayout(totalLength: 8 * 32 * 1024, pieceLength: 32 * 1024)   // 8 pieces of 2 blocks

    func block(_ piece: Int, _ b: Int) -> BlockRequest {
        BlockRequest(piece: piece, begin: b * PieceLayout.blockSize, length: PieceLayout.blockSize)
    }

    @Test("suggestions: each piece to one peer, all pieces once before any twice, skipping what the peer has")
    func suggestionsSpreadDistinctPieces() {
        var rng = SplitMix64(seed: 7)
        var s = DistinctFirstServing(layout: pieces8, random: &rng)
        var given: [Int] = []
        var has = Bitfield(count: 8)
        has.set(3)
        for peer in 0..<4 {
            for _ in 0..<2 {
                if let p = s.suggest(to: peer, has: peer == 0 ? has : Bitfield(count: 8), now: 0) { given.append(p) }
            }
        }
        #expect(given.count == 8 && Set(given).count == 8, "eight distinct pieces for eight suggestions")
        #expect(!given[0..<2].contains(3), "peer 0 has piece 3")
        let more = s.suggest(to: 4, has: Bitfield(count: 8), now: 0)
        #expect(more == nil, "every piece is claimed")
    }

    @Test("a claim lets its peer fetch the piece, refuses others, and ends on have, release or timeout")
    func claims() {
        var rng = SplitMix64(seed: 1)
        var s = DistinctFirstServing(layout: pieces8, random: &rng)
        let none = Bitfield(count: 8)
        let p = s.suggest(to: 1, has: none, now: 0)!
        #expect(s.isClaimed(p, by: 1, now: 0))
        // Peer 1 gets both blocks; peer 2 asking for one again (a duplicate) is refused.
        let first = s.admit(block(p, 0), from: 1, assignedOnly: true, now: 1)
        #expect(first && !s.isSent(piece: p))
        let second = s.admit(block(p, 1), from: 1, assignedOnly: true, now: 2)
        #expect(second && s.isSent(piece: p))
        let duplicate = s.admit(block(p, 0), from: 2, now: 3)
        #expect(!duplicate)
        // Once peer 1 has it, the piece is not offered again in this round.
        s.peerHas(piece: p, peer: 1)
        #expect(!s.isClaimed(p, by: 1, now: 3))
        var toPeer2: [Int] = []
        while let q = s.suggest(to: 2, has: none, now: 3) { toPeer2.append(q) }
        #expect(toPeer2.count == 7 && !toPeer2.contains(p))
        // A peer that follows suggestions is refused a block it picked itself, unless the
        // seeder is idle.
        let own = s.admit(block(toPeer2[0], 0), from: 3, assignedOnly: true, now: 4)
        #expect(!own)
        let idle = s.admit(block(toPeer2[0], 0), from: 3, idle: true, assignedOnly: true, now: 4)
        #expect(idle)
        // Claims of a peer that leaves go to others; so do claims a peer sits on.
        #expect(s.suggest(to: 3, has: none, now: 5) == nil)
        s.release(peer: 2)
        let again = s.suggest(to: 3, has: none, now: 5)
        #expect(again != nil && again != p, "piece \(p) went out in full")
        s.claimTimeout = 100
        #expect(s.suggest(to: 4, has: none, now: 50) != again)
        let stale = s.suggest(to: 5, has: none, now: 5 + 101)
        #expect(stale != nil)
        #expect(!s.isClaimed(again!, by: 3, now: 5 + 101))
    }

    @Test("renewing a claim keeps it while the peer's requests wait")
    func renewKeepsClaim() {
        var rng = SplitMix64(seed: 3)
        var s = DistinctFirstServing(layout: pieces8, random: &rng)
        s.claimTimeout = 100
        let p = s.suggest(to: 1, has: Bitfield(count: 8), now: 0)!
        s.renew(piece: p, peer: 1, now: 90)
        #expect(s.isClaimed(p, by: 1, now: 150))
        let sent = s.admit(block(p, 0), from: 1, assignedOnly: true, now: 150)
        #expect(sent)
        #expect(s.isClaimed(p, by: 1, now: 240))
        #expect(!s.isClaimed(p, by: 1, now: 251))
    }

    @Test("a piece half sent to a peer that left is suggested again for its missing blocks")
    func halfSentPieceIsOfferedAgain() {
        let one = PieceLayout(totalLength: 32 * 1024, pieceLength: 32 * 1024)
        var rng = SplitMix64(seed: 3)
        var s = DistinctFirstServing(layout: one, random: &rng)
        let none = Bitfield(count: 1)
        let first = s.suggest(to: 1, has: none, now: 0)
        #expect(first == 0)
        let sent = s.admit(block(0, 0), from: 1, now: 0)
        #expect(sent)
        s.release(peer: 1)
        let again = s.suggest(to: 2, has: none, now: 1)
        #expect(again == 0, "block 1 never went out")
        let rest = s.admit(block(0, 1), from: 2, assignedOnly: true, now: 1)
        #expect(rest && s.minimumLevel == 1)
    }
}
