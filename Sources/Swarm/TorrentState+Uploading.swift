import BitTorrent
import Values

extension TorrentState {
    // MARK: per-torrent caps

    /// Sets this torrent's own caps (0 = none); they apply below the host-wide caps.
    public mutating func setCaps(up: Int64, down: Int64, now: UInt64) -> [Action] {
        upCap = up > 0 ? TokenBucket(rate: up, now: now) : nil
        downCap = down > 0 ? TokenBucket(rate: down, now: now) : nil
        serveAll(now: now)
        requestFromAll(now: now)
        return takeActions()
    }

    /// A `wake` came due: the caps have refilled.
    public mutating func wake(now: UInt64) -> [Action] {
        wakeScheduled = false
        serveAll(now: now)
        requestFromAll(now: now)
        return takeActions()
    }

    /// True when the bucket has a positive balance; otherwise asks to be woken once it has refilled.
    mutating func capAllows(down: Bool, now: UInt64) -> Bool {
        guard var b = down ? downCap : upCap else { return true }
        b.refill(now: now)
        if down { downCap = b } else { upCap = b }
        if b.tokens > 0 { return true }
        if !wakeScheduled {
            wakeScheduled = true
            actions.append(.wake(after: min(max(b.delayUntilAvailable(now: now), 1_000_000), 100_000_000)))
        }
        return false
    }

    // MARK: uploading

    public mutating func writabilityChanged(_ id: Int, writable: Bool, now: UInt64) -> [Action] {
        guard peers.contains(id) else { return [] }
        peers[id]!.writable = writable
        if writable { serve(id, now: now) }
        return takeActions()
    }

    /// A block from `serve` left for the peer (`sent`), or could not be read or written.
    public mutating func blockSent(_ req: BlockRequest, to id: Int, sent: Bool, now: UInt64) -> [Action] {
        if peers.contains(id), let k = peers[id]!.uploading.firstIndex(of: req.piece) { peers[id]!.uploading.remove(at: k) }
        guard sent else {
            distinctFirst?.withdraw(req)
            return takeActions()
        }
        counters.uploaded += Int64(req.length)
        guard peers.contains(id) else { return [] }
        if peers[id]!.suggestedByUs.contains(req.piece), distinctFirst?.isSent(piece: req.piece) == true,
           !peers[id]!.uploading.contains(req.piece) {
            // The kernel took the piece's last block: within its small unsent buffer of the
            // wire, so the next piece can start.
            peers[id]!.suggestedByUs.remove(req.piece)
            assignmentDue = true
        }
        if peers[id]!.acrossSites { counters.uploadedAcrossSites += Int64(req.length) }
        peers[id]!.uploaded.add(req.length, now: now)
        peers[id]!.lastUsefulAt = now
        serve(id, now: now)
        return takeActions()
    }

    /// The uplink has room for a block nobody was assigned: fewer assigned pieces are on
    /// their way than `seedPiecesInFlight` (so none was left to assign) and no other peer has
    /// an upload waiting. While the assignments fill the cap, such a block would share the
    /// uplink with them and slow the pieces the swarm is waiting for.
    private func uplinkIdle(besides id: Int) -> Bool {
        // Asked for every block a seed serves: the scan that usually stops early goes first.
        guard peers.allSatisfy({ $0.id == id || $0.incoming.isEmpty }) else { return false }
        var assigned = 0
        peers.forEach { assigned += $0.suggestedByUs.count }
        return assigned < seedPiecesInFlight
    }

    private mutating func serveAll(now: UInt64) {
        for id in Array(peers.keys) { serve(id, now: now) }
    }

    /// Serves queued requests a few at a time: a block is read only when the connection is
    /// ready to send it, so memory stays small even under a tight upload cap.
    ///
    /// A distinct-first seed admits or refuses a block at this point, not when the request
    /// arrived: requests wait here until their connection can take them. Deciding on arrival
    /// let a peer with a deep pipeline claim blocks it would only receive seconds later.
    mutating func serve(_ id: Int, now: UInt64) {
        let limit = TorrentRules.inUnits(rules.uploadsInFlightPerPeer, of: layout.blockLength)
        while peers.contains(id), peers[id]!.uploading.count < limit, peers[id]!.writable, !peers[id]!.incoming.isEmpty {
            let req = peers[id]!.incoming[0]
            // Only a peer that understands rejects can be pointed elsewhere.
            if peers[id]!.fast, distinctFirst != nil {
                let idle = uplinkIdle(besides: id), assignedOnly = Self.isSuggestionTarget(peers[id]!)
                if !distinctFirst!.admit(req, from: id, idle: idle, assignedOnly: assignedOnly, now: now) {
                    peers[id]!.incoming.removeFirst()
                    send(.reject(req), to: id)
                    continue
                }
            }
            if upCap != nil {
                guard capAllows(down: false, now: now) else { break }
                _ = upCap!.takeWhole(req.length, now: now)
            }
            peers[id]!.incoming.removeFirst()
            peers[id]!.uploading.append(req.piece)
            actions.append(.serve(req, to: id))
        }
        if assignmentDue {
            assignmentDue = false
            assignPieces(now: now)
        }
    }

    // MARK: suggestions (distinct-first seeding)

    /// Pieces a distinct-first seed has assigned at once, counted until the kernel takes their
    /// last block: about 250 ms of its measured upload, at least 2 MiB and at least as many as
    /// a peer has uploaders (`Defaults.uploadSlots`): each of the seed's connections gets a
    /// share of a receiving downlink that those uploaders also fill, so fewer leave the
    /// seed's uplink idle. Few otherwise, so each piece reaches its peer in a burst and can be
    /// passed on soon (docs/design/engine.md).
    private var seedPiecesInFlight: Int {
        max(Defaults.uploadSlots, (2 << 20) / layout.pieceLength, Int(upRate.rate / 4) / layout.pieceLength)
    }

    /// Hands out pieces of a distinct-first seed: while fewer than `seedPiecesInFlight` are
    /// being sent, the peer with the fewest pieces on the way (then the one that has received
    /// least from us so far) is told, by a BEP 6 suggest, to fetch a piece it lacks that has
    /// gone out least often. Every peer thus gets an equal share of the pieces only this seed
    /// has and forwards them with its own uplink; left to TCP, one connection can take most
    /// of the seed's uplink and become the only source of half the file.
    mutating func assignPieces(now: UInt64) {
        guard distinctFirst != nil else { return }
        var targets = peers.ids(where: Self.isSuggestionTarget)
        guard !targets.isEmpty else { return }
        let limit = seedPiecesInFlight
        var inFlight = targets.reduce(0) { $0 + peers[$1]!.suggestedByUs.count }
        while inFlight < limit {
            targets.sort { (peers[$0]!.suggestedByUs.count, peers[$0]!.uploaded.total) < (peers[$1]!.suggestedByUs.count, peers[$1]!.uploaded.total) }
            var assigned = false
            for id in targets {
                guard let p = distinctFirst!.suggest(to: id, has: peers[id]!.bitfield, now: now) else { continue }
                peers[id]!.suggestedByUs.insert(p)
                send(.suggest(piece: p), to: id)
                assigned = true
                break
            }
            guard assigned else { return }
            inFlight += 1
        }
    }

    /// Suggestions go to Starling peers only: they treat them as assignments and fetch them at
    /// once (`PeerState.assignsPieces`). Another client may ignore a suggestion, and the piece
    /// would wait out its claim; those peers get the plain distinct-first rule instead.
    private static func isSuggestionTarget(_ peer: PeerState) -> Bool {
        peer.fast && peer.peerInterested && !peer.amChoking && peer.isStarling
    }
}
