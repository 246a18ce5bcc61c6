import BitTorrent
import NIOCore
import Swarm
import Values

/// Settings of the peer engine; defaults suit a fleet rollout on a LAN.
public struct EngineConfig: Sendable {
    /// Starling's version, for the user agent and the build-info metric (see `BuildStamp`).
    public static let version = BuildStamp.version

    /// Address to dial from and announce (so peers see this address); also the one to
    /// listen on unless `listenIP` says otherwise.
    public var ip: String
    /// Address to listen on when it is not `ip`: "0.0.0.0" or "::" when `--ip` was left out.
    public var listenIP: String?
    /// Listen ports are taken from this range, first free one (firewalls open just this range).
    public var portRange: ClosedRange<Int> = Defaults.portRange
    public var randomPort = false
    /// Host-wide caps in bytes per second; 0 = unlimited.
    public var upRate: Int64 = 0
    public var downRate: Int64 = 0
    /// The slew limit on both directions (`--max-change`); nil: caps only.
    public var maxChange: MaxChange?
    /// The rules of every torrent: connections, pipelines, choking, serving.
    public var rules = TorrentRules()
    /// TCP congestion control of peer-wire connections (Linux `TCP_CONGESTION`) the operator
    /// chose; a kernel that refuses it stops the start. Nil: `Defaults.tcpCongestion`, or the
    /// host's algorithm (`net.ipv4.tcp_congestion_control`) where the kernel refuses that.
    public var tcpCongestion: String?
    public var handshakeTimeout: TimeAmount = .seconds(10)
    /// Peer-wire connections are taken from and made to these networks only (empty: any),
    /// so a fleet's artifact is served only to the fleet.
    public var allowedPeers: [CIDR] = []
    /// Most addresses kept to dial per torrent, from every source together: a tracker that
    /// lists millions of fake peers must not grow the process, and a real swarm needs far
    /// fewer, since only `rules.maxPeers` are connected at once.
    public var maxCandidates = 1000
    /// Sites by address block (`--site`): peers of our own site are told apart from the rest,
    /// so what crosses the site's uplink stays about one copy. Empty: no sites.
    public var sites = SiteMap()
    public var peerID: [UInt8]

    public init(ip: String, peerID: [UInt8] = EngineConfig.makePeerID()) {
        self.ip = ip
        self.peerID = peerID
    }

    /// Whether `host` shares our site; nil without a site map or when we are in no site.
    public func sameSite(_ host: String) -> Bool? {
        guard !sites.isEmpty, let own = IPAddress(ip), let peer = IPAddress(host) else { return nil }
        return sites.sameSite(own, peer)
    }

    /// True when `host` may connect or be dialled under `allowedPeers`.
    public func allows(host: String) -> Bool {
        guard !allowedPeers.isEmpty else { return true }
        guard let ip = IPAddress(host) else { return false }
        return allowedPeers.contains { $0.contains(ip) }
    }

    /// Azureus-style `-SL0100-` plus 12 random characters.
    public static func makePeerID() -> [UInt8] {
        let alphabet = Array("0123456789abcdefghijklmnopqrstuvwxyz".utf8)
        var rng = SystemRandomNumberGenerator()
        return TorrentRules.starlingPeerIDPrefix + Array("0100-".utf8) + (0..<12).map { _ in alphabet.randomElement(using: &rng)! }
    }
}
