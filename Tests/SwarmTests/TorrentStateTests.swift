import BitTorrent
@testable import Swarm
import Testing

// The rules of one torrent driven directly: events with a manual clock (nanoseconds) in,
// actions out. No sockets, no sleeps.

fileprivate typealias Action = TorrentState.Action
fileprivate typealias Message = TorrentState.Message
fileprivate let block = PieceLayout.blockSize
fileprivate let second: UInt64 = 1_000_000_000
fileprivate let ms: UInt64 = 1_000_000

/// A 20-byte peer id: Starling's client code ("-SL") or another client's, then `n`.
fileprivate func peerID(_ n: Int, starling: Bool = false) -> [UInt8] {
    let digits = String(n)
    return Array(((starling ? "-SL0100-" : "-XX0100-") + String(repeating: "0", count: 12 - digits.count) + digits).utf8)
}

/// `pieces` pieces of 64 KiB (4 blocks each), all had when `seeding`.
fileprivate func torrent(pieces: Int = 8, seeding: Bool = false, rules: TorrentRules = TorrentRules(),
                         own: [UInt8] = peerID(0, starling: true), address: String? = nil, now: UInt64 = 0) -> TorrentState {
    let layout = PieceLayout(totalLength: Int64(pieces * 4 * block), pieceLength: 4 * block)
    return TorrentState(layout: layout, have: Bitfield(count: pieces, allSet: seeding), rules: rules,
                        ownPeerID: own, ownAddress: address, seed: 7, now: now)
}

fileprivate func blocks(of piece: Int) -> [BlockRequest] {
    (0..<4).map { BlockRequest(piece: piece, begin: $0 * block, length: block) }
}

fileprivate func messages(in actions: [Action], to id: Int) -> [Message] {
    actions.compactMap { if case .send(let m, to: id) = $0 { return m }; return nil }
}

fileprivate func requests(in actions: [Action], to id: Int) -> [BlockRequest] {
    messages(in: actions, to: id).compactMap { if case .request(let r) = $0 { return r }; return nil }
}

fileprivate func allRequests(in actions: [Action]) -> [BlockRequest] {
    actions.compactMap { if case .send(.request(let r), to: _) = $0 { return r }; return nil }
}

fileprivate func closes(in actions: [Action]) -> [Int: TorrentState.CloseReason] {
    var out: [Int: TorrentState.CloseReason] = [:]
    for case .close(let id, let reason) in actions { out[id] = reason }
    return out
}

fileprivate func suggestions(in actions: [Action], to id: Int) -> Set<Int> {
    Set(messages(in: actions, to: id).compactMap { if case .suggest(let p) = $0 { return p }; return nil })
}

fileprivate func logged(_ actions: [Action], _ text: String) -> Bool {
    actions.contains { if case .log(_, text, _) = $0 { return true }; return false }
}

fileprivate struct Refused: Error { var admission: TorrentState.Admission }

/// The id of an admitted connection; throws when it was refused.
fileprivate func admittedID(_ admission: TorrentState.Admission) throws -> Int {
    guard case .admitted(let id) = admission else { throw Refused(admission: admission) }
    return id
}

extension TorrentState {
    fileprivate func arrival(_ n: Int, host: String? = nil, port: Int = 6881, outbound: Bool = false,
                             fast: Bool = true, starling: Bool = false, sameSite: Bool? = nil) -> Arrival {
        Arrival(remote: PeerAddress(host: host ?? "10.0.0.\(n)", port: port), outbound: outbound,
                peerID: peerID(n, starling: starling), fast: fast, sameSite: sameSite)
    }

    /// Admits peer `n` (host 10.0.0.n unless given) and returns its id (-1, recorded, if refused).
    fileprivate mutating func connect(_ n: Int, host: String? = nil, fast: Bool = true, starling: Bool = false,
                                      sameSite: Bool? = nil, now: UInt64 = 0) -> Int {
        let (admission, _) = admit(arrival(n, host: host, fast: fast, starling: starling, sameSite: sameSite), now: now)
        guard case .admitted(let id) = admission else {
            Issue.record("peer \(n) refused: \(admission)")
            return -1
        }
        return id
    }

    /// The peer announces every piece: have-all, or a full bitfield without the fast extension.
    fileprivate mutating func hasAll(_ id: Int, now: UInt64 = 0) -> [Action] {
        let all = Bitfield(count: layout.pieceCount, allSet: true)
        return received(peers[id]!.fast ? .haveAll : .bitfield(all.bytes), from: id, now: now)
    }

    /// The peer delivers these blocks in one read batch; returns the actions of the batch's end too.
    fileprivate mutating func deliver(_ reqs: [BlockRequest], from id: Int, now: UInt64, endBatch: Bool = true) -> [Action] {
        var out: [Action] = []
        for r in reqs { out += received(.piece(r), from: id, now: now) }
        if endBatch { out += readBatchEnded(id, now: now) }
        return out
    }
}

@Suite("Torrent state (the engine's rules, with a manual clock)")
struct TorrentStateTests {
    @Test("pipeline depth: the request horizon of the peer's rate in blocks, within min and max")
    func pipelineDepth() {
        let rules = TorrentRules()
        #expect(rules.pipelineDepth(forRate: 0) == rules.minPipeline)
        #expect(rules.minPipeline == 4)
        // 20 Mbit/s over 500 ms is 1.25 MB: 76.3 blocks of 16 KiB, rounded up.
        #expect(rules.pipelineDepth(forRate: 2_500_000) == 77)
        var quarter = rules
        quarter.requestHorizon = 250_000_000
        #expect(quarter.pipelineDepth(forRate: 2_500_000) == 39)
        // 40 peers sharing a 20 Mbit/s downlink deliver ~64 KB/s each: two blocks of horizon.
        #expect(rules.pipelineDepth(forRate: 64_000) == rules.minPipeline)
        #expect(rules.pipelineDepth(forRate: 600_000_000) == rules.maxPipeline)
        #expect(rules.pipelineDepth(forRate: .infinity) == rules.maxPipeline)
        #expect(rules.pipelineDepth(forRate: .nan) == rules.minPipeline)
        // In 64 KiB blocks (the simulator's larger unit) the same bytes: a quarter of the blocks.
        #expect(rules.pipelineDepth(forRate: 2_500_000, blockLength: 64 << 10) == 20)
        #expect(rules.pipelineDepth(forRate: 0, blockLength: 64 << 10) == 1)
        #expect(rules.pipelineDepth(forRate: .infinity, blockLength: 64 << 10) == 64)
        #expect(TorrentRules.inUnits(4, of: 256 << 10) == 1)
        #expect(TorrentRules.inUnits(0, of: 64 << 10) == 0)
    }

    @Test("the pipeline floor holds only while all requests together are within the horizon of our download rate")
    func pipelineFloorIsShared() throws {
        // 256 pieces of 4 blocks; eight seeds.
        var state = torrent(pieces: 256)
        let seeds = (1...8).map { state.connect($0) }
        for s in seeds { _ = state.hasAll(s) }
        // Before a second has measured the download, every peer gets the floor.
        var asked: [Int] = []
        for s in seeds { asked.append(requests(in: state.received(.unchoke, from: s, now: 0), to: s).count) }
        #expect(asked == Array(repeating: state.rules.minPipeline, count: 8))

        // One block in the first second: 500 ms of 16 KiB/s is below the least budget (4 x 4
        // blocks), and 31 requests are out, so a newcomer gets one.
        _ = state.deliver([state.peers[seeds[0]]!.outstanding.first!], from: seeds[0], now: ms, endBatch: false)
        _ = state.tick(now: second)
        let late = state.connect(9, now: second)
        _ = state.hasAll(late, now: second)
        #expect(requests(in: state.received(.unchoke, from: late, now: second + ms), to: late).count == 1)

        // 4 MiB arrive from the first seed within the next second: the budget becomes 500 ms
        // of that rate, and that seed's own depth by its rate takes it.
        var t = second + 2 * ms
        while state.counters.downloaded < 4 << 20 {
            _ = state.deliver(Array(state.peers[seeds[0]]!.outstanding), from: seeds[0], now: t)
            t += 1000
        }
        _ = state.tick(now: 2 * second + 2 * ms)
        #expect(state.peers[seeds[0]]!.outstanding.count > 4 * state.rules.minPipeline)
        // Its blocks arrive (the batch not yet ended): the budget has room, and a newcomer
        // gets the floor again.
        _ = state.deliver(Array(state.peers[seeds[0]]!.outstanding), from: seeds[0], now: 2 * second + 2 * ms, endBatch: false)
        let fresh = state.connect(10, now: 2 * second + 2 * ms)
        _ = state.hasAll(fresh, now: 2 * second + 2 * ms)
        #expect(requests(in: state.received(.unchoke, from: fresh, now: 2 * second + 3 * ms), to: fresh).count == state.rules.minPipeline)
    }

    @Test("the upload's share of the work left: what the connected peers lack, divided among them and us")
    func uploadShareLeft() {
        var state = torrent(pieces: 8, seeding: true)
        let piece = Int64(state.layout.pieceLength)
        #expect(state.uploadShareLeft == 0, "nobody to serve")
        let a = state.connect(1), b = state.connect(2), c = state.connect(3)
        // Before their bitfields, each lacks everything: 3 x 8 pieces among 4 hosts.
        #expect(state.uploadShareLeft == 3 * 8 * piece / 4)
        _ = state.hasAll(a)
        var half = Bitfield(count: 8)
        for p in 0..<4 { half.set(p) }
        _ = state.received(.bitfield(half.bytes), from: b, now: 0)
        #expect(state.uploadShareLeft == (0 + 4 + 8) * piece / 4)
        _ = state.received(.have(piece: 4), from: c, now: 0)
        #expect(state.uploadShareLeft == (0 + 4 + 7) * piece / 4)
        _ = state.disconnected(b, now: 0)
        #expect(state.uploadShareLeft == (0 + 7) * piece / 3)
    }

    @Test("a verified piece is announced to a peer that has it only under announceToHolders (a slew limit), always to a seed", arguments: [false, true])
    func haveGoesToHoldersUnderASlewLimit(announceToHolders: Bool) throws {
        var rules = TorrentRules()
        rules.announceToHolders = announceToHolders
        var state = torrent(pieces: 3, rules: rules)
        let seed = state.connect(1), mate = state.connect(2)
        _ = state.hasAll(seed)
        let asked = requests(in: state.received(.unchoke, from: seed, now: 0), to: seed)
        let x = try #require(asked.first?.piece)
        // The mate has that piece too, and is no seed.
        _ = state.received(.have(piece: x), from: mate, now: 0)
        #expect(!state.peers[mate]!.isSeed)
        _ = state.deliver(blocks(of: x), from: seed, now: ms)
        let checked = state.pieceChecked(x, .matched(blockDigests: nil), now: 2 * ms)
        #expect(messages(in: checked, to: mate).contains(.have(piece: x)) == announceToHolders)
        #expect(messages(in: checked, to: seed).contains(.have(piece: x)))
    }

    @Test("a slew limit switched on mid-run sends the next haves to holders too; switched off, no longer")
    func announceToHoldersFollowsTheLimit() throws {
        var state = torrent(pieces: 3)
        let seed = state.connect(1), mate = state.connect(2)
        _ = state.hasAll(seed)
        let asked = requests(in: state.received(.unchoke, from: seed, now: 0), to: seed)
        let x = try #require(asked.first?.piece)
        _ = state.received(.have(piece: x), from: mate, now: 0)
        state.announceToHolders(true)
        let more = requests(in: state.deliver(blocks(of: x), from: seed, now: ms), to: seed)
        #expect(messages(in: state.pieceChecked(x, .matched(blockDigests: nil), now: 2 * ms), to: mate).contains(.have(piece: x)))
        state.announceToHolders(false)
        let next = try #require((asked + more).first { $0.piece != x }?.piece)
        _ = state.received(.have(piece: next), from: mate, now: 3 * ms)
        _ = state.deliver(blocks(of: next), from: seed, now: 4 * ms)
        #expect(!messages(in: state.pieceChecked(next, .matched(blockDigests: nil), now: 5 * ms), to: mate).contains(.have(piece: next)))
    }

    @Test("with the fast extension a choke keeps our requests: blocks sent before it count, only a reject frees one")
    func fastChokeKeepsRequests() throws {
        var state = torrent()
        let a = state.connect(1), b = state.connect(2)
        #expect(messages(in: state.hasAll(a), to: a) == [.interested])
        #expect(messages(in: state.hasAll(b), to: b) == [.interested])
        let asked = requests(in: state.received(.unchoke, from: a, now: 0), to: a)
        try #require(asked.count == state.rules.minPipeline)

        #expect(state.received(.choke, from: a, now: ms).isEmpty)
        #expect(state.peers[a]!.outstanding == Set(asked), "requests stand until a block or a reject answers them")
        let fromB = requests(in: state.received(.unchoke, from: b, now: 2 * ms), to: b)
        #expect(fromB.count == 4)
        #expect(Set(fromB).isDisjoint(with: asked), "nothing asked of the choking peer is asked twice")

        // A block A had sent before its choke arrives after it: wanted, not wasted.
        let arrived = state.received(.piece(asked[0]), from: a, now: 3 * ms)
        #expect(arrived.contains(.assemble(asked[0])))
        #expect(state.counters.downloaded == Int64(block))
        #expect(state.counters.wasted == 0)

        // A rejects another: that block is free again, and B is asked for it next.
        _ = state.received(.reject(asked[1]), from: a, now: 4 * ms)
        #expect(!state.peers[a]!.outstanding.contains(asked[1]))
        let next = state.deliver([fromB[0]], from: b, now: 5 * ms)
        #expect(requests(in: next, to: b) == [asked[1]])
        #expect(state.counters.wasted == 0)
    }

    @Test("without the fast extension a choke drops our requests: they are asked of the other peer at once")
    func plainChokeDropsRequests() throws {
        var state = torrent()
        let a = state.connect(1, fast: false), b = state.connect(2, fast: false)
        _ = state.hasAll(a)
        _ = state.hasAll(b)
        let asked = requests(in: state.received(.unchoke, from: a, now: 0), to: a)
        try #require(asked.count == 4)
        _ = state.received(.choke, from: a, now: ms)
        #expect(state.peers[a]!.outstanding.isEmpty)
        let fromB = requests(in: state.received(.unchoke, from: b, now: 2 * ms), to: b)
        #expect(Set(fromB) == Set(asked), "the blocks of the choke go to the other peer")
    }

    @Test("endgame: an idle peer gets one duplicate, the other copy is cancelled, checked pieces finalize and seeds close")
    func endgameToFinalize() throws {
        var state = torrent(pieces: 2)
        let a = state.connect(1), b = state.connect(2)
        _ = state.hasAll(a)
        _ = state.hasAll(b)
        let fromA = requests(in: state.received(.unchoke, from: a, now: 0), to: a)
        let fromB = requests(in: state.received(.unchoke, from: b, now: 0), to: b)
        try #require(fromA.count == 4 && fromB.count == 4)
        let x = fromA[0].piece, y = fromB[0].piece
        #expect(x != y && Set(fromA) == Set(blocks(of: x)) && Set(fromB) == Set(blocks(of: y)))

        // A delivers its piece; every block is requested, so the idle A gets one duplicate.
        let done = state.deliver(fromA, from: a, now: 10 * ms)
        #expect(done.contains(.check(piece: x, blockDigests: false)))
        let dup = requests(in: done, to: a)
        #expect(dup == [blocks(of: y)[0]], "one duplicate block for the idle peer, not more")

        // The duplicate arrives from A first: B's copy is cancelled.
        let first = state.deliver(dup, from: a, now: 20 * ms, endBatch: false)
        #expect(first.contains(.assemble(dup[0])))
        #expect(messages(in: first, to: b) == [.cancel(dup[0])])
        #expect(!state.peers[b]!.outstanding.contains(dup[0]))
        let rest = state.deliver(Array(blocks(of: y).dropFirst()), from: b, now: 30 * ms, endBatch: false)
        #expect(rest.contains(.check(piece: y, blockDigests: false)))
        #expect(state.counters.wasted == 0)

        let checkedX = state.pieceChecked(x, .matched(blockDigests: nil), now: 40 * ms)
        #expect(messages(in: checkedX, to: a).contains(.have(piece: x)))
        #expect(messages(in: checkedX, to: b).contains(.have(piece: x)))
        #expect(!checkedX.contains(.finalize))
        let checkedY = state.pieceChecked(y, .matched(blockDigests: nil), now: 50 * ms)
        #expect(checkedY.contains(.finalize))
        #expect(state.counters.verified == 2)
        #expect(!state.isComplete, "complete only once the file is final")

        let final = state.finalized(now: 60 * ms)
        #expect(state.isComplete)
        #expect(closes(in: final) == [a: .redundant, b: .redundant], "seeds have nothing more for us")
    }

    /// A has every piece and is asked for a piece P; B has only P and is unchoked, idle.
    /// `shift` peers come and go first, so A and B get other ids (and another dictionary order).
    fileprivate func snubSetup(shift: Int = 0) throws -> (state: TorrentState, a: Int, b: Int, asked: [BlockRequest]) {
        var state = torrent()
        for n in 0..<shift { _ = state.disconnected(state.connect(10 + n), now: 0) }
        let a = state.connect(1), b = state.connect(2)
        _ = state.hasAll(a)
        let asked = requests(in: state.received(.unchoke, from: a, now: 0), to: a)
        try #require(asked.count == 4)
        let p = asked[0].piece
        _ = state.received(.haveNone, from: b, now: 0)
        #expect(messages(in: state.received(.have(piece: p), from: b, now: 0), to: b) == [.interested])
        #expect(requests(in: state.received(.unchoke, from: b, now: 0), to: b).isEmpty, "P is all asked of A")
        return (state, a, b, asked)
    }

    @Test("snubbing: requests a peer sits on stand until snubTimeout, then are freed and asked again")
    func snubbingFreesRequests() throws {
        var (state, a, b, asked) = try snubSetup()
        #expect(state.rules.snubTimeout == 30 * second)

        let early = state.tick(now: 29 * second)
        #expect(allRequests(in: early).isEmpty, "nothing moves before the timeout")
        #expect(!logged(early, "peer snubbed us; re-requesting its blocks elsewhere"))
        #expect(state.peers[a]!.outstanding == Set(asked))
        #expect(state.peers[b]!.outstanding.isEmpty)

        let late = state.tick(now: 31 * second)
        #expect(logged(late, "peer snubbed us; re-requesting its blocks elsewhere"))
        #expect(state.peers[a]!.snubbed)
        #expect(Set(allRequests(in: late)).isSuperset(of: asked), "the blocks are asked again")
        // Each block is outstanding at exactly one peer.
        let atA = state.peers[a]!.outstanding.intersection(asked), atB = state.peers[b]!.outstanding.intersection(asked)
        #expect(atA.isDisjoint(with: atB) && atA.union(atB) == Set(asked))
    }

    @Test("snubbing moves a peer's requests to another unchoked peer and clears them at the snubbing one")
    func snubbingMovesRequestsElsewhere() throws {
        // Dictionary order decides which peer is refilled first: try several peer ids.
        for shift in 0..<6 {
            var (state, a, b, asked) = try snubSetup(shift: shift)
            let late = state.tick(now: 31 * second)
            #expect(Set(requests(in: late, to: b)) == Set(asked), "shift \(shift): the other peer is asked for them")
            #expect(Set(requests(in: late, to: a)).isDisjoint(with: asked), "shift \(shift): the snubbing peer is not re-sent them")
            #expect(state.peers[a]!.outstanding.isDisjoint(with: asked), "shift \(shift): cleared at the snubbing peer")
            #expect(state.peers[b]!.outstanding == Set(asked), "shift \(shift)")
        }
    }

    @Test("snubbing counts from our requests, not from the connection: a peer that unchokes late is not snubbed at once")
    func lateUnchokeIsNotSnubbed() throws {
        var state = torrent()
        let a = state.connect(1)
        _ = state.hasAll(a)
        let asked = requests(in: state.received(.unchoke, from: a, now: 40 * second), to: a)
        try #require(asked.count == 4)
        let next = state.tick(now: 41 * second)
        #expect(!state.peers[a]!.snubbed)
        #expect(!logged(next, "peer snubbed us; re-requesting its blocks elsewhere"))
        #expect(requests(in: next, to: a).isEmpty, "the same four requests are not sent again after one second")
    }

    @Test("a seed that rejects a block has that piece skipped when asking it for refusalMemory, then asked again")
    func refusalIsRemembered() throws {
        var state = torrent()
        let a = state.connect(1)
        _ = state.hasAll(a)
        let asked = requests(in: state.received(.unchoke, from: a, now: 0), to: a)
        try #require(asked.count == 4)
        #expect(state.peers[a]!.isSeed)
        #expect(state.rules.refusalMemory == 3 * second)
        let p = asked[0].piece
        // Without the refusal the freed block of the started P would be asked again at once.
        let instead = requests(in: state.received(.reject(asked[0]), from: a, now: 0), to: a)
        try #require(instead.count == 1)
        let r = instead[0].piece
        #expect(r != p)
        // Within the memory P (one block here) still waits; the emptier R goes on.
        _ = state.deliver([asked[1]], from: a, now: 1 * second, endBatch: false)
        #expect(requests(in: state.tick(now: 2 * second), to: a) == [BlockRequest(piece: r, begin: block, length: block)])
        // Past it P, now the most complete piece, is asked for its refused block.
        #expect(requests(in: state.deliver([asked[2]], from: a, now: 3_500 * ms), to: a) == [asked[0]])
    }

    @Test("bans: a piece from two peers fails, is fetched again from one, and its good copy proves who lied")
    func blameBansOnlyTheLiar() throws {
        var state = torrent(pieces: 1)
        let liar = state.connect(1, host: "10.0.0.66", fast: false)
        let honest = state.connect(2, host: "10.0.0.7", fast: false)
        _ = state.hasAll(liar)
        _ = state.hasAll(honest)
        let piece = blocks(of: 0)
        #expect(requests(in: state.received(.unchoke, from: liar, now: 0), to: liar) == piece)
        _ = state.deliver(Array(piece[0..<2]), from: liar, now: 10 * ms, endBatch: false)
        _ = state.received(.choke, from: liar, now: 20 * ms)
        #expect(requests(in: state.received(.unchoke, from: honest, now: 30 * ms), to: honest) == Array(piece[2...]))
        #expect(state.deliver(Array(piece[2...]), from: honest, now: 40 * ms).contains(.check(piece: 0, blockDigests: false)))

        let good = (0..<4).map { SHA1Hasher.hash([UInt8](repeating: UInt8($0), count: 8)) }
        var bad = good
        bad[0] = SHA1Hasher.hash([UInt8](repeating: 0xEE, count: 8))   // the liar's block 0
        let failed = state.pieceChecked(0, .mismatched(blockDigests: bad), now: 50 * ms)
        #expect(state.counters.hashFailures == 1)
        #expect(state.counters.banned == 0, "two senders: nobody is proven yet")
        #expect(closes(in: failed).isEmpty)
        #expect(requests(in: failed, to: honest) == piece, "the re-fetch comes from one peer")
        #expect(requests(in: state.received(.unchoke, from: liar, now: 60 * ms), to: liar).isEmpty, "and from that one only")

        #expect(state.deliver(piece, from: honest, now: 70 * ms).contains(.check(piece: 0, blockDigests: true)))
        let verified = state.pieceChecked(0, .matched(blockDigests: good), now: 80 * ms)
        #expect(closes(in: verified) == [liar: .redundant])
        #expect(state.counters.banned == 1)
        #expect(state.isBanned("10.0.0.66"))
        #expect(!state.isBanned("10.0.0.7"))
        let (again, _) = state.admit(state.arrival(3, host: "10.0.0.66", port: 7000), now: 90 * ms)
        #expect(again == .refused("banned"))
    }

    @Test("duplicate connection: while young the link opened by the smaller peer id stays; established, the new one is refused")
    func duplicateConnections() throws {
        let dialled = PeerAddress(host: "10.0.0.9", port: 6881)
        /// An inbound link from peer `their` at 0; our dial to its listen address connects at `at`.
        func race(own: Int, their: Int, at: UInt64) throws -> (state: TorrentState, existing: Int, admission: TorrentState.Admission, actions: [Action]) {
            var state = torrent(own: peerID(own, starling: true))
            let id = peerID(their, starling: true)
            let inbound = TorrentState.Arrival(remote: PeerAddress(host: "10.0.0.9", port: 51_000), outbound: false, peerID: id, fast: true)
            let existing = try admittedID(state.admit(inbound, now: 0).0)
            #expect(state.peers[existing]!.listenAddress == nil)
            let (admission, actions) = state.admit(TorrentState.Arrival(remote: dialled, outbound: true, peerID: id, fast: true), now: at)
            return (state, existing, admission, actions)
        }
        #expect(TorrentRules().establishedAfter == 2 * second)

        // Ours is the smaller id, 1 s apart: our dial replaces their link.
        let ours = try race(own: 5, their: 9, at: 1 * second)
        let kept = try admittedID(ours.admission)
        #expect(closes(in: ours.actions) == [ours.existing: .redundant])
        #expect(ours.state.peers[kept]!.listenAddress == dialled)

        // Theirs is the smaller id: their link stays, and now we know where it listens.
        let theirs = try race(own: 5, their: 1, at: 1 * second)
        #expect(theirs.admission == .refused("already connected"))
        #expect(closes(in: theirs.actions).isEmpty)
        #expect(theirs.state.peers[theirs.existing]!.listenAddress == dialled)

        // 3 s old, the link is established: kept even though our dial has the smaller id.
        let late = try race(own: 5, their: 9, at: 3 * second)
        #expect(late.admission == .refused("already connected"))
        #expect(closes(in: late.actions).isEmpty)
        #expect(late.state.peers.count == 1)
        #expect(late.state.peers[late.existing]!.listenAddress == dialled)
    }

    @Test("admission: at most maxConnectionsPerAddress per host; when full, only an idle peer's slot goes to a newcomer")
    func admissionLimits() throws {
        var state = torrent()
        #expect(state.rules.maxConnectionsPerAddress == 4)
        for n in 1...4 { _ = state.connect(n, host: "10.0.0.9") }
        let (fifth, _) = state.admit(state.arrival(5, host: "10.0.0.9"), now: 0)
        #expect(fifth == .refused("too many connections from one address (4)"))
        #expect(state.connect(6, host: "10.0.0.10") > 0, "another host still gets in")

        var rules = TorrentRules()
        rules.maxPeers = 2
        rules.inboundSlack = 0
        var full = torrent(rules: rules)
        let first = full.connect(1, now: 0)
        _ = full.connect(2, now: 5 * second)
        // At 9 s nobody has been idle for turnoverIdle (10 s).
        let (early, earlyActions) = full.admit(full.arrival(3), now: 9 * second)
        #expect(early == .refused("every slot is busy"))
        #expect(closes(in: earlyActions).isEmpty)
        // At 11 s the first peer has been idle for 11 s, the second for 6 s: the first makes room.
        let (late, lateActions) = full.admit(full.arrival(3), now: 11 * second)
        _ = try admittedID(late)
        let closed = closes(in: lateActions)
        #expect(closed.keys.sorted() == [first])
        guard case .evicted = closed[first] else { Issue.record("not evicted: \(closed)"); return }
    }

    @Test("dialling: up to half of maxPeers, counting dials under way; the other half waits for peers that dial us")
    func dialBudget() {
        var rules = TorrentRules()
        rules.maxPeers = 10
        var state = torrent(rules: rules)
        #expect(state.dialBudget(dialling: 0) == 5)
        for n in 1...3 { _ = state.connect(n) }
        #expect(state.dialBudget(dialling: 1) == 1)
        #expect(state.dialBudget(dialling: 4) == 0)
        rules.maxPeers = 1
        #expect(torrent(rules: rules).dialBudget(dialling: 0) == 1, "a one-peer limit still dials the one")
    }

    @Test("peer ids are never reused, and a departed peer's id finds nobody")
    func peerIDsAreUnique() {
        var state = torrent()
        let a = state.connect(1)
        _ = state.disconnected(a, now: 0)
        let b = state.connect(2)
        #expect(a != b)
        #expect(state.peers[a] == nil && !state.peers.contains(a))
        #expect(state.peers[b]?.id == b && state.peers.count == 1)
    }

    /// `n` interested peers: each says so and its read batch ends. Returns how many we unchoked.
    fileprivate func unchokedOf(_ n: Int, seeding: Bool) -> (unchoked: Int, messages: Int) {
        var state = torrent(seeding: seeding)
        var unchokes = 0
        for k in 1...n {
            let id = state.connect(k)
            _ = state.received(.interested, from: id, now: UInt64(k) * ms)
            unchokes += state.readBatchEnded(id, now: UInt64(k) * ms).filter {
                if case .send(.unchoke, to: _) = $0 { return true }; return false
            }.count
        }
        return (state.peers.values.filter { !$0.amChoking }.count, unchokes)
    }

    @Test("a distinct-first seed unchokes every interested peer, beyond the upload slots")
    func seedUnchokesEveryone() {
        #expect(TorrentRules().uploadSlots == 16)
        #expect(torrent(seeding: true).isDistinctFirstSeed)
        let seed = unchokedOf(24, seeding: true)
        #expect(seed.unchoked == 24)
        #expect(seed.messages == 24)
    }

    @Test("a downloader unchokes exactly uploadSlots of its interested peers")
    func downloaderKeepsSlots() {
        #expect(unchokedOf(24, seeding: false).unchoked == TorrentRules().uploadSlots)
    }

    @Test("distinct-first: each Starling peer is assigned its own pieces; a block outside its assignment is rejected while another peer waits")
    func distinctFirstAssignments() throws {
        var state = torrent(seeding: true)
        let ids = (1...3).map { state.connect($0, starling: true) }
        for id in ids {
            _ = state.received(.haveNone, from: id, now: 0)
            _ = state.received(.interested, from: id, now: 0)
        }
        // One rechoke for the batch: all three are unchoked together, then pieces are handed out.
        let actions = state.readBatchEnded(ids[2], now: 0)
        let assigned = ids.map { suggestions(in: actions, to: $0) }
        for (id, pieces) in zip(ids, assigned) {
            #expect(messages(in: actions, to: id).first == .unchoke)
            #expect(!pieces.isEmpty, "peer \(id) has work")
        }
        #expect(assigned.map(\.count).reduce(0, +) == 8, "no piece is suggested to two peers")
        #expect(assigned.reduce(Set<Int>()) { $0.union($1) } == Set(0..<8))

        let (p1, p2) = (ids[0], ids[1])
        let mine = try #require(assigned[0].min()), theirs = try #require(assigned[1].min())
        // P2's connection is full: its request waits, so the seed is not idle.
        _ = state.writabilityChanged(p2, writable: false, now: ms)
        #expect(state.received(.request(blocks(of: theirs)[0]), from: p2, now: ms).isEmpty)
        let foreign = blocks(of: theirs)[1]
        #expect(state.received(.request(foreign), from: p1, now: 2 * ms) == [.send(.reject(foreign), to: p1)])
        let own = blocks(of: mine)[0]
        #expect(state.received(.request(own), from: p1, now: 3 * ms) == [.serve(own, to: p1)])
    }

    @Test("distinct-first: an assigned piece counts as on its way until the kernel takes its last block; then the next is assigned")
    func seedAssignsOnKernelTake() throws {
        var state = torrent(pieces: 40, seeding: true)
        let p = state.connect(1, starling: true)
        _ = state.received(.haveNone, from: p, now: 0)
        _ = state.received(.interested, from: p, now: 0)
        let first = suggestions(in: state.readBatchEnded(p, now: 0), to: p)
        #expect(first.count == 32, "2 MiB of 64 KiB pieces")
        let piece = try #require(first.min())
        var handed: [Action] = []
        for b in blocks(of: piece) { handed += state.received(.request(b), from: p, now: ms) }
        #expect(handed == blocks(of: piece).map { .serve($0, to: p) }, "handed to the connection: nothing new yet")
        for b in blocks(of: piece).dropLast() {
            #expect(state.blockSent(b, to: p, sent: true, now: 2 * ms).isEmpty)
        }
        let next = suggestions(in: state.blockSent(blocks(of: piece)[3], to: p, sent: true, now: 2 * ms), to: p)
        #expect(next.count == 1 && next.isDisjoint(with: first))
    }

    @Test("distinct-first: a block nobody was assigned is refused while the assignments fill the cap, served when they cannot",
          arguments: [(40, false), (20, true)])
    func seedIdleMeansRoomForMore(pieces: Int, served: Bool) throws {
        var state = torrent(pieces: pieces, seeding: true)
        let ids = (1...2).map { state.connect($0, starling: true) }
        for id in ids {
            _ = state.received(.haveNone, from: id, now: 0)
            _ = state.received(.interested, from: id, now: 0)
        }
        let actions = state.readBatchEnded(ids[1], now: 0)
        #expect(ids.map { suggestions(in: actions, to: $0).count }.reduce(0, +) == min(pieces, 32))
        // No request waits anywhere: only the count of pieces on their way decides.
        let foreign = blocks(of: try #require(suggestions(in: actions, to: ids[1]).min()))[0]
        let answer = state.received(.request(foreign), from: ids[0], now: ms)
        #expect(answer == [served ? .serve(foreign, to: ids[0]) : .send(.reject(foreign), to: ids[0])])
    }

    @Test("unchecked backlog: once maxUncheckedBytes of pieces await their check nothing is asked; the check resumes requests")
    func uncheckedBacklogHoldsRequests() throws {
        var rules = TorrentRules()
        rules.maxUncheckedBytes = 2 * 4 * block
        var state = torrent(rules: rules)
        let a = state.connect(1)
        _ = state.hasAll(a)
        let firstPiece = requests(in: state.received(.unchoke, from: a, now: 0), to: a)
        try #require(firstPiece.count == 4)
        let secondPiece = requests(in: state.deliver(firstPiece, from: a, now: ms), to: a)
        #expect(state.uncheckedBytes == 4 * block)
        try #require(secondPiece.count == 4, "one piece awaiting its check is under the limit")
        let held = state.deliver(secondPiece, from: a, now: 2 * ms)
        #expect(held.contains(.check(piece: secondPiece[0].piece, blockDigests: false)))
        #expect(state.uncheckedBytes == 8 * block)
        #expect(requests(in: held, to: a).isEmpty, "the piece worker is behind: nothing new is asked")
        #expect(requests(in: state.tick(now: 500 * ms), to: a).isEmpty)

        let resumed = state.pieceChecked(firstPiece[0].piece, .matched(blockDigests: nil), now: 600 * ms)
        #expect(state.uncheckedBytes == 4 * block)
        let thirdPiece = requests(in: resumed, to: a)
        #expect(thirdPiece.count == 4)
        #expect(Set(thirdPiece).isDisjoint(with: firstPiece + secondPiece))
    }

    @Test("per-torrent upload cap: once its bucket is spent serving waits for a wake, and the wake serves again")
    func uploadCapWakes() {
        var rules = TorrentRules()
        rules.distinctFirstSeeding = false
        var state = torrent(seeding: true, rules: rules)
        let p = state.connect(1, fast: false)
        _ = state.received(.interested, from: p, now: 0)
        #expect(messages(in: state.readBatchEnded(p, now: 0), to: p) == [.unchoke])
        #expect(state.setCaps(up: 16_384, down: 0, now: 0).isEmpty)
        let reqs = blocks(of: 0)
        // The bucket starts with its burst, 32 KiB: two blocks.
        #expect(state.received(.request(reqs[0]), from: p, now: 0) == [.serve(reqs[0], to: p)])
        #expect(state.received(.request(reqs[1]), from: p, now: 0) == [.serve(reqs[1], to: p)])
        #expect(state.received(.request(reqs[2]), from: p, now: 0) == [.wake(after: 1_000_000)])
        #expect(state.received(.request(reqs[3]), from: p, now: 0).isEmpty, "one wake is pending")
        // 1 ms later the balance is positive again: one block (a debt now), then the next wake.
        let woken = state.wake(now: 1_000_000)
        #expect(woken.contains(.serve(reqs[2], to: p)))
        #expect(!woken.contains(.serve(reqs[3], to: p)))
        #expect(woken.contains { if case .wake = $0 { return true }; return false })
        #expect(state.wake(now: 2 * second).contains(.serve(reqs[3], to: p)))
    }

    @Test("dial schedule: capacity, budget, dialling not due twice, backoff of 2 s then 4 s, reset by a connection")
    func dialSchedule() {
        var d = DialSchedule(capacity: 3)
        let addresses = (1...5).map { PeerAddress(host: "10.0.0.\($0)", port: 6881) }
        #expect(d.add(addresses) == 2)
        #expect(d.count == 3)
        #expect(d.add([addresses[0]]) == 0, "a known address is not dropped")
        let first = d.due(now: 0, budget: 2) { _ in false }
        #expect(first.count == 2)
        let rest = d.due(now: 0, budget: 5) { _ in false }
        #expect(rest.count == 1)
        #expect(Set(first + rest) == Set(addresses[0..<3]))
        #expect(d.due(now: 0, budget: 5) { _ in false }.isEmpty, "every address is being dialled")
        #expect(d.inProgress == 3)

        let a = first[0]
        let onlyA = { (x: PeerAddress) in x != a }
        d.dialEnded(a, connected: false)
        #expect(d.inProgress == 2)
        #expect(d.due(now: 1_999 * ms, budget: 5, skipping: onlyA).isEmpty)
        #expect(d.due(now: 2 * second, budget: 5, skipping: onlyA) == [a])
        d.dialEnded(a, connected: false)
        #expect(d.due(now: 5_999 * ms, budget: 5, skipping: onlyA).isEmpty, "the second failure waits 4 s")
        #expect(d.due(now: 6 * second, budget: 5, skipping: onlyA) == [a])
        #expect(d.due(now: 6 * second, budget: 5) { _ in true }.isEmpty, "skipped addresses are not dialled")

        // This dial connects; the connection closes: the next failure waits 2 s again, not 8.
        d.dialEnded(a, connected: true)
        d.connectionClosed(a)
        #expect(d.due(now: 14 * second, budget: 5, skipping: onlyA) == [a])
        d.dialEnded(a, connected: false)
        #expect(d.due(now: 15_999 * ms, budget: 5, skipping: onlyA).isEmpty)
        #expect(d.due(now: 16 * second, budget: 5, skipping: onlyA) == [a])
    }

    @Test("rate meter: 0 before a second has passed, then bytes per second, each new window weighing half")
    func rateMeter() {
        var m = RateMeter(now: 0)
        m.add(1000, now: 500 * ms)
        #expect(m.rate == 0)
        m.roll(now: 1 * second)
        #expect(m.rate == 1000)
        #expect(m.total == 1000)
        m.roll(now: 2 * second)
        #expect(m.rate == 500, "an empty second halves it")
        m.add(3000, now: 3 * second)
        #expect(m.rate == 1750)
        #expect(m.total == 4000)
    }
}

@Suite("Torrent state across sites (a site map: what crosses the uplink)")
struct TorrentStateSiteTests {
    fileprivate func bits(_ pieces: some Sequence<Int>, count: Int = 16) -> Bitfield {
        var b = Bitfield(count: count)
        for p in pieces { b.set(p) }
        return b
    }

    /// 16 pieces; peer 1 of our site (holding `mateHas`, if given) and peer 2 of another.
    fileprivate func withSiteMateAndRemote(mateHas: Range<Int>? = nil) -> (state: TorrentState, mate: Int, remote: Int) {
        var state = torrent(pieces: 16)
        let mate = state.connect(1, sameSite: true)
        let remote = state.connect(2, sameSite: false)
        if let mateHas { _ = state.received(.bitfield(bits(mateHas).bytes), from: mate, now: 0) }
        return (state, mate, remote)
    }

    @Test("a peer of another site is asked only for pieces no site-mate has and that our share holds")
    func remoteAskedForOwnShareOfWhatTheSiteLacks() {
        var (state, mate, remote) = withSiteMateAndRemote(mateHas: 0..<8)
        _ = state.hasAll(remote)
        let share = state.site.share
        #expect(share.setCount > 0 && share.setCount < 16, "two members split the pieces: \(share.setCount) are ours")
        let asked = Set(requests(in: state.received(.unchoke, from: remote, now: 0), to: remote).map(\.piece))
        #expect(!asked.isEmpty)
        for p in asked {
            #expect(p >= 8, "piece \(p) is in the site already")
            #expect(share[p], "piece \(p) is the site-mate's to fetch across")
        }
        // The site-mate is asked for what it has, as any peer.
        let fromMate = Set(requests(in: state.received(.unchoke, from: mate, now: 0), to: mate).map(\.piece))
        #expect(!fromMate.isEmpty && fromMate.allSatisfy { $0 < 8 })
    }

    @Test("the owner of a piece is the same in both site-mates' views, and each piece has exactly one")
    func sharesPartitionThePieces() {
        var a = torrent(pieces: 64, own: peerID(1, starling: true), address: "10.0.0.1")
        var b = torrent(pieces: 64, own: peerID(2, starling: true), address: "10.0.0.2")
        _ = a.admit(a.arrival(2, starling: true, sameSite: true), now: 0)
        _ = b.admit(b.arrival(1, starling: true, sameSite: true), now: 0)
        for p in 0..<64 { #expect(a.site.share[p] != b.site.share[p], "piece \(p): exactly one owner") }
    }

    @Test("interest across sites: none in a remote peer whose pieces the site has; it returns when the site-mate leaves")
    func interestFollowsTheSite() {
        var (state, mate, remote) = withSiteMateAndRemote(mateHas: 0..<16)
        let told = messages(in: state.received(.bitfield(bits(0..<4).bytes), from: remote, now: 0), to: remote)
        #expect(!told.contains(.interested))
        #expect(state.peers[remote]!.amInterested == false)
        let after = messages(in: state.disconnected(mate, now: 1 * second), to: remote)
        #expect(after.contains(.interested))
    }

    @Test("a host that receives nothing for siteFallbackAfter (no rate measured yet) asks a remote peer for pieces its site-mates own")
    func fallbackAfterSilence() {
        var (state, _, remote) = withSiteMateAndRemote()
        let share = state.site.share
        let others = (0..<16).filter { !share[$0] }
        #expect(!others.isEmpty)
        _ = state.received(.bitfield(bits(others).bytes), from: remote, now: 0)
        #expect(state.peers[remote]!.amInterested, "the site lacks these pieces")
        #expect(requests(in: state.received(.unchoke, from: remote, now: 0), to: remote).isEmpty, "they are the site-mate's to fetch")
        #expect(requests(in: state.tick(now: TorrentRules().siteFallbackAfter), to: remote).isEmpty)
        let later = requests(in: state.tick(now: TorrentRules().siteFallbackAfter + second), to: remote)
        #expect(!later.isEmpty && later.allSatisfy { !share[$0.piece] }, "asked once nothing arrived for siteFallbackAfter")
    }

    @Test("the silence before the site fallback is a dozen pieces at the downlink's fastest rate, within 250 ms and 3 s")
    func fallbackFollowsTheRate() {
        let rules = TorrentRules(), piece = 128 * 1024
        #expect(rules.siteFallback(pieceLength: piece, peakRate: 0) == rules.siteFallbackAfter, "nothing measured yet")
        #expect(rules.siteFallback(pieceLength: piece, peakRate: 500_000) == rules.siteFallbackAfter, "4 Mbit: the ceiling")
        let at20 = rules.siteFallback(pieceLength: piece, peakRate: 2_500_000)
        #expect(at20 > 600 * ms && at20 < 650 * ms, "20 Mbit: 12 pieces take \(at20 / ms) ms")
        #expect(rules.siteFallback(pieceLength: piece, peakRate: 125_000_000) == rules.siteFallbackFloor, "1 Gbit: the floor")
    }

    @Test("a host whose downlink has run fast falls back across sites after a short silence, not the ceiling")
    func fastHostFallsBackSooner() {
        var state = torrent(pieces: 64)
        let mate = state.connect(1, sameSite: true)
        let remote = state.connect(2, sameSite: false)
        _ = state.received(.bitfield(bits(0..<48, count: 64).bytes), from: mate, now: 0)
        let share = state.site.share
        let others = (48..<64).filter { !share[$0] }
        #expect(!others.isEmpty)
        _ = state.received(.bitfield(bits(others, count: 64).bytes), from: remote, now: 0)
        #expect(requests(in: state.received(.unchoke, from: remote, now: 0), to: remote).isEmpty)
        // The site-mate delivers 3 MiB within the first 100 ms.
        var asked = requests(in: state.received(.unchoke, from: mate, now: 0), to: mate)
        var t: UInt64 = 0
        while !asked.isEmpty, t < 100 * ms {
            t += ms
            asked = requests(in: state.deliver(asked, from: mate, now: t), to: mate)
        }
        #expect(asked.isEmpty, "the mate's pieces are all here")
        let later = requests(in: state.tick(now: second), to: remote)
        #expect(!later.isEmpty && later.allSatisfy { !share[$0.piece] },
                "nothing arrived for 0.9 s, longer than 12 pieces take at 3 MiB/s")
    }

    @Test("site-mates handed out by the tracker, connected or not, take their share: the owners stay one per piece")
    func knownSiteMatesTakeTheirShare() {
        let addresses = (1...6).map { "10.0.0.\($0)" }
        var states = addresses.map { torrent(pieces: 256, address: $0) }
        // Host 0 is connected to host 1 only but knows them all; the others know everyone.
        _ = states[0].admit(states[0].arrival(1, sameSite: true), now: 0)
        let before = states[0].site.share.setCount
        states[0].siteMembersKnown(addresses)
        #expect(states[0].site.share.setCount < before, "more owners, a smaller share: \(before) -> \(states[0].site.share.setCount)")
        for i in 1..<6 { states[i].siteMembersKnown(addresses) }
        for p in 0..<256 { #expect(states.filter { $0.site.share[p] }.count == 1, "piece \(p): one owner") }
        #expect(states[0].site.knownCount == 5, "itself is not counted")
    }

    @Test("the origin seed in our site is no source of its pieces for the rule: what it sent elsewhere is fetched back")
    func originDoesNotCountAsTheSite() {
        var state = torrent(pieces: 16)
        let origin = state.connect(1, starling: true, sameSite: true)
        let remote = state.connect(2, sameSite: false)
        _ = state.hasAll(origin)
        _ = state.received(.bitfield(bits(0..<16).bytes), from: remote, now: 0)
        #expect(state.peers[remote]!.amInterested == false, "a seed of our site has everything")
        // It assigns us a piece: it is the origin, whose uplink bounds the swarm.
        let told = messages(in: state.received(.suggest(piece: 3), from: origin, now: 0), to: remote)
        #expect(told.contains(.interested))
        #expect(state.site.inSite.isEmpty && state.site.share.isComplete, "alone in the site but for the origin")
    }

    @Test("without a site map nothing changes: every peer is asked for anything, no bytes count as across sites")
    func noMapNoChange() {
        var state = torrent(pieces: 16)
        let a = state.connect(1)
        _ = state.hasAll(a)
        let asked = requests(in: state.received(.unchoke, from: a, now: 0), to: a)
        #expect(!asked.isEmpty)
        #expect(state.site.memberCount == 0 && state.site.share.isComplete)
        _ = state.deliver(Array(asked.prefix(2)), from: a, now: 10 * ms)
        #expect(state.counters.downloaded == Int64(2 * block) && state.counters.downloadedAcrossSites == 0)
    }

    @Test("bytes from and to peers of other sites are counted apart")
    func countersAcrossSites() {
        var state = torrent(pieces: 16)
        let remote = state.connect(2, sameSite: false)
        _ = state.hasAll(remote)
        let asked = requests(in: state.received(.unchoke, from: remote, now: 0), to: remote)
        _ = state.deliver(Array(asked.prefix(3)), from: remote, now: 10 * ms)
        #expect(state.counters.downloadedAcrossSites == Int64(3 * block))
    }
}
