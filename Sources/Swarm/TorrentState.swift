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
    public internal(set) var picker: PiecePicker
    var choker: Choker
    var random: SplitMix64
    public internal(set) var peers = PeerTable()
    /// Who of `peers` has each piece, by slot: their bitfields turned on their side.
    var holders: PieceHolders
    /// Bytes of complete pieces handed to the piece worker and not yet checked.
    public internal(set) var uncheckedBytes = 0
    var uncheckedLimit: Int { max(rules.maxUncheckedBytes, 2 * layout.pieceLength) }
    /// Who sent which blocks of pieces that failed, to ban only the peer that lied.
    var blame = BlameLedger<String>()
    /// Addresses of peers gone while the picker still holds blocks they sent (blame needs them).
    var departedHosts: [Int: String] = [:]
    public internal(set) var banned: Set<String> = []
    public let startedAt: UInt64
    /// Set once the file is final (`finalized`).
    public internal(set) var completedAt: UInt64?
    public internal(set) var failure: String?
    public internal(set) var counters = Counters()
    /// Optional per-torrent caps below the host-wide ones (payload bytes per second).
    var upCap: TokenBucket?
    var downCap: TokenBucket?
    var wakeScheduled = false
    /// Interest changed during this read batch: rechoke when it ends.
    var rechokeDue = false
    /// Set while this torrent seeds with the distinct-first rule.
    var distinctFirst: DistinctFirstServing?
    /// A suggested piece went out in full during `serve`: hand out the next one after it.
    var assignmentDue = false
    /// Smoothed transfer rates of the whole torrent, updated each tick.
    public internal(set) var downRate: RateMeter
    public internal(set) var upRate: RateMeter
    var lastCounted: (down: Int64, up: Int64) = (0, 0)
    /// Our site's peers and the pieces it has, for what to fetch across its uplink.
    public internal(set) var site: SiteAffinity
    /// The fastest `downRate` seen: what the host's downlink can take, for `siteFallback`.
    var peakDownRate: Double = 0
    /// When a block last arrived from anyone: a site-bound host that receives nothing for
    /// `TorrentRules.siteFallback` fetches across sites what its site-mates own.
    var lastArrivalAt: UInt64
    var actions: [Action] = []

    /// `ownAddress`: the address we announce, as peers of our site see it (for `SiteAffinity`;
    /// without one, our peer id stands in).
    public init(layout: PieceLayout, have: Bitfield, rules: TorrentRules, ownPeerID: [UInt8], ownAddress: String? = nil,
                seed: UInt64, now: UInt64) {
        self.layout = layout
        self.rules = rules
        self.ownPeerID = ownPeerID
        random = SplitMix64(seed: seed)
        picker = PiecePicker(layout: layout, have: have, random: &random)
        holders = PieceHolders(pieceCount: layout.pieceCount)
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

    mutating func takeActions() -> [Action] {
        var out: [Action] = []
        swap(&out, &actions)
        return out
    }

    mutating func send(_ m: Message, to id: Int) { actions.append(.send(m, to: id)) }
    mutating func close(_ id: Int, _ reason: CloseReason) { actions.append(.close(id, reason)) }
    mutating func log(_ level: LogLevel, _ text: String, _ metadata: [String: String] = [:]) {
        actions.append(.log(level, text, metadata))
    }
}
