import BitTorrent
import Values

/// The settings of a torrent's rules (`TorrentState`), each default written here once;
/// durations in nanoseconds. The defaults suit a fleet rollout on a LAN.
public struct TorrentRules: Sendable, Equatable {
    /// Most connections per torrent; we dial up to half of them (`TorrentState.dialBudget`).
    public var maxPeers = Defaults.maxPeers
    /// Inbound connections accepted beyond `maxPeers`, so peers that dial us are not refused
    /// because our own dials filled the slots.
    public var inboundSlack = 10
    /// Interested peers served at once while downloading, or seeding after a download;
    /// generous, since a fleet is a trusted swarm. (A distinct-first seed serves every
    /// interested peer: see `TorrentState.init`.)
    public var uploadSlots = Defaults.uploadSlots
    /// How far ahead each peer is asked for blocks, in time at the rate it delivers. Enough
    /// to keep our downlink busy, short on purpose: every byte asked for and not yet here sits
    /// in a queue on the way (the sender's socket, its uplink, our downlink), and a fresh piece
    /// from the seed, a `have` or a request queues behind it (docs/design/engine.md).
    public var requestHorizon: UInt64 = 500_000_000
    /// Request pipeline depth bounds, in 16 KiB blocks. The floor is kept only while the
    /// torrent's requests in all are within `requestHorizon` of its download rate
    /// (`TorrentState.pipelineDepth(for:)`). These two, the queued requests and the uploads in
    /// flight count 16 KiB blocks whatever the layout's unit (`PieceLayout.blockLength`):
    /// `inUnits` turns them into the same bytes in its blocks.
    public var minPipeline = 4
    public var maxPipeline = 256
    public var maxQueuedRequestsPerPeer = 512
    /// Most bytes of complete pieces waiting for their hash check and write (at least two
    /// pieces). Beyond it no new blocks are requested, so a slow disk or a starved CPU keeps
    /// memory flat instead of buffering the download in RAM.
    public var maxUncheckedBytes = 16 * 1024 * 1024
    /// Blocks read or written for one peer and not yet handed to its connection.
    public var uploadsInFlightPerPeer = 4
    /// A seed that started complete uploads each block once before it uploads any block twice.
    public var distinctFirstSeeding = true
    /// Most unsent bytes the kernel holds per connection of a distinct-first seed
    /// (TCP_NOTSENT_LOWAT; 0: the kernel's deep default). Its requests then wait in our queue,
    /// where it decides what to send, and a piece whose last block the kernel took is within
    /// this much of the wire, so the next can be assigned (`TorrentState.seedPiecesInFlight`).
    /// Other sessions keep deep buffers: they make no such decision.
    public var seedUnsentBytes = 32 * 1024
    /// A verified piece's `have` goes also to peers that have the piece. Under a slew limit a
    /// host's upload ramps down on what its peers lack (`TorrentState.uploadShareLeft`), which
    /// it knows only if they say so.
    public var announceToHolders = false
    /// Longest a shell holds a written `have` for other bytes to the same peer before it
    /// flushes it alone (0: at once). Flushed at once, a have is a packet plus its ACK per
    /// piece and per peer; a piece takes longer than this to pass a hop (docs/design/engine.md).
    public var haveFlushDelay: UInt64 = 100_000_000
    /// How long a piece refused by a seed is looked for at other peers first.
    public var refusalMemory: UInt64 = 3_000_000_000
    /// A peer that delivers nothing of what we asked for this long has its requests moved.
    public var snubTimeout: UInt64 = 30_000_000_000
    /// Most connections per torrent from one address: a host that opens more is hoarding
    /// slots (one peer needs one, two while both ends dial at once).
    public var maxConnectionsPerAddress = 4
    /// How long a connection may move no block before a newcomer can take its slot.
    public var turnoverIdle: UInt64 = 10_000_000_000
    /// A connection this old is the one kept when the same peer connects again.
    public var establishedAfter: UInt64 = 2_000_000_000
    /// With a site map: the longest a host may receive nothing before it fetches across sites
    /// pieces its site-mates own (`SiteAffinity`), in case their remote peers lack them
    /// (`siteFallback`).
    public var siteFallbackAfter: UInt64 = 3_000_000_000
    /// The silence before that fallback, in pieces at the fastest rate the torrent has
    /// downloaded, and its shortest.
    public var siteFallbackPieces = 12
    public var siteFallbackFloor: UInt64 = 250_000_000
    /// Most suggestions a peer's list keeps; older ones are dropped first.
    public var maxSuggestionsKept = 256

    public init() {}

    /// How long a site-bound host may receive nothing before it fetches across sites what
    /// its site-mates own: `siteFallbackPieces` pieces at `peakRate` (bytes per second),
    /// within `siteFallbackFloor...siteFallbackAfter`; the ceiling until a rate is measured.
    /// A fixed wait is wrong at both ends: at 1 Gbit an owner none of whose remote peers has
    /// its piece left a fifth of a 1,000-host fleet idle for the whole 3 s (starling-sim, 10
    /// sites of 100), while at 4 Mbit half a second of silence is ordinary and falling back
    /// after it sent a quarter more across the uplinks.
    public func siteFallback(pieceLength: Int, peakRate: Double) -> UInt64 {
        guard peakRate > 0 else { return siteFallbackAfter }
        let wait = Double(siteFallbackPieces * pieceLength) / peakRate * 1e9
        return UInt64(min(Double(siteFallbackAfter), max(Double(siteFallbackFloor), wait)))
    }

    /// Blocks of `blockLength` bytes to keep requested from a peer that delivers
    /// `bytesPerSecond`: `requestHorizon` of its rate, within `floor...maxPipeline` (`floor`,
    /// in 16 KiB blocks, defaults to `minPipeline`).
    public func pipelineDepth(forRate bytesPerSecond: Double, floor: Int? = nil, blockLength: Int = PieceLayout.blockSize) -> Int {
        let lower = Self.inUnits(floor ?? minPipeline, of: blockLength), upper = Self.inUnits(maxPipeline, of: blockLength)
        let blocks = (bytesPerSecond * Double(requestHorizon) / 1e9 / Double(blockLength)).rounded(.up)
        guard !blocks.isNaN else { return lower }
        return blocks >= Double(upper) ? upper : max(lower, Int(blocks))
    }

    /// A count of 16 KiB blocks as blocks of `blockLength` bytes (`PieceLayout.blockLength`):
    /// the same bytes, rounded down but at least one (none stays none).
    public static func inUnits(_ blocks: Int, of blockLength: Int) -> Int {
        blocks <= 0 || blockLength == PieceLayout.blockSize ? blocks : max(1, blocks * PieceLayout.blockSize / blockLength)
    }

    /// The client code of Starling's Azureus-style peer ids (`-SL0100-...`).
    public static let starlingPeerIDPrefix = Array("-SL".utf8)
}
