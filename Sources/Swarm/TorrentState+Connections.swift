import BitTorrent

extension TorrentState {
    // MARK: connection life

    /// Admits a connection whose handshake named this torrent, or refuses it. Admitted, the
    /// peer is told what we have; a duplicate or an idle peer may be closed to make room.
    public mutating func admit(_ arrival: Arrival, now: UInt64) -> (Admission, [Action]) {
        let host = arrival.remote.host
        guard !banned.contains(host) else { return (.refused("banned"), []) }
        let fromSameAddress = peers.count { $0.host == host }
        guard fromSameAddress < rules.maxConnectionsPerAddress else {
            return (.refused("too many connections from one address (\(fromSameAddress))"), [])
        }
        if peers.count >= rules.maxPeers + rules.inboundSlack {
            let policy = ConnectionTurnover(idleAfter: rules.turnoverIdle)
            let candidates = peers.map {
                ConnectionTurnover.Candidate(id: $0.id, connectedAt: $0.connectedAt, lastUsefulAt: $0.lastUsefulAt,
                                             interested: $0.peerInterested || $0.amInterested)
            }
            guard let victim = policy.victim(among: candidates, now: now) else { return (.refused("every slot is busy"), []) }
            close(victim, .evicted("idle for \(rules.turnoverIdle / 1_000_000_000) s while another peer needed the slot"))
        }
        var knownListenAddress: PeerAddress?
        if let existing = peers.first(where: { $0.peerID == arrival.peerID }) {
            // We dialled its listen address: now we know it, and stop dialling it again.
            if arrival.outbound, existing.listenAddress == nil { peers[existing.id]!.listenAddress = arrival.remote }
            // An established connection stays: a peer we only know by its listen address (an
            // inbound peer, re-learned from the tracker) is dialled again, and replacing the
            // link would throw away its requests and the seed's assignments mid-transfer.
            // Both ends see the same link as established, so both drop the new one.
            if now - existing.connectedAt > rules.establishedAfter { return (.refused("already connected"), takeActions()) }
            // Both ends dialled each other at once: keep the connection opened by the smaller
            // peer id, a rule both sides apply the same way.
            let ours = ownPeerID, initiator = { (outbound: Bool) in outbound ? ours : arrival.peerID }
            guard initiator(arrival.outbound).lexicographicallyPrecedes(initiator(existing.outbound)) else {
                return (.refused("already connected"), takeActions())
            }
            knownListenAddress = existing.listenAddress
            close(existing.id, .redundant)
        }
        var peer = PeerState(id: peers.nextID, arrival: arrival, pieceCount: layout.pieceCount, now: now)
        if peer.listenAddress == nil { peer.listenAddress = knownListenAddress }
        peers[peer.id] = peer
        holders.joined(slot: PeerTable.slot(of: peer.id), acrossSites: peer.acrossSites)
        if arrival.sameSite == true { site.memberJoined(peer.id, host: arrival.remote.host) }
        // Announce what we have: the fast extension's short forms when both sides support it.
        if peer.fast && picker.have.isComplete {
            send(.haveAll, to: peer.id)
        } else if peer.fast && picker.have.isEmpty {
            send(.haveNone, to: peer.id)
        } else if !picker.have.isEmpty {
            send(.bitfield(picker.have.bytes), to: peer.id)
        }
        log(.debug, "peer connected", ["peer": "\(arrival.remote)", "outbound": "\(arrival.outbound)"])
        return (.admitted(id: peer.id), takeActions())
    }

    /// Addresses of peers in our site that the tracker or gossip handed out: they take part in
    /// who of the site fetches which piece across its uplink, connected or not.
    public mutating func siteMembersKnown(_ hosts: [String]) {
        for h in hosts { site.learn(h) }
    }

    /// The connection closed, whoever closed it.
    public mutating func disconnected(_ id: Int, now: UInt64) -> [Action] {
        guard let peer = peers.removeValue(forKey: id) else { return [] }
        distinctFirst?.release(peer: id)
        for req in peer.outstanding { picker.requestDropped(req, by: id) }
        picker.peerLeft(id)
        picker.peerGone(had: peer.bitfield)
        holders.peerLost(peer.bitfield, slot: PeerTable.slot(of: id))
        if site.isMember(id) {
            site.memberLeft(id, had: peer.bitfield)
            refreshInterestAcrossSites()
        }
        if picker.holdsBlocks(from: id) { rememberDeparted(id, host: peer.host) }
        log(.debug, "peer disconnected", ["peer": peer.host, "uploaded": "\(peer.uploaded.total)", "downloaded": "\(peer.downloaded.total)"])
        if !peer.amChoking { chooseUnchoked(now: now) }
        requestFromAll(now: now)
        return takeActions()
    }

    // MARK: messages

    public mutating func received(_ message: Message, from id: Int, now: UInt64) -> [Action] {
        guard peers.contains(id) else { return [] }
        handle(message, from: id, now: now)
        return takeActions()
    }

    private mutating func handle(_ message: Message, from id: Int, now: UInt64) {
        let fast = peers[id]!.fast
        switch message {
        case .suggest(let piece):
            guard piece >= 0, piece < layout.pieceCount else { return }
            peers[id]!.suggests = true
            if peers[id]!.assignsPieces, site.isMember(id) {
                site.origin(id, had: peers[id]!.bitfield)
                refreshInterestAcrossSites()
            }
            // A piece this seed refused earlier is now handed to us: the refusal no longer holds.
            peers[id]!.refused[piece] = nil
            if !picker.have[piece], !peers[id]!.suggestedToUs.contains(piece) {
                if peers[id]!.suggestedToUs.count >= rules.maxSuggestionsKept { peers[id]!.suggestedToUs.removeFirst() }
                peers[id]!.suggestedToUs.append(piece)
            }
            request(from: id, now: now)
        case .choke:
            peers[id]!.peerChoking = true
            // Without the fast extension a choke discards our requests: ask elsewhere. With it
            // (BEP 6) the peer rejects each request it will not serve and the blocks it already
            // sent still arrive, so the requests stand until a block or a reject answers them
            // (asking elsewhere at once fetched those blocks twice).
            guard !fast else { return }
            dropOutstanding(of: id)
            requestFromAll(now: now)
        case .unchoke:
            peers[id]!.peerChoking = false
            request(from: id, now: now)
        case .interested:
            peers[id]!.peerInterested = true
            rechokeDue = true
        case .notInterested:
            peers[id]!.peerInterested = false
            rechokeDue = true
        case .have(let piece):
            guard piece >= 0, piece < layout.pieceCount else { return close(id, .violation("have for piece \(piece) out of range")) }
            if !peers[id]!.bitfield[piece] {
                peers[id]!.bitfield.set(piece)
                picker.peerHas(piece: piece)
                holders.peerHas(piece: piece, slot: PeerTable.slot(of: id), weLack: !picker.have[piece])
                if site.isMember(id) {
                    let fresh = !site.inSite[piece]
                    site.memberHas(id, piece: piece)
                    if fresh && !picker.have[piece] { refreshInterestAcrossSites() }
                }
            }
            if distinctFirst != nil {
                distinctFirst!.peerHas(piece: piece, peer: id)
                if peers[id]!.suggestedByUs.remove(piece) != nil { assignPieces(now: now) }
            }
            // A piece we have changes nothing for us unless the peer just became a seed.
            if picker.have[piece] && !peers[id]!.isSeed { return }
            holdingsChanged(id, now: now)
        case .bitfield(let bytes):
            // aria2 follows its have-none with a bitfield; a later bitfield simply replaces the holdings.
            guard let bits = Bitfield(bytes: bytes, count: layout.pieceCount) else {
                return close(id, .violation("bitfield of \(bytes.count) bytes for \(layout.pieceCount) pieces, or spare bits set"))
            }
            setBitfield(id, bits, now: now)
        case .haveAll:
            guard fast else { return close(id, .violation("have-all without the fast extension")) }
            setBitfield(id, Bitfield(count: layout.pieceCount, allSet: true), now: now)
        case .haveNone:
            guard fast else { return close(id, .violation("have-none without the fast extension")) }
            setBitfield(id, Bitfield(count: layout.pieceCount), now: now)
        case .request(let req):
            guard layout.isValidRequest(piece: req.piece, begin: req.begin, length: req.length) else {
                return close(id, .violation("invalid request \(req)"))
            }
            let servable = picker.have[req.piece] && (!peers[id]!.amChoking || peers[id]!.allowedFast.contains(req.piece))
                && peers[id]!.incoming.count < TorrentRules.inUnits(rules.maxQueuedRequestsPerPeer, of: layout.blockLength)
            guard servable else {
                if fast { send(.reject(req), to: id) }
                return
            }
            peers[id]!.incoming.append(req)
            distinctFirst?.renew(piece: req.piece, peer: id, now: now)
            serve(id, now: now)
        case .cancel(let req):
            if let i = peers[id]!.incoming.firstIndex(of: req) {
                peers[id]!.incoming.remove(at: i)
                if fast { send(.reject(req), to: id) }
            }
        case .reject(let req):
            guard fast else { return close(id, .violation("reject without the fast extension")) }
            if peers[id]!.outstanding.remove(req) != nil {
                picker.requestDropped(req, by: id)
                // A seed refusing a block means another peer has it: look there for a while.
                if peers[id]!.isSeed { peers[id]!.refused[req.piece] = now }
                request(from: id, now: now)
            }
        case .allowedFast(let piece):
            guard piece >= 0, piece < layout.pieceCount else { return }
            peers[id]!.allowedFast.insert(piece)
        case .piece(let req):
            blockArrived(req, from: id, now: now)
        }
    }

    private mutating func setBitfield(_ id: Int, _ bits: Bitfield, now: UInt64) {
        picker.peerGone(had: peers[id]!.bitfield)
        if site.isMember(id) {
            site.memberLost(id, peers[id]!.bitfield)
            site.memberHas(id, bits)
        }
        holders.peerLost(peers[id]!.bitfield, slot: PeerTable.slot(of: id))
        peers[id]!.bitfield = bits
        picker.peerHas(bits)
        holders.peerHas(bits, slot: PeerTable.slot(of: id), have: picker.have)
        if site.isMember(id) { refreshInterestAcrossSites() }
        holdingsChanged(id, now: now)
    }

    private mutating func holdingsChanged(_ id: Int, now: UInt64) {
        // Two seeds have nothing to trade: free the connection slot.
        if peers[id]!.isSeed && picker.isComplete { return close(id, .redundant) }
        updateInterest(id)
        request(from: id, now: now)
    }

    mutating func updateInterest(_ id: Int) {
        // Across sites only what the site lacks is of interest: the rest comes from site-mates.
        let want = peers[id]!.acrossSites ? picker.wantsAny(of: site.acrossSites(peers[id]!.bitfield, anyOwner: true))
            : holders.wanted(slot: PeerTable.slot(of: id)) > 0
        assert(peers[id]!.acrossSites || want == picker.wantsAny(of: peers[id]!.bitfield), "holders out of step with the peer's bitfield")
        guard want != peers[id]!.amInterested else { return }
        peers[id]!.amInterested = want
        send(want ? .interested : .notInterested, to: id)
    }

    /// The site gained or lost a piece: interest in peers of other sites follows.
    private mutating func refreshInterestAcrossSites() {
        for id in peers.ids(where: { $0.acrossSites }) { updateInterest(id) }
    }

    mutating func dropOutstanding(of id: Int) {
        for req in peers[id]!.outstanding { picker.requestDropped(req, by: id) }
        peers[id]!.outstanding.removeAll()
    }

    /// End of a batch of reads from `id`: rechoke if interest changed, refill its pipeline.
    public mutating func readBatchEnded(_ id: Int, now: UInt64) -> [Action] {
        if rechokeDue {
            // Once per read batch, not per message: a peer flipping its interest a million
            // times costs a million flag writes, not a million rechokes and choke messages.
            rechokeDue = false
            chooseUnchoked(now: now)
        }
        if peers[id]?.needsRequests == true {
            peers[id]!.needsRequests = false
            request(from: id, now: now)
        }
        return takeActions()
    }
}
