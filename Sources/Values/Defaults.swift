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
    /// TCP congestion control of peer-wire connections. A swarm fills every host's uplink,
    /// so the ACKs of a host's downloads queue behind its uploads. BBR (v1) takes that queue
    /// as part of the path's minimum RTT on connections opened while it stood, and then paces
    /// them at a fraction of what connections opened earlier, with a near-zero minimum, push
    /// through the same queues: the busiest uploader downloads slowest and finishes last.
    /// Cubic's share of a queue does not depend on when the connection opened
    /// (docs/benchmarks.md, "Congestion control and the piece size").
    public static let tcpCongestion = "cubic"
    /// Announce interval a tracker hands out, seconds.
    public static let trackerInterval = 15
}
