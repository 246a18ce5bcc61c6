import BitTorrent
import Logging
import NIOCore
import NIOPosix
import Storage
import Swarm

/// The shell of one torrent: feeds what its peers send, the piece worker's verdicts and the
/// timers into `TorrentState` with the loop's time, and carries out the actions it returns
/// (wire messages, block reads and writes, piece checks). The rules live in `TorrentState`;
/// this class moves bytes. Everything runs on the engine's loop, so it needs no locks.
// @unchecked: every mutable member is touched on `loop` only; callers off the loop go
// through the engine's snapshots or hop to the loop.
public final class TorrentSession: @unchecked Sendable {
    public let metainfo: Metainfo
    public var infoHash: InfoHash { metainfo.infoHash }
    let store: PieceStore
    let loop: EventLoop
    private let pieceWorker: NIOThreadPool
    private let blockReader: NIOThreadPool
    let logger: Logger
    let config: EngineConfig
    let metrics: TorrentMetrics

    private(set) var state: TorrentState
    private(set) var links: [Int: PeerLink] = [:]
    /// Blocks of pieces being assembled, until the piece goes to the piece worker.
    private var pieceBuffers: [Int: [UInt8]] = [:]
    /// Haves wait for other bytes to the same peer, or at most `rules.haveFlushDelay`.
    private let haveFlush: DeferredFlush
    private var reported = TorrentState.Counters()
    /// Set by `closeAll`: the download ends because we were told to stop, not by a fault.
    private var stopping = false
    private let completion: EventLoopPromise<Void>
    /// Fulfilled when every piece is verified and the file is in place; failed on a fatal storage error.
    public var completed: EventLoopFuture<Void> { completion.futureResult }

    init(metainfo: Metainfo, store: PieceStore, have: Bitfield, loop: EventLoop, pieceWorker: NIOThreadPool,
         blockReader: NIOThreadPool, config: EngineConfig, logger: Logger) {
        self.metainfo = metainfo
        self.store = store
        self.loop = loop
        self.pieceWorker = pieceWorker
        self.blockReader = blockReader
        self.config = config
        var log = logger
        log[metadataKey: "torrent"] = "\(metainfo.infoHash.shortHex)"
        self.logger = log
        var random = SystemRandomNumberGenerator()
        state = TorrentState(layout: metainfo.layout, have: have, rules: config.rules, ownPeerID: config.peerID, ownAddress: config.ip,
                             seed: random.next(), now: UInt64(loop.now.uptimeNanoseconds))
        completion = loop.makePromise()
        haveFlush = DeferredFlush(loop: loop, delay: .nanoseconds(Int64(config.rules.haveFlushDelay)))
        metrics = TorrentMetrics(label: metainfo.infoHash.shortHex, name: metainfo.name, sizeBytes: metainfo.totalLength)
        metrics.progressRatio.set(to: state.progress)
        if state.isComplete { completion.succeed(()) }
    }

    /// The loop's clock: the one time every event of the rules carries.
    private var now: UInt64 { UInt64(loop.now.uptimeNanoseconds) }

    public var isComplete: Bool { state.isComplete }
    public var progress: Double { state.progress }
    public var left: Int64 { state.left }
    public var uploadShareLeft: Int64 { state.uploadShareLeft }
    var connectedPeers: Int { state.peers.count }
    var downloadedBytes: Int64 { state.counters.downloaded }
    var uploadedBytes: Int64 { state.counters.uploaded }
    var wastedBytes: Int64 { state.counters.wasted }
    var failure: String? { state.failure }
    /// Seconds from start to the complete file, once complete.
    var completionSeconds: Double? { state.completedAt.map { Double($0 - state.startedAt) / 1e9 } }

    // MARK: events

    /// Admits a connection whose handshake named this torrent (our handshake is already
    /// sent), or nil when the rules refuse it.
    func admit(_ handshake: Handshake, channel: Channel, outbound: Bool, remote: PeerAddress) -> PeerLink? {
        let arrival = TorrentState.Arrival(remote: remote, outbound: outbound, peerID: handshake.peerID, fast: handshake.supportsFast,
                                           sameSite: config.sameSite(remote.host))
        let (admission, actions) = state.admit(arrival, now: now)
        guard case .admitted(let id) = admission else {
            if case .refused(let why) = admission {
                logger.debug("refusing connection", metadata: ["peer": "\(remote)", "reason": "\(why)"])
            }
            perform(actions)
            return nil
        }
        let link = PeerLink(id: id, channel: channel, remote: remote)
        links[id] = link
        if state.isDistinctFirstSeed, config.rules.seedUnsentBytes > 0 {
            _ = channel.setOption(PeerEngine.unsentLowWaterOption, value: SocketOptionValue(clamping: config.rules.seedUnsentBytes))
        }
        perform(actions)
        metrics.peersChanged(state.peerCounts)
        return link
    }

    /// The connection closed. Returns the address the peer listens on, if known.
    func closed(_ link: PeerLink) -> PeerAddress? {
        guard links[link.id] === link else { return nil }
        links[link.id] = nil
        if let reason = link.closeReason {
            logger.info("closing connection", metadata: ["peer": "\(link.remote)", "reason": "\(reason)"])
            metrics.protocolErrors.increment()
        }
        let listenAddress = state.peers[link.id]?.listenAddress
        perform(state.disconnected(link.id, now: now))
        metrics.peersChanged(state.peerCounts)
        return listenAddress
    }

    /// Closes a link for a protocol violation; the reason is logged and counted when it detaches.
    func drop(_ link: PeerLink, reason: String) {
        if link.closeReason == nil { link.closeReason = reason }
        link.channel.close(promise: nil)
    }

    func handle(_ message: PeerMessage, from link: PeerLink) {
        guard links[link.id] === link, let m = TorrentState.Message(message) else { return }
        if case .piece(_, _, let data) = message {
            perform(state.received(m, from: link.id, now: now), block: data)
        } else {
            perform(state.received(m, from: link.id, now: now))
        }
    }

    func readBatchEnded(_ link: PeerLink) {
        guard links[link.id] === link else { return }
        perform(state.readBatchEnded(link.id, now: now))
    }

    func writabilityChanged(_ link: PeerLink) {
        guard links[link.id] === link else { return }
        let writable = link.channel.isWritable
        if writable { link.becameWritable() }
        perform(state.writabilityChanged(link.id, writable: writable, now: now))
    }

    func tick() {
        perform(state.tick(now: now))
        metrics.pipeline(outstanding: state.requestsOutstanding, unchecked: state.uncheckedBytes)
        // Interest and chokes change with every message, not only on the rechoke timer.
        metrics.peersChanged(state.peerCounts)
    }

    func rechoke() {
        perform(state.rechoke(now: now))
    }

    /// Candidates of our own site (`PeerEngine.addCandidates`), for who fetches what across
    /// the site's uplink.
    func siteMembersKnown(_ hosts: [String]) {
        state.siteMembersKnown(hosts)
    }

    /// Under a slew limit (set or lifted at any time) haves go to peers that hold the piece
    /// too, so the host's upload share of what is left is counted right. On the loop.
    func announceToHolders(_ on: Bool) { state.announceToHolders(on) }

    /// Sets this torrent's own caps (0 = none); they apply below the host-wide caps.
    public func setCaps(up: Int64, down: Int64) {
        loop.execute {
            self.metrics.setCaps(up: up, down: down)
            self.perform(self.state.setCaps(up: up, down: down, now: self.now))
        }
    }

    /// Closes every connection (shutdown, removal); a download not yet complete ends as stopped.
    func closeAll() {
        stopping = true
        perform(state.stop())
    }

    // MARK: actions

    /// Carries out the rules' actions in order, then flushes each connection written to
    /// once. `block` is the payload of the `piece` message the actions answer.
    private func perform(_ actions: [TorrentState.Action], block: ByteBuffer? = nil) {
        guard !actions.isEmpty else { return syncMetrics() }
        var written: [PeerLink] = []
        for action in actions {
            switch action {
            case .send(let m, let id):
                guard let link = links[id] else { continue }
                link.send(PeerMessage(m))
                if case .have = m {
                    haveFlush.add(link.channel)
                } else if !written.contains(where: { $0 === link }) {
                    written.append(link)
                }
            case .serve(let req, let id):
                if serve(req, to: id), let link = links[id], !written.contains(where: { $0 === link }) { written.append(link) }
            case .assemble(let req):
                guard let block else { continue }
                assemble(req, block)
            case .check(let piece, let digests):
                check(piece, blockDigests: digests)
            case .finalize:
                finalize()
            case .close(let id, let reason):
                guard let link = links[id] else { continue }
                switch reason {
                case .violation(let why): if link.closeReason == nil { link.closeReason = why }
                case .evicted(let why): logger.info("closing connection", metadata: ["peer": "\(link.remote)", "reason": "\(why)"])
                case .redundant: break
                }
                link.channel.close(promise: nil)
            case .wake(let after):
                loop.scheduleTask(in: .nanoseconds(Int64(after))) { self.perform(self.state.wake(now: self.now)) }
            case .failed(let message):
                logger.log(level: stopping ? .info : .error, "download stopped", metadata: ["reason": "\(message)"])
                completion.fail(DownloadStopped(description: message))
            case .log(let level, let text, let fields):
                logger.log(level: Logger.Level(level), "\(text)", metadata: fields.mapValues { .string($0) })
            }
        }
        for link in written { link.channel.flush() }
        syncMetrics()
    }

    private func syncMetrics() {
        let c = state.counters
        guard c != reported else { return }
        metrics.record(c, since: reported)
        if c.verified != reported.verified { metrics.progressRatio.set(to: state.progress) }
        reported = c
    }

    private func assemble(_ req: BlockRequest, _ data: ByteBuffer) {
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
    }

    /// The piece worker checks the piece's SHA-1 and writes it, so the loop keeps moving bytes
    /// meanwhile.
    private func check(_ index: Int, blockDigests: Bool) {
        let data = pieceBuffers.removeValue(forKey: index) ?? []
        let store = self.store, length = metainfo.layout.length(ofPiece: index)
        pieceWorker.runIfActive(eventLoop: loop) { () throws -> TorrentState.PieceCheck in
            guard data.count == length,
                  data.withUnsafeBytes({ store.matches(piece: index, data: $0) }) else {
                return .mismatched(blockDigests: data.withUnsafeBytes(PieceLayout.blockDigests))
            }
            try data.withUnsafeBytes { try store.write(piece: index, data: $0) }
            return .matched(blockDigests: blockDigests ? data.withUnsafeBytes(PieceLayout.blockDigests) : nil)
        }.whenComplete { result in
            let check: TorrentState.PieceCheck
            switch result {
            case .success(let c): check = c
            case .failure(let error): check = .unwritable("\(error)")
            }
            self.perform(self.state.pieceChecked(index, check, now: self.now))
        }
    }

    /// Sends the block in a buffer that starts with the `piece` header. Read on the loop
    /// when the page cache holds it (the usual case: the file was just written or read);
    /// otherwise on the block reader, so a slow disk stalls no other peer.
    /// Returns true when the block was written here (and needs the batch's flush).
    private func serve(_ req: BlockRequest, to id: Int) -> Bool {
        guard let link = links[id] else {
            perform(state.blockSent(req, to: id, sent: false, now: now))
            return false
        }
        var buffer = link.channel.allocator.buffer(capacity: 13 + req.length)
        PeerMessage.writePieceHeader(req, into: &buffer)
        let store = self.store
        do {
            var cached = false
            try buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: req.length) { ptr in
                cached = try store.readIfCached(piece: req.piece, begin: req.begin, length: req.length,
                                                into: UnsafeMutableRawBufferPointer(rebasing: ptr[0..<req.length]))
                return cached ? req.length : 0
            }
            if cached {
                link.channel.write(buffer, promise: sentPromise(req, to: id))
                return true
            }
        } catch {
            uploadFailed(req, to: id, error: error)
            return false
        }
        blockReader.runIfActive(eventLoop: loop) { [buffer] () throws -> ByteBuffer in
            var b = buffer
            try b.writeWithUnsafeMutableBytes(minimumWritableBytes: req.length) { ptr in
                try store.read(piece: req.piece, begin: req.begin, length: req.length,
                               into: UnsafeMutableRawBufferPointer(rebasing: ptr[0..<req.length]))
                return req.length
            }
            return b
        }.whenComplete { result in
            switch result {
            case .success(let bytes):
                guard let link = self.links[id] else { return self.perform(self.state.blockSent(req, to: id, sent: false, now: self.now)) }
                link.channel.writeAndFlush(bytes, promise: self.sentPromise(req, to: id))
            case .failure(let error):
                self.uploadFailed(req, to: id, error: error)
            }
        }
        return false
    }

    /// Tells the rules when the block has gone to the connection (or could not).
    private func sentPromise(_ req: BlockRequest, to id: Int) -> EventLoopPromise<Void> {
        let promise = loop.makePromise(of: Void.self)
        promise.futureResult.whenComplete { r in
            self.perform(self.state.blockSent(req, to: id, sent: (try? r.get()) != nil, now: self.now))
        }
        return promise
    }

    private func uploadFailed(_ req: BlockRequest, to id: Int, error: Error) {
        logger.error("cannot read block to upload", metadata: ["request": "\(req)", "error": "\(error)"])
        perform(state.blockSent(req, to: id, sent: false, now: now))
        links[id]?.channel.close(promise: nil)
    }

    private func finalize() {
        do {
            try store.finalize()
        } catch {
            return perform(state.fail("\(error)"))
        }
        let wasComplete = state.isComplete
        perform(state.finalized(now: now))
        guard !wasComplete, let seconds = completionSeconds else { return }
        metrics.completionSeconds.record(seconds)
        logger.info("download complete", metadata: ["seconds": "\(Int(seconds * 10) / 10)", "path": "\(store.target)"])
        completion.succeed(())
    }
}

/// Why a download ended without completing (a storage fault, a stop); the text is for the
/// operator as is.
public struct DownloadStopped: Error, Sendable, CustomStringConvertible {
    public var description: String
}

/// A connection closed before its handshake (outside the allowed networks, no socket options).
struct PeerRefused: Error, CustomStringConvertible {
    var description: String
    init(_ d: String) { description = d }
}
