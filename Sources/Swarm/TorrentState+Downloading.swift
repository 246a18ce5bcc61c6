import BitTorrent

extension TorrentState {
    // MARK: downloading

    /// Fills the peer's request pipeline. Its depth follows the measured rate from the peer
    /// (`TorrentRules.requestHorizon` of data): deep enough that the link never idles
    /// waiting for the next request, shallow enough that little waits in queues on the way.
    /// `unassigned` (on the tick only): from a seed that assigns pieces, also ask for what it
    /// did not assign when no other peer has anything for us.
    mutating func request(from id: Int, now: UInt64, unassigned: Bool = false) {
        // Fields are read through `peers[id]!`, never a local copy of the peer: a copy alive
        // while its sets change would copy them on every refill.
        guard peers[id]?.amInterested == true, !picker.isComplete, failure == nil else { return }
        // The piece worker is behind: ask again when it catches up (`pieceChecked`).
        guard uncheckedBytes < uncheckedLimit else { return }
        // Under a per-torrent download cap, new requests wait while its bucket is in debt.
        if downCap != nil, !capAllows(down: true, now: now) { return }
        let canAskAll = !peers[id]!.peerChoking
        guard canAskAll || !peers[id]!.allowedFast.isEmpty else { return }
        peers[id]!.downloaded.roll(now: now)
        // A seed that assigns pieces decides how much we fetch from it: take all it hands out,
        // or its uplink idles while our earlier blocks still sit in a queue on the way.
        let assigns = peers[id]!.assignsPieces
        // A snubbing peer keeps one request (libtorrent's rule too): enough to show it is
        // back, while the rest of its share goes to peers that deliver.
        let depth = peers[id]!.snubbed ? 1
            : assigns ? TorrentRules.inUnits(rules.maxPipeline, of: layout.blockLength) : pipelineDepth(for: id)
        let room = depth - peers[id]!.outstanding.count
        guard room > 0 else { return }
        var has = peers[id]!.bitfield
        if !canAskAll {
            has = Bitfield(count: layout.pieceCount)
            for p in peers[id]!.allowedFast where peers[id]!.bitfield[p] { has.set(p) }
        }
        if !peers[id]!.refused.isEmpty {
            let memory = rules.refusalMemory
            peers[id]!.refused = peers[id]!.refused.filter { now - $0.value <= memory }
            for p in peers[id]!.refused.keys { has.clear(p) }
        }
        if peers[id]!.acrossSites && !assigns {
            // What crosses the uplink: pieces the site lacks, ours by the site's rendezvous
            // hash (`SiteAffinity`), or any the site lacks once nothing has arrived for a while.
            // An origin that assigns pieces decides itself; its pieces are new everywhere.
            let silence = rules.siteFallback(pieceLength: layout.pieceLength, peakRate: peakDownRate)
            has = site.acrossSites(has, anyOwner: now - lastArrivalAt > silence)
        }
        if peers[id]!.suggests {
            // Kept until we have the piece: blocks rejected or dropped later are asked again.
            let have = picker.have
            peers[id]!.suggestedToUs.removeAll { have[$0] }
        }
        var reqs = picker.pick(for: id, peerHas: has, count: room, outstanding: peers[id]!.outstanding,
                               suggested: peers[id]!.suggestedToUs, onlySuggested: assigns)
        if unassigned, reqs.isEmpty, assigns, peers[id]!.outstanding.isEmpty,
           !peers.contains(where: { $0.id != id && $0.amInterested }) {
            // Nobody else has what we lack (the peers it went to left or were banned): ask
            // the seed though it assigned nothing. It sends such blocks once it has nothing
            // fresher to send; waiting for an assignment, the piece was never sent again.
            reqs = picker.pick(for: id, peerHas: has, count: room, outstanding: peers[id]!.outstanding)
        }
        // The snub clock runs from our first request, not from the connection: a peer that
        // choked us for a minute has not failed to deliver.
        if !reqs.isEmpty, peers[id]!.outstanding.isEmpty { peers[id]!.lastBlockAt = now }
        for r in reqs {
            peers[id]!.outstanding.insert(r)
            send(.request(r), to: id)
        }
    }

    /// Blocks asked of peers and not yet here, all peers together.
    public var requestsOutstanding: Int {
        var n = 0
        peers.forEach { n += $0.outstanding.count }
        return n
    }

    /// The peer's pipeline depth: `requestHorizon` of its rate, and the `minPipeline` floor
    /// only while all our requests together stay within `requestHorizon` of the torrent's
    /// download rate, once that rate is measured. With 50 peers on a slow downlink, a floor
    /// for each would queue seconds of data ahead of every fresh piece (4 blocks x 50 peers
    /// is 6 s at 4 Mbit/s).
    private func pipelineDepth(for id: Int) -> Int {
        let unit = layout.blockLength
        let byRate = rules.pipelineDepth(forRate: peers[id]!.downloaded.rate, floor: 1, blockLength: unit)
        let floor = TorrentRules.inUnits(rules.minPipeline, of: unit)
        // Until a second has measured the download there is nothing to share.
        guard byRate < floor, downRate.rate > 0 else { return max(byRate, floor) }
        let out = requestsOutstanding
        let budget = max(TorrentRules.inUnits(4 * rules.minPipeline, of: unit), rules.pipelineDepth(forRate: downRate.rate, blockLength: unit))
        return out < budget ? floor : byRate
    }

    mutating func requestFromAll(now: UInt64) {
        for id in Array(peers.keys) { request(from: id, now: now) }
    }

    mutating func blockArrived(_ req: BlockRequest, from id: Int, now: UInt64) {
        // A banned peer's connection is closing: nothing more of it enters a piece.
        guard !banned.contains(peers[id]!.host) else { return }
        peers[id]!.outstanding.remove(req)
        peers[id]!.lastBlockAt = now
        peers[id]!.lastUsefulAt = now
        peers[id]!.snubbed = false
        lastArrivalAt = now
        if peers[id]!.acrossSites { counters.downloadedAcrossSites += Int64(req.length) }
        peers[id]!.downloaded.add(req.length, now: now)
        // Refill the pipeline once per read batch, not once per block: one write for many requests.
        peers[id]!.needsRequests = true
        counters.downloaded += Int64(req.length)
        if downCap != nil { _ = downCap!.takeWhole(req.length, now: now) }
        let outcome = picker.blockReceived(req, from: id)
        guard outcome.accepted else {
            counters.wasted += Int64(req.length)
            return
        }
        for other in outcome.cancelFrom where peers[other]?.outstanding.remove(req) != nil {
            send(.cancel(req), to: other)
        }
        actions.append(.assemble(req))
        if outcome.pieceComplete {
            // Until checked, the picker holds the piece as fully received: nothing of it is
            // asked again and nothing of it is served.
            uncheckedBytes += layout.length(ofPiece: req.piece)
            actions.append(.check(piece: req.piece, blockDigests: blame.isSuspect(req.piece)))
        }
    }

    /// The piece worker's verdict on a piece handed over by `check`.
    public mutating func pieceChecked(_ index: Int, _ result: PieceCheck, now: UInt64) -> [Action] {
        let length = layout.length(ofPiece: index)
        let wasHeld = uncheckedBytes >= uncheckedLimit
        uncheckedBytes -= length
        guard failure == nil else { return [] }
        switch result {
        case .unwritable(let error):
            stopDownload("cannot store piece \(index): \(error)")
        case .mismatched(let digests):
            let senders = picker.pieceFailed(index).map { host(of: $0) ?? "?" }
            counters.hashFailures += 1
            counters.wasted += Int64(length)
            log(.warning, "piece failed its hash check", ["piece": "\(index)", "senders": "\(Set(senders).sorted())"])
            for host in blame.pieceFailed(index, senders: senders, digests: digests) { ban(host, piece: index) }
            requestFromAll(now: now)
        case .matched(let digests):
            if let digests {
                for host in blame.pieceVerified(index, digests: digests) { ban(host, piece: index) }
            }
            if !picker.have[index] { holders.weVerified(piece: index) }
            picker.pieceVerified(index)
            counters.verified += 1
            // Read from `holders`, not the peers' own fields: this runs for every piece and
            // every peer (`PieceHolders`).
            for id in peers.keys {
                let slot = PeerTable.slot(of: id), holds = holders.contains(piece: index, slot: slot)
                assert(holds == peers[id]!.bitfield[index], "holders out of step with the peer's bitfield")
                // A peer that has the piece gains nothing from hearing we have it too, except a
                // seed (a distinct-first seed steers its suggestions by what we have) and, under
                // a slew limit, any peer (`TorrentRules.announceToHolders`).
                if rules.announceToHolders || !holds || holders.isSeed(slot: slot) {
                    send(.have(piece: index), to: id)
                }
                // Only a holder of the piece can have had nothing else for us.
                if holds, holders.wanted(slot: slot) == 0 || holders.isAcrossSites(slot: slot), peers[id]!.amInterested {
                    updateInterest(id)
                }
            }
            if picker.isComplete {
                actions.append(.finalize)
            } else if wasHeld && uncheckedBytes < uncheckedLimit {
                // Requests stopped while the worker was behind (`request(from:)`); it has caught up.
                requestFromAll(now: now)
            }
        }
        return takeActions()
    }

    /// The file is final: the download is complete. Seeds have nothing more for us.
    public mutating func finalized(now: UInt64) -> [Action] {
        guard completedAt == nil, failure == nil else { return [] }
        completedAt = now
        for id in Array(peers.keys) {
            if peers[id]!.isSeed { close(id, .redundant) } else if peers[id]!.amInterested { updateInterest(id) }
        }
        return takeActions()
    }

    /// Stops the download for good (the file cannot be made final): every connection closes.
    public mutating func fail(_ message: String) -> [Action] {
        stopDownload(message)
        return takeActions()
    }

    /// Shutdown or removal: every connection closes, and a download not yet complete ends
    /// as stopped, so nothing waits on it.
    public mutating func stop() -> [Action] {
        if completedAt == nil, failure == nil { markFailed("stopped before the download completed") }
        for id in peers.keys { close(id, .redundant) }
        return takeActions()
    }

    private mutating func stopDownload(_ message: String) {
        guard failure == nil else { return }
        markFailed(message)
        for id in peers.keys { close(id, .redundant) }
    }

    private mutating func markFailed(_ message: String) {
        failure = message
        actions.append(.failed(message))
    }

    /// Bans an address proven to have sent a bad block of `piece` for the rest of the run:
    /// closes its connections and forgets every block it sent to pieces still in progress.
    private mutating func ban(_ host: String, piece: Int) {
        guard host != "?", banned.insert(host).inserted else { return }
        log(.warning, "banning peer that sent corrupt data", ["peer": host, "piece": "\(piece)"])
        counters.banned += 1
        var discarded = 0
        for p in peers.values where p.host == host {
            discarded += picker.discardBlocks(from: p.id)
            close(p.id, .redundant)
        }
        for (id, h) in departedHosts where h == host {
            discarded += picker.discardBlocks(from: id)
            departedHosts[id] = nil
        }
        counters.wasted += Int64(discarded)
    }

    /// The address a peer had, also after it left (see `departedHosts`).
    private func host(of id: Int) -> String? { peers[id]?.host ?? departedHosts[id] }

    mutating func rememberDeparted(_ id: Int, host: String) {
        departedHosts[id] = host
        // Churn must not grow this without bound: forget peers whose blocks have all left the picker.
        if departedHosts.count > 2 * rules.maxPeers {
            departedHosts = departedHosts.filter { picker.holdsBlocks(from: $0.key) }
        }
    }
}
