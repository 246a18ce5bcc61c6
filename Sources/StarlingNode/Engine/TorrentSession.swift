import BitTorrent
import Logging
import NIOCore
import NIOPosix
import Storage
import Swarm

/// One torrent being fetched or served: the piece picker, the choker and the piece store
/// driven by what peers say. Everything runs on the engine's single event loop, so the
/// state needs no locks; protocol decisions live in the pure `Swarm` types.
public final class TorrentSession: @unchecked Sendable {
    public let metainfo: Metainfo
    public var infoHash: InfoHash { metainfo.infoHash }
    let store: PieceStore
    let loop: EventLoop
    private let pieceWorker: NIOThreadPool
    let logger: Logger
    let config: EngineConfig
    let metrics: TorrentMetrics

    private(set) var picker: PiecePicker
    private var choker: Choker
    private var rng = SystemRandomNumberGenerator()
    private(set) var peers: [Int: PeerLink] = [:]
    private var pieceBuffers: [Int: [UInt8]] = [:]
    /// Bytes of complete pieces handed to the piece worker and not yet checked.
    private(set) var uncheckedBytes = 0
    private var uncheckedLimit: Int { max(config.maxUncheckedBytes, 2 * metainfo.pieceLength) }
    /// Who sent which blocks of pieces that failed, to ban only the peer that lied.
    private var blame = BlameLedger<String>()
    /// Addresses of links gone while the picker still holds blocks they sent (blame needs them).
    private var departedHosts: [Int: String] = [:]
    private(set) var banned: Set<String> = []
    let startedAt = NIODeadline.now()
    private(set) var completedAt: NIODeadline?
    private let completion: EventLoopPromise<Void>
    /// Fulfilled when every piece is verified and the file is in place; failed on a fatal storage error.
    public var completed: EventLoopFuture<Void> { completion.futureResult }
    private(set) var downloadedBytes: Int64 = 0
    private(set) var uploadedBytes: Int64 = 0
    private(set) var wastedBytes: Int64 = 0
    private(set) var failure: String?
    /// Optional per-torrent caps below the host-wide ones (payload bytes per second).
    private var upCap: TokenBucket?
    private var downCap: TokenBucket?
    private var capRetryScheduled = false

    /// Interest changed during this read batch: rechoke when it ends.
    private var rechokeDue = false

    /// Set while this session seeds with the distinct-first rule.
    private var distinctFirst: DistinctFirstServing?
    /// A suggested piece went out in full during `serve`: hand out the next one after it.
    private var assignmentDue = false

    init(metainfo: Metainfo, store: PieceStore, have: Bitfield, loop: EventLoop, pieceWorker: NIOThreadPool,
         config: EngineConfig, logger: Logger) {
        self.metainfo = metainfo
        self.store = store
        self.loop = loop
        self.pieceWorker = pieceWorker
        self.config = config
        var log = logger
        log[metadataKey: "torrent"] = "\(metainfo.infoHash.shortHex)"
        self.logger = log
        picker = PiecePicker(layout: metainfo.layout, have: have, random: &rng)
        choker = Choker(uploadSlots: config.uploadSlots)
        completion = loop.makePromise()
        metrics = TorrentMetrics(label: metainfo.infoHash.shortHex, name: metainfo.name, sizeBytes: metainfo.totalLength)
        metrics.update(progress: progress, verified: have.setCount)
        if have.isComplete {
            completedAt = .now()
            completion.succeed(())
            if config.distinctFirstSeeding {
                distinctFirst = DistinctFirstServing(layout: metainfo.layout, random: &rng)
                // A distinct-first seed unchokes every interested peer: it shares its uplink by
                // handing out pieces (`assignPieces`), a few at a time, not by how many
                // connections TCP splits it over, so each unchoked peer costs nothing but gets
                // its share of fresh pieces. Held to the upload slots, the origin of a 40-host
                // swarm fed only its first 16 peers; they traded among themselves, and the
                // other 23 ran at 8-15 of 20 Mbit/s for the first 30 s.
                choker.uploadSlots = .max
            }
        }
    }

    public var isComplete: Bool { picker.isComplete && store.isFinal }
    public var have: Bitfield { picker.have }
    public var progress: Double {
        let total = metainfo.totalLength
        guard total > 0 else { return 1 }
        var done: Int64 = 0
        for i in picker.have.indices { done += Int64(metainfo.layout.length(ofPiece: i)) }
        return Double(done) / Double(total)
    }
    public var left: Int64 {
        var done: Int64 = 0
        for i in picker.have.indices { done += Int64(metainfo.layout.length(ofPiece: i)) }
        return metainfo.totalLength - done
    }
    var connectedPeers: Int { peers.count }

    func isBanned(_ host: String) -> Bool { banned.contains(host) }

    /// The connection that gives up its slot to a newcomer (`ConnectionTurnover`), if any is idle.
    func turnoverVictim() -> PeerLink? {
        let policy = ConnectionTurnover(idleAfter: UInt64(config.turnoverIdle.nanoseconds))
        let candidates = peers.values.map {
            ConnectionTurnover.Candidate(id: $0.id, connectedAt: UInt64($0.connectedAt.uptimeNanoseconds), lastUsefulAt: $0.lastUsefulAt,
                                         interested: $0.peerInterested || $0.amInterested)
        }
        return policy.victim(among: candidates, now: nowNanos).flatMap { peers[$0] }
    }

    // MARK: connection life

    func attach(_ link: PeerLink) {
        loop.preconditionInEventLoop()
        peers[link.id] = link
        link.lastUsefulAt = nowNanos
        if distinctFirst != nil, config.unsentLowWater > 0 {
            // Requests then wait in our queue until the connection can take them, which is
            // where a distinct-first seed decides what to send (see `serve`).
            _ = link.channel.setOption(PeerEngine.unsentLowWaterOption, value: SocketOptionValue(clamping: config.unsentLowWater))
        }
        metrics.peersChanged(peers.values)
        // Announce what we have: the fast extension's short forms when both sides support it.
        if link.fast && picker.have.isComplete {
            link.send(.haveAll)
        } else if link.fast && picker.have.isEmpty {
            link.send(.haveNone)
        } else if !picker.have.isEmpty {
            link.send(.bitfield(picker.have.bytes))
        }
        logger.debug("peer connected", metadata: ["peer": "\(link.remote)", "outbound": "\(link.outbound)"])
    }

    func detach(_ link: PeerLink) {
        loop.preconditionInEventLoop()
        guard peers.removeValue(forKey: link.id) != nil else { return }
        if let reason = link.closeReason {
            logger.info("closing connection", metadata: ["peer": "\(link.remote)", "reason": "\(reason)"])
            metrics.protocolErrors.increment()
        }
        link.incoming.removeAll()
        distinctFirst?.release(peer: link.id)
        link.suggestedByUs.removeAll()
        for req in link.outstanding { picker.requestDropped(req, by: link.id) }
        link.outstanding.removeAll()
        picker.peerGone(had: link.bitfield)
        if picker.holdsBlocks(from: link.id) { rememberDeparted(link) }
        metrics.peersChanged(peers.values)
        logger.debug("peer disconnected", metadata: [
            "peer": "\(link.remote)", "uploaded": "\(link.uploaded.total)", "downloaded": "\(link.downloaded.total)"])
        if !link.amChoking { rechoke() }
        requestFromAll()
    }

    /// Closes a link for a protocol violation, with the reason in the log and the metrics.
    func drop(_ link: PeerLink, reason: String) {
        logger.info("closing connection", metadata: ["peer": "\(link.remote)", "reason": "\(reason)"])
        metrics.protocolErrors.increment()
        link.channel.close(promise: nil)
    }

    // MARK: messages

    func handle(_ message: PeerMessage, from link: PeerLink) {
        loop.preconditionInEventLoop()
        guard peers[link.id] != nil else { return }
        switch message {
        case .keepAlive, .port, .extended, .unknown:
            break
        case .suggest(let piece):
            guard piece >= 0, piece < metainfo.pieceCount else { return }
            link.suggests = true
            // A piece this seed refused earlier is now handed to us: the refusal no longer holds.
            link.refused[piece] = nil
            if !picker.have[piece], !link.suggestedToUs.contains(piece) {
                if link.suggestedToUs.count >= Self.maxSuggestionsKept { link.suggestedToUs.removeFirst() }
                link.suggestedToUs.append(piece)
            }
            request(from: link)
        case .choke:
            link.peerChoking = true
            // Without the fast extension a choke discards our requests: ask elsewhere. With it
            // (BEP 6) the peer rejects each request it will not serve and the blocks it already
            // sent still arrive, so the requests stand until a block or a reject answers them.
            // Asking elsewhere at once fetched those blocks twice: about 2 % of each download
            // when peers of a 16-host lab swarm choked one another as their interest came and went.
            guard !link.fast else { return }
            for req in link.outstanding { picker.requestDropped(req, by: link.id) }
            link.outstanding.removeAll()
            requestFromAll()
        case .unchoke:
            link.peerChoking = false
            request(from: link)
        case .interested:
            link.peerInterested = true
            rechokeDue = true
        case .notInterested:
            link.peerInterested = false
            rechokeDue = true
        case .have(let piece):
            guard piece >= 0, piece < metainfo.pieceCount else { return drop(link, reason: "have for piece \(piece) out of range") }
            if !link.bitfield[piece] {
                link.bitfield.set(piece)
                picker.peerHas(piece: piece)
            }
            if distinctFirst != nil {
                distinctFirst!.peerHas(piece: piece, peer: link.id)
                if link.suggestedByUs.remove(piece) != nil { assignPieces() }
            }
            // A piece we have changes nothing for us unless the peer just became a seed.
            if picker.have[piece] && !link.isSeed { return }
            peerHoldingsChanged(link)
        case .bitfield(let bytes):
            // aria2 follows its have-none with a bitfield; a later bitfield simply replaces the holdings.
            guard let bits = Bitfield(bytes: bytes, count: metainfo.pieceCount) else {
                return drop(link, reason: "bitfield of \(bytes.count) bytes for \(metainfo.pieceCount) pieces, or spare bits set")
            }
            setBitfield(link, bits)
        case .haveAll:
            guard link.fast else { return drop(link, reason: "have-all without the fast extension") }
            setBitfield(link, Bitfield(count: metainfo.pieceCount, allSet: true))
        case .haveNone:
            guard link.fast else { return drop(link, reason: "have-none without the fast extension") }
            setBitfield(link, Bitfield(count: metainfo.pieceCount))
        case .request(let req):
            guard metainfo.layout.isValidRequest(piece: req.piece, begin: req.begin, length: req.length) else {
                return drop(link, reason: "invalid request \(req)")
            }
            guard picker.have[req.piece], !link.amChoking || link.allowedFast.contains(req.piece) else {
                if link.fast { link.send(.reject(req)) }
                return
            }
            guard link.incoming.count < config.maxQueuedRequestsPerPeer else {
                if link.fast { link.send(.reject(req)) }
                return
            }
            link.incoming.append(req)
            distinctFirst?.renew(piece: req.piece, peer: link.id, now: nowNanos)
            serve(link)
        case .cancel(let req):
            if let i = link.incoming.firstIndex(of: req) {
                link.incoming.remove(at: i)
                if link.fast { link.send(.reject(req)) }
            }
        case .reject(let req):
            guard link.fast else { return drop(link, reason: "reject without the fast extension") }
            if link.outstanding.remove(req) != nil {
                picker.requestDropped(req, by: link.id)
                // A seed refusing a block means another peer has it: look there for a while.
                if link.isSeed { link.refused[req.piece] = .now() }
                request(from: link)
            }
        case .allowedFast(let piece):
            guard piece >= 0, piece < metainfo.pieceCount else { return }
            link.allowedFast.insert(piece)
        case .piece(let index, let begin, let data):
            received(BlockRequest(piece: index, begin: begin, length: data.readableBytes), data: data, from: link)
        }
    }

    private func setBitfield(_ link: PeerLink, _ bits: Bitfield) {
        picker.peerGone(had: link.bitfield)
        link.bitfield = bits
        picker.peerHas(bits)
        peerHoldingsChanged(link)
    }

    private func peerHoldingsChanged(_ link: PeerLink) {
        // Two seeds have nothing to trade: free the connection slot.
        if link.isSeed && picker.isComplete {
            link.channel.close(promise: nil)
            return
        }
        updateInterest(link)
        request(from: link)
    }

    private func updateInterest(_ link: PeerLink) {
        let want = picker.wantsAny(of: link.bitfield)
        if want != link.amInterested {
            link.amInterested = want
            link.send(want ? .interested : .notInterested)
        }
    }

    // MARK: downloading

    /// Fills the peer's request pipeline. Its depth follows the measured rate from the peer
    /// (`EngineConfig.requestHorizon` of data): deep enough that the link never idles
    /// waiting for the next request, shallow enough that little waits in queues on the way.
    func request(from link: PeerLink) {
        guard link.amInterested, !picker.isComplete, failure == nil else { return }
        // The piece worker is behind: ask again when it catches up (`pieceChecked`).
        guard uncheckedBytes < uncheckedLimit else { return }
        // Under a per-torrent download cap, new requests wait while its bucket is in debt.
        if downCap != nil, !capAllows(&downCap) { return }
        let canAskAll = !link.peerChoking
        guard canAskAll || !link.allowedFast.isEmpty else { return }
        link.downloaded.roll()
        // A seed that assigns pieces decides how much we fetch from it: take all it hands out,
        // or its uplink idles while our earlier blocks still sit in a queue on the way.
        let depth = link.assignsPieces ? config.maxPipeline : config.pipelineDepth(forRate: link.downloaded.rate)
        let room = depth - link.outstanding.count
        guard room > 0 else { return }
        var has = link.bitfield
        if !canAskAll {
            has = Bitfield(count: metainfo.pieceCount)
            for p in link.allowedFast where link.bitfield[p] { has.set(p) }
        }
        if !link.refused.isEmpty {
            let now = NIODeadline.now()
            for (p, at) in link.refused {
                if now - at > config.refusalMemory { link.refused[p] = nil } else { has.clear(p) }
            }
        }
        if link.suggests {
            // Kept until we have the piece: blocks rejected or dropped later are asked again.
            link.suggestedToUs.removeAll { picker.have[$0] }
        }
        let reqs = picker.pick(for: link.id, peerHas: has, count: room, outstanding: link.outstanding,
                               suggested: link.suggestedToUs, onlySuggested: link.assignsPieces)
        guard !reqs.isEmpty else { return }
        for r in reqs {
            link.outstanding.insert(r)
            link.send(.request(r), flush: false)
        }
        link.channel.flush()
    }

    func requestFromAll() {
        for link in peers.values { request(from: link) }
    }

    private func received(_ req: BlockRequest, data: ByteBuffer, from link: PeerLink) {
        // A banned peer's connection is closing: nothing more of it enters a piece.
        guard !banned.contains(link.remote.host) else { return }
        link.outstanding.remove(req)
        link.lastBlockAt = .now()
        link.lastUsefulAt = nowNanos
        link.snubbed = false
        link.downloaded.add(req.length)
        downloadedBytes += Int64(req.length)
        if downCap != nil { _ = downCap!.takeWhole(req.length, now: nowNanos) }
        metrics.downloaded.increment(by: Int64(req.length))
        let outcome = picker.blockReceived(req, from: link.id)
        guard outcome.accepted else {
            wastedBytes += Int64(req.length)
            metrics.wasted.increment(by: Int64(req.length))
            link.needsRequests = true
            return
        }
        for other in outcome.cancelFrom {
            if let o = peers[other], o.outstanding.remove(req) != nil { o.send(.cancel(req)) }
        }
        let pieceLength = metainfo.layout.length(ofPiece: req.piece)
        if pieceBuffers[req.piece] == nil {
            // Every byte is written by a block before the piece is hashed: no need to zero it.
            pieceBuffers[req.piece] = [UInt8](unsafeUninitializedCapacity: pieceLength) { _, n in n = pieceLength }
        }
        pieceBuffers[req.piece]!.withUnsafeMutableBytes { dst in
            data.withUnsafeReadableBytes { src in
                UnsafeMutableRawBufferPointer(rebasing: dst[req.begin..<(req.begin + req.length)]).copyMemory(from: src)
            }
        }
        if outcome.pieceComplete { pieceArrived(req.piece) }
        // Refill the pipeline once per read batch (channelReadComplete), not once per block:
        // one write syscall for many requests.
        link.needsRequests = true
    }

    /// End of a batch of reads on `link`: send the requests it made room for.
    func readBatchEnded(_ link: PeerLink) {
        if rechokeDue {
            // Once per read batch, not per message: a peer flipping its interest a million
            // times costs a million flag writes, not a million rechokes and choke messages.
            rechokeDue = false
            rechoke()
        }
        guard link.needsRequests, peers[link.id] != nil else { return }
        link.needsRequests = false
        request(from: link)
    }

    /// Every block of a piece is here: the piece worker checks its SHA-1 and writes it, then
    /// `pieceChecked` takes over on the loop. Until then the picker holds the piece as fully
    /// received, so nothing of it is asked again and nothing of it is served.
    private func pieceArrived(_ index: Int) {
        guard let data = pieceBuffers.removeValue(forKey: index) else { return }
        uncheckedBytes += data.count
        let store = self.store
        let suspect = blame.isSuspect(index)
        pieceWorker.runIfActive(eventLoop: loop) { () throws -> PieceCheck in
            let matches = data.withUnsafeBytes { store.matches(piece: index, data: $0) }
            // Block digests only for blame: of a bad copy, and of the good copy of a piece that failed before.
            let digests = matches && !suspect ? nil : data.withUnsafeBytes(PieceCheck.blockDigests)
            if matches { try data.withUnsafeBytes { try store.write(piece: index, data: $0) } }
            return PieceCheck(matches: matches, blockDigests: digests)
        }.whenComplete { result in
            self.pieceChecked(index, length: data.count, result: result)
        }
    }

    private func pieceChecked(_ index: Int, length: Int, result: Result<PieceCheck, Error>) {
        let wasHeld = uncheckedBytes >= uncheckedLimit
        uncheckedBytes -= length
        guard failure == nil else { return }
        let check: PieceCheck
        do {
            check = try result.get()
        } catch {
            fail("cannot store piece \(index): \(error)")
            return
        }
        guard check.matches else {
            let senders = picker.pieceFailed(index).map { host(of: $0) ?? "?" }
            metrics.hashFailures.increment()
            wastedBytes += Int64(length)
            metrics.wasted.increment(by: Int64(length))
            logger.warning("piece failed its hash check", metadata: ["piece": "\(index)", "senders": "\(Set(senders).sorted())"])
            let liars = blame.pieceFailed(index, senders: senders, digests: check.blockDigests ?? [])
            for host in liars { ban(host, piece: index) }
            requestFromAll()
            return
        }
        if let digests = check.blockDigests {
            for host in blame.pieceVerified(index, digests: digests) { ban(host, piece: index) }
        }
        picker.pieceVerified(index)
        metrics.update(progress: progress, verified: picker.have.setCount)
        metrics.verified.increment()
        for link in peers.values {
            // A peer that has the piece gains nothing from hearing we have it too, except a
            // seed: a distinct-first seed steers its suggestions by what we have.
            if !link.bitfield[index] || link.isSeed { link.send(.have(piece: index)) }
            if link.amInterested { updateInterest(link) }
        }
        if picker.isComplete {
            finish()
        } else if wasHeld && uncheckedBytes < uncheckedLimit {
            // Requests stopped while the worker was behind (`request(from:)`); it has caught up.
            requestFromAll()
        }
    }

    /// Bans an address proven to have sent a bad block of `piece` for the rest of the run:
    /// closes its connections and forgets every block it sent to pieces still in progress.
    private func ban(_ host: String, piece: Int) {
        guard host != "?", banned.insert(host).inserted else { return }
        logger.warning("banning peer that sent corrupt data", metadata: ["peer": "\(host)", "piece": "\(piece)"])
        metrics.banned.increment()
        var discarded = 0
        for p in peers.values where p.remote.host == host {
            discarded += picker.discardBlocks(from: p.id)
            p.channel.close(promise: nil)
        }
        for (id, h) in departedHosts where h == host {
            discarded += picker.discardBlocks(from: id)
            departedHosts[id] = nil
        }
        wastedBytes += Int64(discarded)
        metrics.wasted.increment(by: Int64(discarded))
    }

    /// The address a link had, also after it closed (see `departedHosts`).
    private func host(of linkID: Int) -> String? { peers[linkID]?.remote.host ?? departedHosts[linkID] }

    private func rememberDeparted(_ link: PeerLink) {
        departedHosts[link.id] = link.remote.host
        // Churn must not grow this without bound: forget links whose blocks have all left the picker.
        if departedHosts.count > 2 * config.maxPeers {
            departedHosts = departedHosts.filter { picker.holdsBlocks(from: $0.key) }
        }
    }

    private func finish() {
        do {
            try store.finalize()
        } catch {
            fail("\(error)")
            return
        }
        completedAt = .now()
        let seconds = Double((completedAt! - startedAt).nanoseconds) / 1e9
        metrics.completionSeconds.record(seconds)
        logger.info("download complete", metadata: ["seconds": "\(Int(seconds * 10) / 10)", "path": "\(store.target)"])
        for link in peers.values {
            if link.isSeed { link.channel.close(promise: nil) } else if link.amInterested { updateInterest(link) }
        }
        completion.succeed(())
    }

    private func fail(_ message: String) {
        guard failure == nil else { return }
        failure = message
        logger.error("download stopped", metadata: ["reason": "\(message)"])
        completion.fail(CLIVisibleError(message))
        for link in peers.values { link.channel.close(promise: nil) }
    }

    // MARK: per-torrent caps

    private var nowNanos: UInt64 { UInt64(loop.now.uptimeNanoseconds) }

    /// Sets this torrent's own caps (0 = none); they apply below the host-wide caps.
    public func setCaps(up: Int64, down: Int64) {
        loop.execute {
            let now = self.nowNanos
            self.upCap = up > 0 ? TokenBucket(rate: up, now: now) : nil
            self.downCap = down > 0 ? TokenBucket(rate: down, now: now) : nil
            self.metrics.setCaps(up: up, down: down)
            for link in self.peers.values { self.serve(link) }
            self.requestFromAll()
        }
    }

    /// True when the bucket has a positive balance; otherwise retries uploads and requests
    /// once it has refilled.
    private func capAllows(_ bucket: inout TokenBucket?) -> Bool {
        guard var b = bucket else { return true }
        let now = nowNanos
        b.refill(now: now)
        bucket = b
        if b.tokens > 0 { return true }
        if !capRetryScheduled {
            capRetryScheduled = true
            let delay = max(b.delayUntilAvailable(now: now), 1_000_000)
            loop.scheduleTask(in: .nanoseconds(Int64(min(delay, 100_000_000)))) {
                self.capRetryScheduled = false
                for link in self.peers.values { self.serve(link) }
                self.requestFromAll()
            }
        }
        return false
    }

    // MARK: uploading

    /// No other connection has an upload waiting: the uplink has room for a duplicate.
    private func noUploadWaiting(besides link: PeerLink) -> Bool {
        peers.values.allSatisfy { $0 === link || $0.incoming.isEmpty }
    }

    /// Serves queued requests a few at a time: a block is read from disk only when the
    /// connection is ready to send it, so memory stays small even under a tight upload cap.
    ///
    /// A distinct-first seed admits or refuses a block at this point, not when the request
    /// arrived: requests wait here until their connection can take them (the kernel keeps
    /// little unsent data, see `EngineConfig.unsentLowWater`). Deciding on arrival let a peer
    /// with a deep pipeline claim blocks it would only receive seconds later.
    func serve(_ link: PeerLink) {
        var wrote = false
        while link.uploadsInFlight < config.uploadsInFlightPerPeer, !link.incoming.isEmpty, link.channel.isWritable {
            // Only a peer that understands rejects can be pointed elsewhere.
            if link.fast, distinctFirst != nil,
               !distinctFirst!.admit(link.incoming[0], from: link.id, idle: noUploadWaiting(besides: link),
                                     assignedOnly: isSuggestionTarget(link), now: nowNanos) {
                link.send(.reject(link.incoming.removeFirst()), flush: false)
                wrote = true
                continue
            }
            if upCap != nil {
                guard capAllows(&upCap) else { break }
                _ = upCap!.takeWhole(link.incoming[0].length, now: nowNanos)
            }
            let req = link.incoming.removeFirst()
            if link.suggestedByUs.contains(req.piece), distinctFirst!.isSent(piece: req.piece) {
                // Its last block is on the way: the next piece can start.
                link.suggestedByUs.remove(req.piece)
                assignmentDue = true
            }
            var buffer = link.channel.allocator.buffer(capacity: 13 + req.length)
            buffer.writeInteger(UInt32(9 + req.length))
            buffer.writeInteger(PeerMessage.ID.piece.rawValue)
            buffer.writeInteger(UInt32(req.piece))
            buffer.writeInteger(UInt32(req.begin))
            do {
                try buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: req.length) { ptr in
                    try store.read(piece: req.piece, begin: req.begin, length: req.length,
                                   into: UnsafeMutableRawBufferPointer(rebasing: ptr[0..<req.length]))
                    return req.length
                }
            } catch {
                logger.error("cannot read block to upload", metadata: ["request": "\(req)", "error": "\(error)"])
                link.channel.close(promise: nil)
                return
            }
            link.uploadsInFlight += 1
            wrote = true
            let promise = loop.makePromise(of: Void.self)
            promise.futureResult.whenComplete { [weak self, weak link] result in
                guard let self, let link else { return }
                link.uploadsInFlight -= 1
                switch result {
                case .success:
                    link.uploaded.add(req.length)
                    link.lastUsefulAt = self.nowNanos
                    self.uploadedBytes += Int64(req.length)
                    self.metrics.uploaded.increment(by: Int64(req.length))
                    self.serve(link)
                case .failure:
                    self.distinctFirst?.withdraw(req)
                }
            }
            link.channel.write(buffer, promise: promise)
        }
        // One flush (one syscall) for the blocks written in this round.
        if wrote { link.channel.flush() }
        if assignmentDue {
            assignmentDue = false
            assignPieces()
        }
    }

    // MARK: suggestions (distinct-first seeding)

    /// Most suggestions a peer's list keeps; older ones are dropped first.
    static let maxSuggestionsKept = 256

    /// Pieces a distinct-first seed has assigned at once: about 250 ms of its measured upload,
    /// at least eight and at least 2 MiB (64 KiB pieces need 32). Enough to keep the uplink
    /// busy while assigned peers (slow to wake on a loaded host) ask for their next piece, and
    /// a fast peer on loopback from waiting a round trip per piece; few, so each piece reaches
    /// its peer in a burst and can be passed on within a fraction of a second. (With every
    /// peer fetching its own pieces at once, a piece trickled in at 1/15 of the uplink and sat
    /// unshareable for seconds; with four at 20mbit the uplink idled; at 16 hosts/100mbit,
    /// 5, 12 and 16 pieces were all slower than 8.)
    private var seedPiecesInFlight: Int {
        max(8, (2 << 20) / metainfo.pieceLength, Int(upRate.rate / 4) / metainfo.pieceLength)
    }

    /// Hands out pieces of a distinct-first seed: while fewer than `seedPiecesInFlight` are
    /// being sent, the peer with the fewest pieces on the way (then the one that has received
    /// least from us so far) is told, by a BEP 6 suggest, to fetch a piece it lacks that has
    /// gone out least often. Every peer thus gets an equal share of the pieces only this seed
    /// has and forwards them with its own uplink; left to TCP, one connection can take most
    /// of the seed's uplink and become the only source of half the file.
    private func assignPieces() {
        guard distinctFirst != nil else { return }
        var targets = peers.values.filter(isSuggestionTarget)
        guard !targets.isEmpty else { return }
        let limit = seedPiecesInFlight
        var inFlight = targets.reduce(0) { $0 + $1.suggestedByUs.count }
        let now = nowNanos
        while inFlight < limit {
            targets.sort { ($0.suggestedByUs.count, $0.uploaded.total) < ($1.suggestedByUs.count, $1.uploaded.total) }
            var assigned = false
            for link in targets {
                guard let p = distinctFirst!.suggest(to: link.id, has: link.bitfield, now: now) else { continue }
                link.suggestedByUs.insert(p)
                link.send(.suggest(piece: p))
                assigned = true
                break
            }
            guard assigned else { return }
            inFlight += 1
        }
    }

    /// Suggestions go to Starling peers only: they treat them as assignments and fetch them at
    /// once (`PeerLink.assignsPieces`). Another client may ignore a suggestion, and the piece
    /// would wait out its claim; those peers get the plain distinct-first rule instead.
    private func isSuggestionTarget(_ link: PeerLink) -> Bool {
        link.fast && link.peerInterested && !link.amChoking && link.peerID.starts(with: EngineConfig.peerIDPrefix)
    }

    // MARK: periodic work

    /// Chooses whom to upload to. Called on the rechoke timer and when interest changes.
    func rechoke() {
        let seeding = picker.isComplete
        let candidates = peers.values.map { link -> Choker.Candidate in
            link.downloaded.roll()
            link.uploaded.roll()
            return Choker.Candidate(id: link.id, interested: link.peerInterested,
                                    rate: seeding ? link.uploaded.rate : link.downloaded.rate,
                                    pieces: link.bitfield.setCount)
        }
        let unchoke = choker.unchoked(candidates, now: UInt64(NIODeadline.now().uptimeNanoseconds), random: &rng)
        for link in peers.values {
            let shouldChoke = !unchoke.contains(link.id)
            guard shouldChoke != link.amChoking else { continue }
            link.amChoking = shouldChoke
            link.send(shouldChoke ? .choke : .unchoke)
            if shouldChoke {
                distinctFirst?.release(peer: link.id)
                link.suggestedByUs.removeAll()
                if link.fast { for r in link.incoming { link.send(.reject(r), flush: false) } }
                link.incoming.removeAll()
            }
        }
        metrics.peersChanged(peers.values)
        assignPieces()
    }

    /// Once a second: frees requests stuck at snubbed peers and refills pipelines.
    func tick() {
        updateRates()
        if distinctFirst != nil {
            // Suggestions a peer sat on are offered to others again; give it fresh ones.
            let now = nowNanos
            for link in peers.values {
                link.suggestedByUs = link.suggestedByUs.filter { distinctFirst!.isClaimed($0, by: link.id, now: now) }
            }
            assignPieces()
        }
        let now = NIODeadline.now()
        for link in peers.values where !link.outstanding.isEmpty {
            if now - link.lastBlockAt > config.snubTimeout, !link.snubbed {
                link.snubbed = true
                logger.debug("peer snubbed us; re-requesting its blocks elsewhere", metadata: ["peer": "\(link.remote)"])
                for r in link.outstanding { picker.requestDropped(r, by: link.id) }
                link.outstanding.removeAll()
            }
        }
        requestFromAll()
    }

    /// Smoothed transfer rates of the whole torrent, updated each tick.
    private(set) var downRate = RateMeter()
    private(set) var upRate = RateMeter()
    private var lastCounted: (down: Int64, up: Int64) = (0, 0)

    private func updateRates() {
        downRate.add(Int(downloadedBytes - lastCounted.down))
        upRate.add(Int(uploadedBytes - lastCounted.up))
        lastCounted = (downloadedBytes, uploadedBytes)
    }

    /// One torrent's entry in `/status`.
    func statusJSON() -> String {
        let state = failure != nil ? "failed" : isComplete ? "seeding" : "downloading"
        let seeds = peers.values.filter(\.isSeed).count
        return "{\"name\":\(JSONText.quote(metainfo.name)),\"infoHash\":\"\(infoHash.hex)\",\"state\":\"\(state)\","
            + "\"progress\":\(progress),\"size\":\(metainfo.totalLength),\"left\":\(left),"
            + "\"downloaded\":\(downloadedBytes),\"uploaded\":\(uploadedBytes),"
            + "\"downRate\":\(Int(downRate.rate)),\"upRate\":\(Int(upRate.rate)),"
            + "\"peers\":\(peers.count),\"seeds\":\(seeds),\"path\":\(JSONText.quote(store.target))"
            + (failure.map { ",\"error\":\(JSONText.quote($0))" } ?? "") + "}"
    }

    /// Closes every connection (shutdown).
    func closeAll() {
        for link in peers.values { link.channel.close(promise: nil) }
        // A download removed or shut down before it finished ends as stopped, so nothing
        // waits on it (and NIO does not report its promise as leaked).
        if completedAt == nil, failure == nil {
            failure = "stopped before the download completed"
            completion.fail(CLIVisibleError(failure!))
        }
    }
}

/// An error whose text is meant for the operator as is.
public struct CLIVisibleError: Error, CustomStringConvertible {
    public var description: String
    public init(_ d: String) { description = d }
}

/// What the piece worker found. Block digests come with a bad copy, and with the good copy
/// of a piece that failed before: `BlameLedger` compares them to find who lied.
struct PieceCheck: Sendable {
    var matches: Bool
    var blockDigests: [SHA1Digest]?

    static func blockDigests(_ data: UnsafeRawBufferPointer) -> [SHA1Digest] {
        stride(from: 0, to: data.count, by: PieceLayout.blockSize).map { start in
            SHA1Hasher.hash(UnsafeRawBufferPointer(rebasing: data[start..<min(start + PieceLayout.blockSize, data.count)]))
        }
    }
}
