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

    /// Parses `--gossip-seed` values (`IP`, `IP:PORT`, `[IPv6]:PORT`); a missing port is `defaultPort`.
    public static func parseSeeds(_ values: [String], defaultPort: UInt16 = GossipConfig.defaultPort) throws(GossipConfigError) -> [IPEndpoint] {
        try values.map { v throws(GossipConfigError) in
            guard let e = IPEndpoint(parsing: v, defaultPort: defaultPort) else { throw .badSeed(v) }
            return e
        }
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

    /// Builds a config from the command-line options of `seed`, `peer` and the node config:
    /// `--ip`, `--gossip-subnet`, `--gossip-port`, `--gossip-key-file` (else `STARLING_GOSSIP_KEY`),
    /// `--gossip-seed` (repeatable), `--gossip-insecure`. Key problems and bad values throw with
    /// a message fit for the operator; a missing key throws `.noKey` unless `insecure`.
    public static func fromOptions(ip: String, subnet: String, port: UInt16? = nil, keyFile: String? = nil,
                                   seeds: [String] = [], insecure: Bool = false, broadcast: Bool = false,
                                   environment: [String: String]? = nil) throws(GossipConfigError) -> GossipConfig {
        guard let bindIP = IPAddress(ip) else { throw .badAddress(ip) }
        let cidr: CIDR
        do { cidr = try CIDR(parsing: subnet) } catch { throw .badSubnet(subnet) }
        let key: GossipKey?
        do { key = try GossipKey.load(file: keyFile, environment: environment) } catch { throw .badKey(error.description) }
        let p = port ?? defaultPort
        let config = GossipConfig(subnet: cidr, bindIP: bindIP, port: p, seeds: try parseSeeds(seeds, defaultPort: p),
                                  key: key, insecure: insecure, broadcast: broadcast)
        try config.validate()
        return config
    }
}

public enum GossipConfigError: Error, Sendable, Hashable, CustomStringConvertible {
    case noKey
    case bindOutsideSubnet(String, String)
    case badSeed(String)
    case broadcastNeedsIPv4
    case broadcastNeedsPort
    case badAddress(String)
    case badSubnet(String)
    case badKey(String)

    public var description: String {
        switch self {
        case .noKey:
            return "gossip needs a key: --gossip-key-file FILE or \(GossipKey.environmentVariable); or run with --gossip-insecure"
        case .bindOutsideSubnet(let ip, let net): return "address \(ip) is outside the gossip subnet \(net)"
        case .badSeed(let s): return "bad --gossip-seed \(s): expected IP[:PORT]"
        case .broadcastNeedsIPv4: return "gossip broadcast discovery needs an IPv4 subnet"
        case .broadcastNeedsPort: return "gossip broadcast discovery needs a fixed --gossip-port"
        case .badAddress(let s): return "bad IP address \(s)"
        case .badSubnet(let s): return "bad --gossip-subnet \(s): expected CIDR such as 10.0.0.0/16"
        case .badKey(let why): return why
        }
    }
}
