import BitTorrent
import Values

/// Every decision of one torrent, as a value: which peers we connect, choke and ask for what,
/// which of their requests we serve, how arrived blocks become checked pieces, whom we ban.
///
/// Events carry the time and return the actions the shell carries out (`TorrentSession` over
/// NIO sockets and a piece worker; the fleet simulator over a modelled network). Nothing here
/// reads a clock, touches a socket or a disk: the same rules run in a process and in a
/// simulation of thousands of hosts, and tests drive them with a manual clock.
/// Design notes: docs/design/engine.md.
public struct TorrentState {
    // MARK: vocabulary

    /// The peer-wire messages the rules read and write. Block payloads stay with the shell:
    /// an arriving `piece` is known by its header; an outgoing one is a `serve` action.
    public enum Message: Sendable, Equatable {
        case choke, unchoke, interested, notInterested
        case have(piece: Int)
        case bitfield([UInt8])
        case request(BlockRequest)
        case piece(BlockRequest)
        case cancel(BlockRequest)
        case suggest(piece: Int)
        case haveAll, haveNone
        case reject(BlockRequest)
        case allowedFast(piece: Int)
    }

    /// Why the rules close a connection.
    public enum CloseReason: Sendable, Equatable {
        /// The peer broke the protocol: logged and counted.
        case violation(String)
        /// Its slot is needed by a newcomer: logged, not counted.
        case evicted(String)
        /// Nothing left to do over it (a duplicate, two seeds, a banned address, a stop).
        case redundant
    }

    public enum LogLevel: Sendable { case debug, info, warning, error }

    public enum Action: Sendable, Equatable {
        case send(Message, to: Int)
        /// Read the block and send it as a `piece`; answer with `blockSent`.
        case serve(BlockRequest, to: Int)
        /// Keep the arrived block's bytes for its piece.
        case assemble(BlockRequest)
        /// Every block of the piece is here: check its SHA-1 and store it, answer with
        /// `pieceChecked`. With `blockDigests`, return each block's digest too (blame).
        case check(piece: Int, blockDigests: Bool)
        /// Every piece is verified: make the file final, then `finalized` (or `fail`).
        case finalize
        case close(Int, CloseReason)
        /// Call `wake(now:)` after this many nanoseconds.
        case wake(after: UInt64)
        /// The download stopped for good: every waiter learns why.
        case failed(String)
        case log(LogLevel, String, [String: String])
    }

    /// A connection whose handshake named this torrent.
    public struct Arrival: Sendable {
        public var remote: PeerAddress
        public var outbound: Bool
        public var peerID: [UInt8]
        public var fast: Bool
        /// Whether the peer is in our site (`SiteMap`); nil without a site map.
        public var sameSite: Bool?
        public init(remote: PeerAddress, outbound: Bool, peerID: [UInt8], fast: Bool, sameSite: Bool? = nil) {
            self.remote = remote
            self.outbound = outbound
            self.peerID = peerID
            self.fast = fast
            self.sameSite = sameSite
        }
    }

    public enum Admission: Sendable, Equatable {
        case admitted(id: Int)
        case refused(String)
    }

    /// What the piece worker found.
    public enum PieceCheck: Sendable, Equatable {
        /// Digests come with the good copy of a piece that failed before (blame compares them).
        case matched(blockDigests: [SHA1Digest]?)
        case mismatched(blockDigests: [SHA1Digest])
        case unwritable(String)
    }

    /// Running totals, for metrics.
    public struct Counters: Sendable, Equatable {
        public var downloaded: Int64 = 0
        public var uploaded: Int64 = 0
        public var wasted: Int64 = 0
        public var verified: Int64 = 0
        public var hashFailures: Int64 = 0
        public var banned: Int64 = 0
        /// The part of `downloaded` and `uploaded` that crossed the site's uplink (a peer of
        /// another site); zero without a site map.
        public var downloadedAcrossSites: Int64 = 0
        public var uploadedAcrossSites: Int64 = 0
        public init() {}
    }

    /// Connected peers by state, for the peers gauge.
    public struct PeerCounts: Sendable, Equatable {
        public var connected = 0, seeds = 0, uploadingTo = 0, downloadingFrom = 0, interested = 0
    }

    // MARK: state

    public let layout: PieceLayout
    public private(set) var rules: TorrentRules
    /// Our own peer id: the duplicate-connection rule compares it.
    public let ownPeerID: [UInt8]
    public private(set) var picker: PiecePicker
    private var choker: Choker
    private var random: SplitMix64
    public private(set) var peers = PeerTable()
    /// Bytes of complete pieces handed to the piece worker and not yet checked.
    public private(set) var uncheckedBytes = 0
    private var uncheckedLimit: Int { max(rules.maxUncheckedBytes, 2 * layout.pieceLength) }
    /// Who sent which blocks of pieces that failed, to ban only the peer that lied.
    private var blame = BlameLedger<String>()
    /// Addresses of peers gone while the picker still holds blocks they sent (blame needs them).
    private var departedHosts: [Int: String] = [:]
    public private(set) var banned: Set<String> = []
    public let startedAt: UInt64
    /// Set once the file is final (`finalized`).
    public private(set) var completedAt: UInt64?
    public private(set) var failure: String?
    public private(set) var counters = Counters()
    /// Optional per-torrent caps below the host-wide ones (payload bytes per second).
    private var upCap: TokenBucket?
    private var downCap: TokenBucket?
    private var wakeScheduled = false
    /// Interest changed during this read batch: rechoke when it ends.
    private var rechokeDue = false
    /// Set while this torrent seeds with the distinct-first rule.
    private var distinctFirst: DistinctFirstServing?
    /// A suggested piece went out in full during `serve`: hand out the next one after it.
    private var assignmentDue = false
    /// Smoothed transfer rates of the whole torrent, updated each tick.
    public private(set) var downRate: RateMeter
    public private(set) var upRate: RateMeter
    private var lastCounted: (down: Int64, up: Int64) = (0, 0)
    /// Our site's peers and the pieces it has, for what to fetch across its uplink.
    public private(set) var site: SiteAffinity
    /// When a block last arrived from anyone: a site-bound host that receives nothing for
    /// `TorrentRules.siteFallbackAfter` fetches across sites what its site-mates own.
    private var lastArrivalAt: UInt64
    private var actions: [Action] = []

    /// `ownAddress`: the address we announce, as peers of our site see it (for `SiteAffinity`;
    /// without one, our peer id stands in).
    public init(layout: PieceLayout, have: Bitfield, rules: TorrentRules, ownPeerID: [UInt8], ownAddress: String? = nil,
                seed: UInt64, now: UInt64) {
        self.layout = layout
        self.rules = rules
        self.ownPeerID = ownPeerID
        random = SplitMix64(seed: seed)
        picker = PiecePicker(layout: layout, have: have, random: &random)
        choker = Choker(uploadSlots: rules.uploadSlots)
        startedAt = now
        lastArrivalAt = now
        site = SiteAffinity(pieceCount: layout.pieceCount, ownAddress: ownAddress ?? Hex.encode(ownPeerID))
        downRate = RateMeter(now: now)
        upRate = RateMeter(now: now)
        if have.isComplete {
            completedAt = now
            if rules.distinctFirstSeeding {
                distinctFirst = DistinctFirstServing(layout: layout, random: &random)
                // A distinct-first seed shares its uplink by handing out pieces
                // (`assignPieces`), a few at a time, not by how many connections TCP splits
                // it over: each unchoked peer costs nothing but gets its share of fresh
                // pieces, while held to the upload slots the origin fed only its first peers.
                choker.uploadSlots = .max
            }
        }
    }

    public var isComplete: Bool { completedAt != nil }
    public var have: Bitfield { picker.have }
    /// True while this torrent seeds by the distinct-first rule (the shell keeps such a
    /// seed's socket buffers shallow, so requests wait where the rule decides).
    public var isDistinctFirstSeed: Bool { distinctFirst != nil }
    public var verifiedBytes: Int64 {
        var done: Int64 = 0
        for i in picker.have.indices { done += Int64(layout.length(ofPiece: i)) }
        return done
    }
    public var left: Int64 { layout.totalLength - verifiedBytes }
    /// A slew limit switched on or off while the torrent runs: haves go to holders too, or not
    /// (`TorrentRules.announceToHolders`).
    public mutating func announceToHolders(_ on: Bool) { rules.announceToHolders = on }

    /// This host's share of what its connected peers still lack, in bytes: the pieces missing
    /// at each of them, divided among them and this host (each may serve them). The upload
    /// ramps down on it under a slew limit (`SlewLimiter.uploadDescent`). Exact when the peers
    /// announce to holders too (`TorrentRules.announceToHolders`); otherwise a piece a peer
    /// verified after us counts as missing.
    public var uploadShareLeft: Int64 {
        guard layout.pieceCount > 0 else { return 0 }
        var missing: Int64 = 0
        peers.forEach { missing += Int64(layout.pieceCount - $0.bitfield.setCount) }
        return missing * layout.totalLength / Int64(layout.pieceCount) / Int64(peers.count + 1)
    }
    public var progress: Double { layout.totalLength > 0 ? Double(verifiedBytes) / Double(layout.totalLength) : 1 }
    /// Addresses of connected peers that we know they listen on (no need to dial them).
    public var listenAddresses: Set<PeerAddress> { Set(peers.compactMap(\.listenAddress)) }
    public func isBanned(_ host: String) -> Bool { banned.contains(host) }

    /// How many more peers to dial now, with `dialling` dials under way: up to half of
    /// `maxPeers`, the other half left to peers that dial us. Dialling up to `maxPeers` let
    /// the first hosts of a rollout fill each other's slots, and the hosts that started a
    /// little later, refused by them, ran with a third of the connections and finished last
    /// (starling-sim, 100 hosts: p90 at 1.8 x T_min against 1.5 x).
    public func dialBudget(dialling: Int) -> Int { max(0, (rules.maxPeers + 1) / 2 - peers.count - dialling) }

    public var peerCounts: PeerCounts {
        var c = PeerCounts()
        peers.forEach { p in
            c.connected += 1
            if p.isSeed { c.seeds += 1 }
            if !p.amChoking { c.uploadingTo += 1 }
            if !p.peerChoking && p.amInterested { c.downloadingFrom += 1 }
            if p.peerInterested { c.interested += 1 }
        }
        return c
    }

    private mutating func takeActions() -> [Action] {
        var out: [Action] = []
        swap(&out, &actions)
        return out
    }

    private mutating func send(_ m: Message, to id: Int) { actions.append(.send(m, to: id)) }
    private mutating func close(_ id: Int, _ reason: CloseReason) { actions.append(.close(id, reason)) }
    private mutating func log(_ level: LogLevel, _ text: String, _ metadata: [String: String] = [:]) {
        actions.append(.log(level, text, metadata))
    }

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
        peers[id]!.bitfield = bits
        picker.peerHas(bits)
        if site.isMember(id) { refreshInterestAcrossSites() }
        holdingsChanged(id, now: now)
    }

    private mutating func holdingsChanged(_ id: Int, now: UInt64) {
        // Two seeds have nothing to trade: free the connection slot.
        if peers[id]!.isSeed && picker.isComplete { return close(id, .redundant) }
        updateInterest(id)
        request(from: id, now: now)
    }

    private mutating func updateInterest(_ id: Int) {
        // Across sites only what the site lacks is of interest: the rest comes from site-mates.
        let want = peers[id]!.acrossSites ? picker.wantsAny(of: site.acrossSites(peers[id]!.bitfield, anyOwner: true))
            : picker.wantsAny(of: peers[id]!.bitfield)
        guard want != peers[id]!.amInterested else { return }
        peers[id]!.amInterested = want
        send(want ? .interested : .notInterested, to: id)
    }

    /// The site gained or lost a piece: interest in peers of other sites follows.
    private mutating func refreshInterestAcrossSites() {
        for id in peers.ids(where: { $0.acrossSites }) { updateInterest(id) }
    }

    private mutating func dropOutstanding(of id: Int) {
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

    // MARK: downloading

    /// Fills the peer's request pipeline. Its depth follows the measured rate from the peer
    /// (`TorrentRules.requestHorizon` of data): deep enough that the link never idles
    /// waiting for the next request, shallow enough that little waits in queues on the way.
    /// `unassigned` (on the tick only): from a seed that assigns pieces, also ask for what it
    /// did not assign when no other peer has anything for us.
    private mutating func request(from id: Int, now: UInt64, unassigned: Bool = false) {
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
            has = site.acrossSites(has, anyOwner: now - lastArrivalAt > rules.siteFallbackAfter)
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

    private mutating func requestFromAll(now: UInt64) {
        for id in Array(peers.keys) { request(from: id, now: now) }
    }

    private mutating func blockArrived(_ req: BlockRequest, from id: Int, now: UInt64) {
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
            picker.pieceVerified(index)
            counters.verified += 1
            for id in Array(peers.keys) {
                // A peer that has the piece gains nothing from hearing we have it too, except a
                // seed (a distinct-first seed steers its suggestions by what we have) and, under
                // a slew limit, any peer (`TorrentRules.announceToHolders`).
                if rules.announceToHolders || !peers[id]!.bitfield[index] || peers[id]!.isSeed {
                    send(.have(piece: index), to: id)
                }
                if peers[id]!.amInterested { updateInterest(id) }
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

    private mutating func rememberDeparted(_ id: Int, host: String) {
        departedHosts[id] = host
        // Churn must not grow this without bound: forget peers whose blocks have all left the picker.
        if departedHosts.count > 2 * rules.maxPeers {
            departedHosts = departedHosts.filter { picker.holdsBlocks(from: $0.key) }
        }
    }

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
    private mutating func capAllows(down: Bool, now: UInt64) -> Bool {
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
        if peers.contains(id) { peers[id]!.uploadsInFlight -= 1 }
        guard sent else {
            distinctFirst?.withdraw(req)
            return takeActions()
        }
        counters.uploaded += Int64(req.length)
        guard peers.contains(id) else { return [] }
        if peers[id]!.acrossSites { counters.uploadedAcrossSites += Int64(req.length) }
        peers[id]!.uploaded.add(req.length, now: now)
        peers[id]!.lastUsefulAt = now
        serve(id, now: now)
        return takeActions()
    }

    /// No other peer has an upload waiting: the uplink has room for a duplicate.
    private func noUploadWaiting(besides id: Int) -> Bool {
        peers.allSatisfy { $0.id == id || $0.incoming.isEmpty }
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
    private mutating func serve(_ id: Int, now: UInt64) {
        let limit = TorrentRules.inUnits(rules.uploadsInFlightPerPeer, of: layout.blockLength)
        while peers.contains(id), peers[id]!.uploadsInFlight < limit, peers[id]!.writable, !peers[id]!.incoming.isEmpty {
            let req = peers[id]!.incoming[0]
            // Only a peer that understands rejects can be pointed elsewhere.
            if peers[id]!.fast, distinctFirst != nil {
                let idle = noUploadWaiting(besides: id), assignedOnly = Self.isSuggestionTarget(peers[id]!)
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
            if peers[id]!.suggestedByUs.contains(req.piece), distinctFirst!.isSent(piece: req.piece) {
                // Its last block is on the way: the next piece can start.
                peers[id]!.suggestedByUs.remove(req.piece)
                assignmentDue = true
            }
            peers[id]!.uploadsInFlight += 1
            actions.append(.serve(req, to: id))
        }
        if assignmentDue {
            assignmentDue = false
            assignPieces(now: now)
        }
    }

    // MARK: suggestions (distinct-first seeding)

    /// Pieces a distinct-first seed has assigned at once: about 250 ms of its measured upload,
    /// at least eight and at least 2 MiB. Enough to keep the uplink busy while assigned peers
    /// ask for their next piece; few, so each piece reaches its peer in a burst and can be
    /// passed on soon (docs/design/engine.md).
    private var seedPiecesInFlight: Int {
        max(8, (2 << 20) / layout.pieceLength, Int(upRate.rate / 4) / layout.pieceLength)
    }

    /// Hands out pieces of a distinct-first seed: while fewer than `seedPiecesInFlight` are
    /// being sent, the peer with the fewest pieces on the way (then the one that has received
    /// least from us so far) is told, by a BEP 6 suggest, to fetch a piece it lacks that has
    /// gone out least often. Every peer thus gets an equal share of the pieces only this seed
    /// has and forwards them with its own uplink; left to TCP, one connection can take most
    /// of the seed's uplink and become the only source of half the file.
    private mutating func assignPieces(now: UInt64) {
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

    // MARK: periodic work

    /// Chooses whom to upload to: on the rechoke timer (every 10 s) and when interest changes.
    public mutating func rechoke(now: UInt64) -> [Action] {
        chooseUnchoked(now: now)
        return takeActions()
    }

    private mutating func chooseUnchoked(now: UInt64) {
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
