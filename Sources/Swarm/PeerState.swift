import BitTorrent
import Values

/// What a torrent's rules know about one connected peer: both sides' choke and interest,
/// its pieces, our requests to it and its requests to us. Owned by `TorrentState`.
public struct PeerState: Sendable {
    public let id: Int
    public let host: String
    public let outbound: Bool
    public let peerID: [UInt8]
    /// Both ends speak the fast extension (BEP 6).
    public let fast: Bool
    public let connectedAt: UInt64
    /// The peer is in another site than ours (`SiteMap`): what we fetch from it crosses the
    /// site's uplink (`SiteAffinity`).
    public let acrossSites: Bool
    /// Address the peer listens on, once known (the remote address for outbound links).
    public internal(set) var listenAddress: PeerAddress?

    public internal(set) var amChoking = true
    public internal(set) var amInterested = false
    public internal(set) var peerChoking = true
    public internal(set) var peerInterested = false
    public internal(set) var bitfield: Bitfield

    /// Our requests in flight to this peer.
    public internal(set) var outstanding: Set<BlockRequest> = []
    /// Blocks arrived in this read batch: refill the pipeline when the batch ends.
    var needsRequests = false
    /// Their requests waiting to be served.
    public internal(set) var incoming: [BlockRequest] = []
    /// The pieces of the blocks being read or written for them, oldest first: served and not
    /// yet taken by the kernel (`blockSent`).
    var uploading: [Int] = []
    public var uploadsInFlight: Int { uploading.count }
    /// The connection takes more data now (the shell reports each change).
    var writable = true
    var allowedFast: Set<Int> = []
    /// Pieces this seed refused lately, and when (it wants us to fetch them from another peer).
    var refused: [Int: UInt64] = [:]
    /// Pieces assigned to this peer (we are a distinct-first seed) whose last block the
    /// kernel has not yet taken.
    var suggestedByUs: Set<Int> = []
    /// Pieces this peer suggested to us, oldest first; `suggests` once it has sent any.
    var suggestedToUs: [Int] = []
    var suggests = false

    public internal(set) var downloaded: RateMeter
    public internal(set) var uploaded: RateMeter
    var lastBlockAt: UInt64
    var snubbed = false
    /// Last time a block moved either way: connection turnover evicts the idle.
    var lastUsefulAt: UInt64

    init(id: Int, arrival: TorrentState.Arrival, pieceCount: Int, now: UInt64) {
        self.id = id
        host = arrival.remote.host
        outbound = arrival.outbound
        peerID = arrival.peerID
        fast = arrival.fast
        acrossSites = arrival.sameSite == false
        connectedAt = now
        listenAddress = arrival.outbound ? arrival.remote : nil
        bitfield = Bitfield(count: pieceCount)
        downloaded = RateMeter(now: now)
        uploaded = RateMeter(now: now)
        lastBlockAt = now
        lastUsefulAt = now
    }

    public var isSeed: Bool { bitfield.isComplete }
    public var isStarling: Bool { peerID.starts(with: TorrentRules.starlingPeerIDPrefix) }
    /// A Starling seed that suggests pieces hands each peer its own: ask it for nothing else.
    /// (Other clients' suggestions are hints about their cache, not assignments.)
    var assignsPieces: Bool { suggests && isSeed && isStarling }
}
