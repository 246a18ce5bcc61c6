import BitTorrent
import Swarm
import Values

/// Everything `GossipService` needs; built from `--gossip-*` flags or the node config.
public struct GossipConfig: Sendable {
    public static let defaultPort = Defaults.gossipPort

    /// `--gossip-subnet`: nothing outside it is learned, answered or contacted.
    public var subnet: CIDR
    /// The node's own address (`--ip`); must lie in `subnet`.
    public var bindIP: IPAddress
    /// `--gossip-port`; 0 picks an ephemeral port (tests).
    public var port: UInt16
    /// `--gossip-seed IP[:PORT]`, repeatable.
    public var seeds: [IPEndpoint]
    /// The shared key; nil runs unauthenticated only with `insecure`.
    public var key: GossipKey?
    /// `--gossip-insecure`: allow running without a key (a well-known key is used instead).
    public var insecure: Bool
    /// Discover the first members by IPv4 broadcast to the subnet. Binds the wildcard address so
    /// broadcasts are received; the advertised address stays `bindIP`.
    public var broadcast: Bool
    /// Peer-wire address to advertise if not `bindIP`.
    public var peerAddress: IPAddress?
    /// How often the state machine is ticked (it decides itself when a round is due).
    public var tickIntervalMillis: Int64
    public var membership: GossipMembershipSettings

    public init(subnet: CIDR, bindIP: IPAddress, port: UInt16 = GossipConfig.defaultPort, seeds: [IPEndpoint] = [],
                key: GossipKey?, insecure: Bool = false, broadcast: Bool = false, peerAddress: IPAddress? = nil,
                tickIntervalMillis: Int64 = 100, membership: GossipMembershipSettings = GossipMembershipSettings()) {
        self.subnet = subnet
        self.bindIP = bindIP
        self.port = port
        self.seeds = seeds
        self.key = key
        self.insecure = insecure
        self.broadcast = broadcast
        self.peerAddress = peerAddress
        self.tickIntervalMillis = tickIntervalMillis
        self.membership = membership
    }

    /// The key to use, or why gossip must not start.
    func effectiveKey() throws(GossipConfigError) -> GossipKey {
        if let key { return key }
        guard insecure else { throw .noKey }
        return .insecure
    }

    func validate() throws(GossipConfigError) {
        _ = try effectiveKey()
        guard subnet.contains(bindIP) else { throw .bindOutsideSubnet(bindIP.description, subnet.description) }
        if let p = peerAddress, !subnet.contains(p) { throw .bindOutsideSubnet(p.description, subnet.description) }
        if broadcast, !subnet.isIPv4 { throw .broadcastNeedsIPv4 }
        // Broadcasts go to the configured port on every host, so it cannot be an ephemeral one.
        if broadcast, port == 0 { throw .broadcastNeedsPort }
    }
}

public enum GossipConfigError: Error, Sendable, Hashable, CustomStringConvertible {
    case noKey
    case bindOutsideSubnet(String, String)
    case broadcastNeedsIPv4
    case broadcastNeedsPort

    public var description: String {
        switch self {
        case .noKey:
            return "gossip needs a key: --gossip-key-file FILE or \(GossipKey.environmentVariable); or run with --gossip-insecure"
        case .bindOutsideSubnet(let ip, let net): return "address \(ip) is outside the gossip subnet \(net)"
        case .broadcastNeedsIPv4: return "gossip broadcast discovery needs an IPv4 subnet"
        case .broadcastNeedsPort: return "gossip broadcast discovery needs a fixed --gossip-port"
        }
    }
}
