import BitTorrent
import NIOCore

/// Settings of the peer engine; defaults suit a fleet rollout on a LAN.
public struct EngineConfig: Sendable {
    /// Starling's version, for the CLI, the user agent and the build-info metric.
    public static let version = "0.1.0"

    /// Address to listen on and to dial from (so peers see this address).
    public var ip: String
    /// Listen ports are taken from this range, first free one (firewalls open just this range).
    public var portRange: ClosedRange<Int> = 6881...6889
    public var randomPort = false
    /// Host-wide caps in bytes per second; 0 = unlimited.
    public var upRate: Int64 = 0
    public var downRate: Int64 = 0
    /// Most connections per torrent.
    public var maxPeers = 50
    /// Interested peers served at once while downloading, or seeding after a download;
    /// generous, since a fleet is a trusted swarm. (A distinct-first seed serves every
    /// interested peer: see `TorrentSession.init`.)
    public var uploadSlots = 16
    /// How far ahead each peer is asked for blocks, in time at the rate it delivers. Enough
    /// to keep our downlink busy, short on purpose: every byte asked for and not yet here sits
    /// in a queue on the way (the sender's socket, its uplink, our downlink), and a fresh piece
    /// from the seed, a `have` or a request queues behind it. Asking 2 s ahead of 15-39 peers
    /// kept 0.5-1 s of data queued at every downlink of a shaped lab.
    public var requestHorizon: TimeAmount = .milliseconds(500)
    /// Request pipeline depth bounds, in 16 KiB blocks.
    public var minPipeline = 4
    public var maxPipeline = 256
    public var maxQueuedRequestsPerPeer = 512
    /// Most bytes of complete pieces waiting for their hash check and write (at least two
    /// pieces). Beyond it no new blocks are requested, so a slow disk or a starved CPU keeps
    /// memory flat instead of buffering the download in RAM.
    public var maxUncheckedBytes = 16 * 1024 * 1024
    public var uploadsInFlightPerPeer = 4
    /// Most unsent bytes the kernel holds per connection of a distinct-first seed
    /// (TCP_NOTSENT_LOWAT; 0 = the kernel's default, no limit). Upload requests then wait in
    /// our queue, not in a deep socket buffer, so the seed decides what goes out next. Other
    /// sessions keep the kernel's deep buffers: they make no such decision.
    public var unsentLowWater = 128 * 1024
    /// TCP congestion control of peer-wire connections (Linux `TCP_CONGESTION`, e.g. "cubic");
    /// nil keeps the system's default (`net.ipv4.tcp_congestion_control`).
    public var tcpCongestion: String?
    /// A seed that started complete uploads each block once before it uploads any block twice.
    public var distinctFirstSeeding = true
    /// How long a piece refused by a seed is looked for at other peers first.
    public var refusalMemory: TimeAmount = .seconds(3)
    public var snubTimeout: TimeAmount = .seconds(30)
    public var handshakeTimeout: TimeAmount = .seconds(10)
    /// Peer-wire connections are taken from and made to these networks only (empty: any),
    /// so a fleet's artifact is served only to the fleet.
    public var allowedPeers: [CIDR] = []
    /// Most connections per torrent from one address: a host that opens more is hoarding
    /// slots (one peer needs one, two while both ends dial at once).
    public var maxConnectionsPerAddress = 4
    /// Most addresses kept to dial per torrent, from every source together. A tracker that
    /// listed millions of fake peers grew a peer by 620 MiB; a real swarm needs far fewer
    /// than this, since only `maxPeers` are connected at once.
    public var maxCandidates = 1000
    /// How long a connection may move no block before a newcomer can take its slot.
    public var turnoverIdle: TimeAmount = .seconds(10)
    public var peerID: [UInt8]

    public init(ip: String, peerID: [UInt8] = EngineConfig.makePeerID()) {
        self.ip = ip
        self.peerID = peerID
    }

    /// True when `host` may connect or be dialled under `allowedPeers`.
    public func allows(host: String) -> Bool {
        guard !allowedPeers.isEmpty else { return true }
        guard let ip = IPAddress(host) else { return false }
        return allowedPeers.contains { $0.contains(ip) }
    }

    /// Blocks to keep requested from a peer that delivers `bytesPerSecond`: `requestHorizon`
    /// of its rate, within `minPipeline...maxPipeline`.
    public func pipelineDepth(forRate bytesPerSecond: Double) -> Int {
        let seconds = Double(requestHorizon.nanoseconds) / 1e9
        let blocks = (bytesPerSecond * seconds / Double(PieceLayout.blockSize)).rounded(.up)
        guard !blocks.isNaN else { return minPipeline }
        return blocks >= Double(maxPipeline) ? maxPipeline : max(minPipeline, Int(blocks))
    }

    /// The client code of Starling's Azureus-style peer ids.
    static let peerIDPrefix = Array("-SL".utf8)

    /// Azureus-style `-SL0100-` plus 12 random characters.
    public static func makePeerID() -> [UInt8] {
        let alphabet = Array("0123456789abcdefghijklmnopqrstuvwxyz".utf8)
        var rng = SystemRandomNumberGenerator()
        return peerIDPrefix + Array("0100-".utf8) + (0..<12).map { _ in alphabet.randomElement(using: &rng)! }
    }
}
