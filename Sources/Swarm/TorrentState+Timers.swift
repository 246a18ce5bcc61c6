extension TorrentState {
    // MARK: periodic work

    /// Chooses whom to upload to: on the rechoke timer (every 10 s) and when interest changes.
    public mutating func rechoke(now: UInt64) -> [Action] {
        chooseUnchoked(now: now)
        return takeActions()
    }

    mutating func chooseUnchoked(now: UInt64) {
        let seeding = picker.isComplete
        var candidates: [Choker.Candidate] = []
        for id in Array(peers.keys) {
            peers[id]!.downloaded.roll(now: now)
            peers[id]!.uploaded.roll(now: now)
            candidates.append(Choker.Candidate(id: id, interested: peers[id]!.peerInterested,
                                               rate: seeding ? peers[id]!.uploaded.rate : peers[id]!.downloaded.rate,
                                               pieces: peers[id]!.bitfield.setCount))
        }
        let unchoke = choker.unchoked(candidates, now: now, random: &random)
        for id in Array(peers.keys) {
            let shouldChoke = !unchoke.contains(id)
            guard shouldChoke != peers[id]!.amChoking else { continue }
            peers[id]!.amChoking = shouldChoke
            send(shouldChoke ? .choke : .unchoke, to: id)
            if shouldChoke {
                distinctFirst?.release(peer: id)
                peers[id]!.suggestedByUs.removeAll()
                if peers[id]!.fast { for r in peers[id]!.incoming { send(.reject(r), to: id) } }
                peers[id]!.incoming.removeAll()
            }
        }
        assignPieces(now: now)
    }

    /// Once a second: rates, stale suggestions, requests stuck at snubbing peers, pipelines.
    public mutating func tick(now: UInt64) -> [Action] {
        let c = counters
        downRate.add(Int(c.downloaded - lastCounted.down), now: now)
        upRate.add(Int(c.uploaded - lastCounted.up), now: now)
        lastCounted = (c.downloaded, c.uploaded)
        peakDownRate = max(peakDownRate, downRate.rate)
        if distinctFirst != nil {
            // Suggestions a peer sat on are offered to others again; give it fresh ones.
            for id in Array(peers.keys) {
                peers[id]!.suggestedByUs = peers[id]!.suggestedByUs.filter { distinctFirst!.isClaimed($0, by: id, now: now) }
            }
            assignPieces(now: now)
        }
        for id in Array(peers.keys) where !peers[id]!.outstanding.isEmpty && !peers[id]!.snubbed {
            guard now - peers[id]!.lastBlockAt > rules.snubTimeout else { continue }
            peers[id]!.snubbed = true
            log(.debug, "peer snubbed us; re-requesting its blocks elsewhere", ["peer": peers[id]!.host])
            dropOutstanding(of: id)
        }
        // Peers that deliver are refilled first, so a snubbing peer's blocks go to them.
        let ids = Array(peers.keys)
        for id in ids where !peers[id]!.snubbed { request(from: id, now: now, unassigned: true) }
        for id in ids where peers[id]!.snubbed { request(from: id, now: now) }
        return takeActions()
    }
}
