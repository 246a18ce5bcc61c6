import BitTorrent
import Storage
import Swarm

/// What to simulate: the swarm, its links and the faults. Every host has the same link
/// (as in `../shared/swarmlab`): `rate` up and down, `latency` one way.
public struct Scenario: Sendable {
    public var hosts = 16
    public var fileBytes: Int64 = 64 << 20
    /// 0: `make-torrent`'s automatic choice for the file size.
    public var pieceLength = 0
    /// The unit the hosts request and send (`PieceLayout.blockLength`), at most a piece; 16 KiB
    /// is the wire's. 32 KiB makes the same decisions in half the requests and blocks, each
    /// charged the bytes of the 16 KiB messages it stands for, and moves the validation shapes
    /// by under 2 % (docs/simulator.md, "Transfer unit").
    public var blockLength = 32 * 1024
    /// Link capacity of every host, each direction, in bytes per second.
    public var rate: Double = 100e6 / 8
    /// One-way latency between any two hosts, nanoseconds.
    public var latency: UInt64 = 0
    /// Host-wide caps below the link (bytes per second of payload; 0 = none).
    public var upCap: Int64 = 0
    public var downCap: Int64 = 0
    /// Fraction of the peers that send corrupt blocks.
    public var liars = 0.0
    /// The origin seed leaves once this many peers have the whole file.
    public var killSeederAfterCompleteOf: Int?
    /// No tracker: hosts find each other by gossip alone, joining through the origin.
    public var trackerDead = false
    public var gossip = GossipMembershipSettings()
    /// With `trackerDead`: the hosts every host is given as gossip seeds (`--gossip-seed`),
    /// the first this many, the origin first.
    public var gossipSeeds = 1
    /// How often each host's membership is ticked, nanoseconds: `GossipService`'s default
    /// (`tickIntervalMillis`, 100 ms). Each tick walks the member table (up to 1,024), so a
    /// 10,000-host run spends most of its time there; a coarser tick is the same rules on a
    /// node configured with a longer `tickIntervalMillis`.
    public var gossipTick: UInt64 = 100_000_000
    /// Fraction of the peers that crash once, at a random moment before T_min, and start
    /// again `churnDowntime` later with the pieces they had verified.
    public var churn = 0.0
    public var churnDowntime: UInt64 = 5_000_000_000
    /// Sites (racks, data centres): host i is in site i * sites / hosts, as in swarmlab; traffic
    /// between sites crosses the sending site's uplink and the receiving site's, each
    /// `siteRate` bytes per second each way, adding `siteLatency` one way.
    public var sites = 1
    public var siteRate: Double = .infinity
    public var siteLatency: UInt64 = 0
    /// Hosts are given the site map (`--site`): each engine knows which peers share its site
    /// and keeps what crosses the uplink to one copy (`SiteAffinity`), and the tracker hands
    /// out mostly peers of the announcing host's own site.
    public var siteMap = false
    public var rules = TorrentRules()
    public var seed: UInt64 = 1
    /// Step of the network model, nanoseconds: bytes move in slices of this length.
    public var step: UInt64 = 5_000_000
    /// Virtual time after which the run stops, complete or not.
    public var timeLimit: UInt64 = 3_600_000_000_000
    /// Tracker announce interval, as Starling's tracker hands out.
    public var announceInterval: UInt64 = 15_000_000_000

    public init() {}

    var effectivePieceLength: Int {
        pieceLength > 0 ? pieceLength : TorrentBuilder.automaticPieceLength(totalLength: fileBytes)
    }

    var effectiveBlockLength: Int { min(max(blockLength, PieceLayout.blockSize), effectivePieceLength) }

    public func site(of host: Int) -> Int { sites > 1 ? host * sites / hosts : 0 }

    /// Kumar & Ross (2006): max(F/u_s, F/d_min, n F / (u_s + sum u_i)), with every link alike,
    /// and with sites F over a site's uplink (every other site needs the file once through
    /// it): the bound `../shared/swarmlab` reports.
    public var tMin: Double {
        let f = Double(fileBytes), n = Double(hosts - 1)
        let hostBound = max(f / rate, n * f / (rate + n * rate))
        return sites > 1 ? max(hostBound, f / siteRate) : hostBound
    }
}
