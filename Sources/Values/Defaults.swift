/// Every default an operator can override, written once: the node schema, the command
/// line's help and the engine all read them here.
public enum Defaults {
    /// Peer-wire listen ports (murder's random 10000-60000 is what firewalls block).
    public static let portRange = 6881...6889
    /// Gossip's UDP port: clear of BEP 14 local service discovery (6771) and of `portRange`.
    public static let gossipPort: UInt16 = 6890
    /// `/metrics`, `/healthz` and `/status` of a node (`http.metrics_listen`).
    public static let metricsPort: UInt16 = 9460
    /// Admin actions of a node, on loopback unless a token is configured.
    public static let adminListen = IPEndpoint(ip: .loopbackIPv4, port: 9461)
    /// Most connections per torrent.
    public static let maxPeers = 50
    /// Interested peers uploaded to at once.
    public static let uploadSlots = 16
    /// Announce interval a tracker hands out, seconds.
    public static let trackerInterval = 15
}
