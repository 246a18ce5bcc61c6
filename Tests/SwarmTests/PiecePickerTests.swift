import BitTorrent
import Swarm
import Testing

/// A tiny seeded generator so every run picks the same way (fileprivate: other files of
/// this target may define their own).
fileprivate let block = PieceLayout.blockSize

/// `pieces` pieces of `blocksPerPiece` blocks, the last piece short by `tail` bytes.
fileprivate func layout(pieces: Int, blocksPerPiece: Int = 4, tail: Int = 0) -> PieceLayout {
    PieceLayout(totalLength: Int64(pieces * blocksPerPiece * block - tail), pieceLength: blocksPerPiece * block)
}

fileprivate func picker(_ layout: PieceLayout, seed: UInt64 = 1, have: [Int] = [], randomFirst: Int = 0) -> PiecePicker {
    var rng = SplitMix64(seed: seed)
    var bits = Bitfield(count: layout.pieceCount)
    for i in have { bits.set(i) }
    var p = PiecePicker(layout: layout, have: bits, random: &rng)
    p.randomFirstPieces = randomFirst
    return p
}

fileprivate func bits(_ count: Int, _ set: [Int]) -> Bitfield {
    var b = Bitfield(count: count)
    for i in set { b.set(i) }
    return b
}

fileprivate func all(_ count: Int) -> Bitfield { Bitfield(count: count, allSet: true) }

extension PiecePicker {
    /// Delivers every block of `reqs` from `peer` and verifies the pieces that completed.
    fileprivate mutating func deliver(_ reqs: [BlockRequest], from peer: Int) {
        for r in reqs where blockReceived(r, from: peer).pieceComplete { pieceVerified(r.piece) }
    }
}

@Suite("Piece picker")
struct PiecePickerTests {
    @Test("a layout with a larger block asks for blocks of that size and takes only those")
    func largerBlocks() {
        // Pieces of 256 KiB in blocks of 64 KiB, the last piece 8 KiB short.
        let layout = PieceLayout(totalLength: 2 * 256 * 1024 - 8 * 1024, pieceLength: 256 * 1024, blockLength: 64 * 1024)
        #expect(layout.blockCount(ofPiece: 0) == 4)
        #expect(layout.length(ofBlock: 3, inPiece: 1) == 56 * 1024)
        #expect(layout.isValidRequest(piece: 0, begin: 0, length: 64 * 1024))
        var p = picker(layout)
        let reqs = p.pick(for: 1, peerHas: all(2), count: 8, outstanding: [])
        #expect(reqs.count == 8)
        #expect(reqs.allSatisfy { $0.begin % (64 * 1024) == 0 })
        #expect(reqs.map(\.length).reduce(0, +) == Int(layout.totalLength))
        // A 16 KiB piece of one of those blocks is not what was asked for.
        #expect(!p.blockReceived(BlockRequest(piece: reqs[0].piece, begin: 0, length: 16 * 1024), from: 1).accepted)
        p.deliver(reqs, from: 1)
        #expect(p.isComplete)
    }

    @Test("rarest first: the piece fewest peers have is picked first, then the next rarest")
    func rarestFirst() {
        let l = layout(pieces: 6)
        var p = picker(l)
        // availability: 0→3, 1→3, 2→1, 3→2, 4→3, 5→3
        p.peerHas(all(6))
        p.peerHas(bits(6, [0, 1, 3, 4, 5]))
        p.peerHas(bits(6, [0, 1, 4, 5]))
        p.peerHas(piece: 3)   // a later `have`
        p.peerHas(bits(6, [0, 1, 4, 5]))
        p.peerGone(had: bits(6, [3]))
        #expect(p.availability == [4, 4, 1, 2, 4, 4])
        let first = p.pick(for: 1, peerHas: all(6), count: 4, outstanding: [])
        #expect(first.map(\.piece) == [2, 2, 2, 2])
        #expect(first.map(\.begin) == [0, block, 2 * block, 3 * block])
        let second = p.pick(for: 1, peerHas: all(6), count: 4, outstanding: Set(first))
        #expect(second.map(\.piece) == [3, 3, 3, 3])
    }

    @Test("over many pieces, each new piece is a rarest one the peer has and nobody was asked for",
          arguments: [1 as UInt64, 2, 3])
    func rarestOverManyPieces(seed: UInt64) {
        let n = 203   // not a multiple of 8: the last byte of every bitfield is partial
        let l = layout(pieces: n, blocksPerPiece: 1)
        var p = picker(l, seed: seed, have: [0, 9, 100])
        var rng = SplitMix64(seed: seed &+ 100)
        for _ in 0..<5 {
            var b = Bitfield(count: n)
            for i in 0..<n where rng.next() % 3 == 0 { b.set(i) }
            p.peerHas(b)
        }
        var theirs = Bitfield(count: n)
        for i in 0..<n where rng.next() % 2 == 0 { theirs.set(i) }
        var asked = Set<Int>()
        var outstanding = Set<BlockRequest>()
        while true {
            let reqs = p.pick(for: 1, peerHas: theirs, count: 1, outstanding: outstanding)
            guard let r = reqs.first else { break }
            // Candidates: pieces they have, we lack, and nobody was asked for yet.
            let candidates = (0..<n).filter { theirs[$0] && !p.have[$0] && !asked.contains($0) }
            let rarest = candidates.map { p.availability[$0] }.min()
            #expect(candidates.contains(r.piece))
            #expect(p.availability[r.piece] == rarest)
            asked.insert(r.piece)
            outstanding.insert(r)
        }
        #expect(asked == Set((0..<n).filter { theirs[$0] && !p.have[$0] }))
    }

    @Test("rarest first only among the pieces the peer has")
    func rarestAmongPeerPieces() {
        var p = picker(layout(pieces: 4))
        p.peerHas(bits(4, [0]))
        p.peerHas(bits(4, [0, 1, 2, 3]))
        p.peerHas(bits(4, [1, 2, 3]))
        p.peerHas(bits(4, [1, 3]))
        // rarest overall is 0 (2 peers), but the peer lacks it; among 2 (2), 3 (3): 2
        let reqs = p.pick(for: 7, peerHas: bits(4, [2, 3]), count: 1, outstanding: [])
        #expect(reqs == [BlockRequest(piece: 2, begin: 0, length: block)])
    }

    @Test("the first pieces are random, not rarest, and depend on the generator")
    func randomFirstPieces() {
        let l = layout(pieces: 64, blocksPerPiece: 1)
        var firsts = Set<Int>()
        for seed in UInt64(1)...8 {
            var p = picker(l, seed: seed, randomFirst: 4)
            // piece 63 is the unique rarest; a rarest-first pick would always take it.
            p.peerHas(bits(64, Array(0..<63)))
            p.peerHas(all(64))
            let reqs = p.pick(for: 1, peerHas: all(64), count: 4, outstanding: [])
            #expect(reqs.count == 4)
            #expect(Set(reqs.map(\.piece)).count == 4)
            firsts.insert(reqs[0].piece)
        }
        #expect(firsts.count > 1, "every seed picked the same first piece")
        #expect(!firsts.isSubset(of: [63]))
    }

    @Test("after randomFirstPieces verified pieces, rarest first takes over")
    func randomThenRarest() throws {
        let l = layout(pieces: 64, blocksPerPiece: 1)
        var p = picker(l, seed: 99, randomFirst: 2)
        p.peerHas(bits(64, Array(0..<63)))
        p.peerHas(all(64))
        let r = p.pick(for: 1, peerHas: all(64), count: 2, outstanding: [])
        try #require(!r.contains { $0.piece == 63 }, "seed picked the rare piece at random; choose another seed")
        p.deliver(r, from: 1)
        #expect(p.have.setCount == 2)
        #expect(p.pick(for: 1, peerHas: all(64), count: 1, outstanding: []).map(\.piece) == [63])
    }

    @Test("partial pieces are finished before new ones, most complete first")
    func partialFirst() {
        let l = layout(pieces: 4)
        var p = picker(l)
        p.peerHas(all(4))
        // peer 1 takes two blocks of each of two pieces, then drops some
        let a = p.pick(for: 1, peerHas: all(4), count: 8, outstanding: [])
        #expect(Set(a.map(\.piece)).count == 2)
        let pieceA = a[0].piece, pieceB = a[4].piece
        // piece A: 3 blocks received; piece B: 1 block received; the rest dropped.
        for r in a.filter({ $0.piece == pieceA }).prefix(3) { #expect(p.blockReceived(r, from: 1).accepted) }
        for r in a.filter({ $0.piece == pieceB }).prefix(1) { #expect(p.blockReceived(r, from: 1).accepted) }
        p.requestDropped(BlockRequest(piece: pieceA, begin: 3 * block, length: block), by: 1)
        for b in 1..<4 { p.requestDropped(BlockRequest(piece: pieceB, begin: b * block, length: block), by: 1) }
        // a new peer must finish A's last block, then B's three, before any new piece
        let next = p.pick(for: 2, peerHas: all(4), count: 5, outstanding: [])
        #expect(next.map(\.piece) == [pieceA, pieceB, pieceB, pieceB] + [next[4].piece])
        #expect(next[0] == BlockRequest(piece: pieceA, begin: 3 * block, length: block))
        #expect(next[4].piece != pieceA && next[4].piece != pieceB)
    }

    @Test("suggested pieces come first; onlySuggested asks for nothing else")
    func suggestedPieces() {
        let l = layout(pieces: 8)
        var p = picker(l)
        p.peerHas(all(8))
        // 5 is suggested, 9 is out of range, 6 is not held by the peer: only 5 comes first.
        var held = all(8)
        held.clear(6)
        let a = p.pick(for: 1, peerHas: held, count: 6, outstanding: [], suggested: [9, 6, 5])
        #expect(a.prefix(4).allSatisfy { $0.piece == 5 })
        #expect(a.count == 6 && a[4].piece != 5)
        // A seeder that assigns pieces: only what it suggested, here the rest of nothing.
        let b = p.pick(for: 2, peerHas: all(8), count: 8, outstanding: [], suggested: [5], onlySuggested: true)
        #expect(b.isEmpty, "piece 5 is already requested in full from peer 1")
        let c = p.pick(for: 2, peerHas: all(8), count: 8, outstanding: [], suggested: [7, 5], onlySuggested: true)
        #expect(c.map(\.piece) == [7, 7, 7, 7])
        // A dropped block of a suggested piece is asked for again.
        p.requestDropped(c[2], by: 2)
        let d = p.pick(for: 2, peerHas: all(8), count: 8, outstanding: Set(c), suggested: [7], onlySuggested: true)
        #expect(d == [c[2]])
    }

    @Test("never the same block twice to one peer, nor a requested block to another outside endgame")
    func noDuplicates() {
        let l = layout(pieces: 8, tail: 100)
        var p = picker(l, seed: 3, randomFirst: 2)
        p.peerHas(all(8))
        p.peerHas(all(8))
        var outstanding: [Int: Set<BlockRequest>] = [1: [], 2: []]
        var everyRequest: [BlockRequest] = []
        for round in 0..<8 {
            let peer = 1 + round % 2
            let reqs = p.pick(for: peer, peerHas: all(8), count: 3, outstanding: outstanding[peer]!)
            #expect(Set(reqs).count == reqs.count)
            #expect(outstanding[peer]!.isDisjoint(with: reqs))
            outstanding[peer]!.formUnion(reqs)
            everyRequest += reqs
        }
        #expect(everyRequest.count == 24)
        #expect(Set(everyRequest).count == 24, "a block was requested twice before endgame")
        #expect(!p.inEndgame)
        // the short tail block has the short length
        let tailReqs = everyRequest.filter { $0.piece == 7 && $0.begin == 3 * block }
        #expect(tailReqs.allSatisfy { $0.length == block - 100 })
    }

    @Test("requestDropped frees exactly that block for another peer")
    func requestDroppedFrees() {
        let l = layout(pieces: 1)
        var p = picker(l)
        p.peerHas(all(1))
        let reqs = p.pick(for: 1, peerHas: all(1), count: 4, outstanding: [])
        #expect(reqs.count == 4)
        #expect(p.inEndgame)
        // with endgame duplicates disallowed, nothing is free until a block is dropped
        var q = p
        q.endgameDuplicates = 1
        #expect(q.pick(for: 2, peerHas: all(1), count: 4, outstanding: []).isEmpty)
        q.requestDropped(reqs[2], by: 1)
        #expect(!q.inEndgame)
        #expect(q.pick(for: 2, peerHas: all(1), count: 4, outstanding: []) == [reqs[2]])
        // dropping by a peer that was never asked changes nothing
        q.requestDropped(reqs[1], by: 5)
        #expect(q.pick(for: 3, peerHas: all(1), count: 4, outstanding: []).isEmpty)
    }

    @Test("a failed piece is requested again, every block, and names who sent it")
    func pieceFailedReRequests() {
        let l = layout(pieces: 2)
        var p = picker(l)
        p.peerHas(all(2))
        p.peerHas(all(2))
        let a = p.pick(for: 1, peerHas: bits(2, [0]), count: 2, outstanding: [])
        let b = p.pick(for: 2, peerHas: bits(2, [0]), count: 2, outstanding: [])
        #expect(Set(a + b).count == 4)
        var complete = false
        for r in a { complete = p.blockReceived(r, from: 1).pieceComplete }
        #expect(!complete)
        for r in b { complete = p.blockReceived(r, from: 2).pieceComplete }
        #expect(complete)
        #expect(p.pieceFailed(0) == [1, 1, 2, 2])
        #expect(!p.have[0])
        let again = p.pick(for: 3, peerHas: bits(2, [0]), count: 10, outstanding: [])
        #expect(Set(again) == Set(a + b))
        for r in again { _ = p.blockReceived(r, from: 3) }
        p.pieceVerified(0)
        #expect(p.have[0])
        #expect(p.pick(for: 3, peerHas: bits(2, [0]), count: 10, outstanding: []).isEmpty)
    }

    @Test("endgame: only an idle peer is asked for a duplicate, one block at a time, nearest-complete piece first")
    func endgame() {
        let l = layout(pieces: 2, blocksPerPiece: 2)
        var p = picker(l)
        p.endgameDuplicates = 3
        for _ in 0..<8 { p.peerHas(all(2)) }
        let r1 = p.pick(for: 1, peerHas: all(2), count: 4, outstanding: [])
        #expect(Set(r1).count == 4)
        #expect(p.inEndgame)
        // peer 1 asks again: no block twice to the same peer
        #expect(p.pick(for: 1, peerHas: all(2), count: 4, outstanding: Set(r1)).isEmpty)
        // piece 0 is one block from complete: its missing block is duplicated first
        let b00 = BlockRequest(piece: 0, begin: 0, length: block)
        let b01 = BlockRequest(piece: 0, begin: block, length: block)
        let b10 = BlockRequest(piece: 1, begin: 0, length: block)
        let b11 = BlockRequest(piece: 1, begin: block, length: block)
        #expect(p.blockReceived(b00, from: 1).accepted)
        let d2 = p.pick(for: 2, peerHas: all(2), count: 4, outstanding: [])
        #expect(d2 == [b01])
        // a peer with a request in flight gets no duplicate, however much room it has
        #expect(p.pick(for: 2, peerHas: all(2), count: 4, outstanding: Set(d2)).isEmpty)
        #expect(p.pick(for: 3, peerHas: all(2), count: 4, outstanding: [b10]).isEmpty)
        // the fewest requesters come first: b01 has two now
        #expect(p.pick(for: 3, peerHas: all(2), count: 4, outstanding: []) == [b10])
        #expect(p.pick(for: 4, peerHas: all(2), count: 4, outstanding: []) == [b11])
        #expect(p.pick(for: 5, peerHas: all(2), count: 4, outstanding: []) == [b01])
        #expect(p.pick(for: 6, peerHas: all(2), count: 4, outstanding: []) == [b10])
        #expect(p.pick(for: 7, peerHas: all(2), count: 4, outstanding: []) == [b11])
        // three peers per block is the limit
        #expect(p.pick(for: 8, peerHas: all(2), count: 4, outstanding: []).isEmpty)
        // peer 2 delivers b01: peers 1 and 5 must cancel it, and a late copy is not wanted
        let got = p.blockReceived(b01, from: 2)
        #expect(got.accepted && got.pieceComplete)
        #expect(Set(got.cancelFrom) == [1, 5])
        #expect(p.blockReceived(b01, from: 1).accepted == false)
    }

    @Test("endgame with the default bound of 2 peers per block")
    func endgameDefaultBound() {
        let l = layout(pieces: 1, blocksPerPiece: 3)
        var p = picker(l)
        #expect(p.endgameDuplicates == 2)
        let r1 = p.pick(for: 1, peerHas: all(1), count: 3, outstanding: [])
        #expect(r1.count == 3)
        var duplicates: [BlockRequest] = []
        for peer in 2...4 { duplicates += p.pick(for: peer, peerHas: all(1), count: 3, outstanding: []) }
        #expect(duplicates == r1, "each idle peer takes the next block with a single requester")
        #expect(p.pick(for: 5, peerHas: all(1), count: 3, outstanding: []).isEmpty)
        // a dropped duplicate makes room for another peer
        p.requestDropped(r1[1], by: 1)
        #expect(p.pick(for: 5, peerHas: all(1), count: 3, outstanding: []) == [r1[1]])
    }

    @Test("blocks that do not fit are refused, never trapping", arguments: [
        BlockRequest(piece: 0, begin: 1, length: block),
        BlockRequest(piece: 0, begin: 0, length: block - 1),
        BlockRequest(piece: 0, begin: 8 * block, length: block),
        BlockRequest(piece: 1, begin: 0, length: block),          // not requested, no partial state
        BlockRequest(piece: 2, begin: 0, length: block),          // beyond the torrent
        BlockRequest(piece: 0xFFFF_FFFF, begin: 0, length: block),
        BlockRequest(piece: 0, begin: 0xFFFF_FFFF, length: 0),
    ])
    func refusedBlocks(_ r: BlockRequest) {
        var p = picker(layout(pieces: 2))
        _ = p.pick(for: 1, peerHas: bits(2, [0]), count: 4, outstanding: [])
        #expect(p.blockReceived(r, from: 1) .accepted == false)
        // the state is intact: the real blocks are still wanted
        #expect(p.blockReceived(BlockRequest(piece: 0, begin: 0, length: block), from: 1).accepted)
    }

    @Test("wantsAny: interested only when the peer has something we lack")
    func wantsAny() {
        let p = picker(layout(pieces: 10), have: [0, 1, 2])
        #expect(!p.wantsAny(of: Bitfield(count: 10)))
        #expect(!p.wantsAny(of: bits(10, [0, 2])))
        #expect(p.wantsAny(of: bits(10, [0, 9])))
        #expect(p.wantsAny(of: all(10)))
        let seed = picker(layout(pieces: 10), have: Array(0..<10))
        #expect(seed.isComplete)
        #expect(!seed.wantsAny(of: all(10)))
        #expect(!seed.wantsAny(of: bits(10, [4])))
    }

    @Test("a whole download through two peers completes with every block requested once")
    func wholeDownload() {
        let l = layout(pieces: 12, tail: 5000)
        var p = picker(l, seed: 42, randomFirst: 4)
        p.peerHas(all(12))
        p.peerHas(bits(12, Array(0..<6)))
        var asked = 0
        var rounds = 0
        while !p.isComplete && rounds < 100 {
            rounds += 1
            for peer in [1, 2] {
                let has = peer == 1 ? all(12) : bits(12, Array(0..<6))
                let reqs = p.pick(for: peer, peerHas: has, count: 5, outstanding: [])
                #expect(reqs.allSatisfy { has[$0.piece] })
                asked += reqs.count
                p.deliver(reqs, from: peer)
            }
        }
        #expect(p.isComplete)
        #expect(asked == 12 * 4)
    }

    @Test("a block is taken only from a peer it was asked of")
    func unrequestedBlocksRefused() {
        let l = layout(pieces: 2)
        var p = picker(l)
        p.peerHas(all(2))
        let a = p.pick(for: 1, peerHas: bits(2, [0]), count: 2, outstanding: [])
        #expect(a.count == 2)
        // Peer 9 was asked nothing: neither a block asked of peer 1 nor one asked of nobody counts.
        #expect(!p.blockReceived(a[0], from: 9).accepted)
        #expect(!p.blockReceived(BlockRequest(piece: 0, begin: 3 * block, length: block), from: 9).accepted)
        #expect(!p.blockReceived(BlockRequest(piece: 1, begin: 0, length: block), from: 1).accepted)
        // A dropped request no longer admits its block.
        p.requestDropped(a[1], by: 1)
        #expect(!p.blockReceived(a[1], from: 1).accepted)
        #expect(p.blockReceived(a[0], from: 1).accepted)
    }

    @Test("a piece that failed its hash is fetched again from one peer only, and starts over if that peer stops")
    func failedPieceHasOneOwner() {
        let l = layout(pieces: 1)
        var p = picker(l)
        p.peerHas(all(1))
        p.peerHas(all(1))
        let first = p.pick(for: 1, peerHas: all(1), count: 2, outstanding: []) + p.pick(for: 2, peerHas: all(1), count: 2, outstanding: [])
        for r in first.prefix(2) { _ = p.blockReceived(r, from: 1) }
        for r in first.suffix(2) { _ = p.blockReceived(r, from: 2) }
        #expect(p.pieceFailed(0) == [1, 1, 2, 2])
        let owned = p.pick(for: 2, peerHas: all(1), count: 2, outstanding: [])
        #expect(owned.count == 2)
        // Blocks are left, but the piece is peer 2's: peer 1 gets none of them, endgame included.
        #expect(p.pick(for: 1, peerHas: all(1), count: 4, outstanding: []).isEmpty)
        #expect(p.blockReceived(owned[0], from: 2).accepted)
        // Peer 2 stops (choked, snubbed, gone): the piece starts over for whoever asks next.
        p.requestDropped(owned[1], by: 2)
        let again = p.pick(for: 1, peerHas: all(1), count: 4, outstanding: [])
        #expect(again.count == 4)
        #expect(p.pick(for: 2, peerHas: all(1), count: 4, outstanding: []).isEmpty)
        var complete = false
        for r in again { complete = p.blockReceived(r, from: 1).pieceComplete }
        #expect(complete)
        p.pieceVerified(0)
        #expect(p.isComplete)
    }

    @Test("a failed piece's one sender leaving with nothing in flight frees the piece for the others")
    func failedPieceOwnerLeaves() {
        let l = layout(pieces: 1)
        var p = picker(l)
        p.peerHas(all(1))
        p.peerHas(all(1))
        let first = p.pick(for: 1, peerHas: all(1), count: 4, outstanding: [])
        for r in first { _ = p.blockReceived(r, from: 1) }
        #expect(p.pieceFailed(0) == [1, 1, 1, 1])
        // Peer 2 takes the piece, is asked for two of its blocks, and both arrive.
        for r in p.pick(for: 2, peerHas: all(1), count: 2, outstanding: []) { #expect(p.blockReceived(r, from: 2).accepted) }
        #expect(p.pick(for: 1, peerHas: all(1), count: 4, outstanding: []).isEmpty)
        // It leaves before asking for the rest: the piece starts over with peer 1.
        p.peerLeft(2)
        let again = p.pick(for: 1, peerHas: all(1), count: 4, outstanding: [])
        #expect(again.count == 4)
        var complete = false
        for r in again { complete = p.blockReceived(r, from: 1).pieceComplete }
        #expect(complete)
    }

    @Test("discardBlocks forgets what a banned peer delivered to pieces in progress")
    func discardBannedBlocks() {
        let l = layout(pieces: 2)
        var p = picker(l)
        p.peerHas(all(2))
        let a = p.pick(for: 1, peerHas: bits(2, [0]), count: 2, outstanding: [])
        let b = p.pick(for: 2, peerHas: bits(2, [0]), count: 1, outstanding: [])
        for r in a { _ = p.blockReceived(r, from: 1) }
        _ = p.blockReceived(b[0], from: 2)
        #expect(p.holdsBlocks(from: 1))
        let dropped = p.discardBlocks(from: 1)
        #expect(dropped == 2 * block)
        #expect(!p.holdsBlocks(from: 1))
        #expect(p.holdsBlocks(from: 2))
        let droppedAgain = p.discardBlocks(from: 1)
        #expect(droppedAgain == 0)
        // Its blocks are wanted again; peer 2's block stays.
        let refetch = p.pick(for: 3, peerHas: bits(2, [0]), count: 4, outstanding: [])
        #expect(Set(refetch) == Set(a + [BlockRequest(piece: 0, begin: 3 * block, length: block)]))
    }
}
