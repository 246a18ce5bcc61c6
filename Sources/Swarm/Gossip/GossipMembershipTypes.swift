import BitTorrent
import Values

/// Both clocks the membership needs, passed in by the caller so tests can drive time.
public struct GossipTime: Sendable, Hashable {
    /// A monotonic clock in nanoseconds (timers, suspicion, expiry).
    public var monotonicNanos: UInt64
    /// Wall-clock milliseconds since the Unix epoch (message timestamps, the replay window).
    public var unixMillis: UInt64

    public init(monotonicNanos: UInt64, unixMillis: UInt64) {
        self.monotonicNanos = monotonicNanos
        self.unixMillis = unixMillis
    }
}

/// Timers and limits of the membership protocol. Durations are nanoseconds.
public struct GossipMembershipSettings: Sendable, Hashable {
    /// One gossip round: ping `fanout` random members.
    public var gossipInterval: UInt64 = 1_000_000_000
    public var fanout = 3
    /// A member not heard of (first- or second-hand) for this long becomes suspect, and we
    /// ping it directly.
    public var suspectAfter: UInt64 = 3_000_000_000
    /// A suspect that answers none of `probeAttempts` pings, `probeTimeout` apart, is declared
    /// dead by us, and the verdict is gossiped so others drop it too.
    public var probeTimeout: UInt64 = 1_000_000_000
    public var probeAttempts = 2
    /// How long a node keeps gossiping a death verdict it made or accepted.
    public var verdictTTL: UInt64 = 3_000_000_000
    /// Verdicts per message at most (they go first; the rest of the sample is members).
    public var maxVerdictsPerMessage = 8
    /// Hard limit: a member silent this long is removed even if no probe could be sent. The
    /// worst-case "forgotten" bound.
    public var deadAfter: UInt64 = 8_000_000_000
    /// Lengthen both timeouts in large clusters, where each member's news reaches a node less
    /// often (see `GossipMembership.effectiveDeadAfter`); off, large clusters see false deaths.
    public var scaleTimeoutsWithSize = true
    /// How long a removed member's id, incarnation and last sequence are remembered, so stale
    /// hearsay cannot resurrect it and its old datagrams cannot be replayed. Must exceed the replay window.
    public var tombstoneTTL: UInt64 = 60_000_000_000
    /// While the table is empty: ping every seed (and broadcast) this often.
    public var joinInterval: UInt64 = 2_000_000_000
    /// Even with members, ping seeds that are not members this often (heals partitions).
    public var rejoinInterval: UInt64 = 10_000_000_000
    /// Outgoing datagrams per second (token bucket) and the bucket's burst: at most 0.56
    /// Mbit/s, and about 6 datagrams a second once the table is settled. A fleet joins through
    /// its seeds at once, and a joiner finds its first peer only when some member answers or
    /// probes it: at 20 a second with a burst of 40, the last of 120 nodes joining through one
    /// seed waited 2.3 s, and of 1,000 (starling-sim) 9 s; now 0.1 s and 6.5 s.
    public var sendRate: Double = 50
    public var sendBurst: Double = 200
    public var maxMembers = 1024
    public var maxTombstones = 1024
    /// Members probed directly after being learned second-hand (to learn their torrents); bounded queue.
    public var maxPendingProbes = 256
    /// Accept timestamps within this many milliseconds of our wall clock, either way.
    public var replayWindowMillis: UInt64 = 30_000
    /// Added to every second-hand age, so hearsay cycling between nodes only ever grows older
    /// and cannot keep a dead member alive (it outweighs LAN transit time).
    public var hopPenaltyMillis: UInt64 = 50
    /// Random jitter of each round, as a fraction of `gossipInterval`, so nodes started together desynchronise.
    public var jitter: Double = 0.1

    public init() {}
}

/// A member as the engine sees it.
public struct GossipMember: Sendable, Hashable {
    public var id: GossipMemberID
    /// Where its gossip datagrams come from and where we send ours.
    public var gossipEndpoint: IPEndpoint
    /// Its peer-wire address and TCP port (port 0: serves nothing).
    public var peerAddress: IPAddress
    public var peerPort: UInt16
    public var status: GossipMemberStatus
    public var incarnation: UInt32
    /// Torrents it told us first-hand it serves (empty until it has spoken to us directly).
    public var torrents: [GossipTorrent]
}

/// A candidate peer for one torrent.
public struct GossipPeer: Sendable, Hashable {
    public var address: IPAddress
    public var port: UInt16
    public var complete: Bool

    public init(address: IPAddress, port: UInt16, complete: Bool) {
        self.address = address
        self.port = port
        self.complete = complete
    }
}

/// What the membership asks its runtime to do, or tells it happened.
public enum GossipDirective: Sendable, Hashable {
    /// Seal and send this message to this endpoint.
    case send(GossipMessage, to: IPEndpoint)
    /// Seal and send this message to the scope's broadcast address on the gossip port.
    case broadcast(GossipMessage)
    case memberAdded(GossipMember)
    case memberUpdated(GossipMember)
    case memberRemoved(GossipMember)
    /// A member serves `infoHash` at `peer` (new, or its address or completeness changed).
    case peerDiscovered(InfoHash, GossipPeer)
}

/// What became of a received message.
public enum GossipReceiveResult: String, Sendable, Hashable {
    case accepted
    /// Its source or claimed peer address lies outside the scope.
    case outOfScope = "out_of_scope"
    /// Its sequence number is not above the last one seen from that sender.
    case replayed
    /// Its timestamp is outside the replay window.
    case stale
    /// Our own message (broadcast echo).
    case fromSelf = "self"
}

/// Counters a runtime may export.
public struct GossipMembershipStats: Sendable, Hashable {
    public init() {}

    /// Sample entries dropped because their address is outside the scope.
    public var outOfScopeEntries = 0
    /// Sample entries dropped for a zero port or unspecified address.
    public var malformedEntries = 0
    /// Members learned second-hand and not kept because the table was full.
    public var tableFull = 0
    /// Members dropped to make room for a new one that spoke to us first-hand.
    public var evicted = 0
    /// Sends skipped because the rate cap was reached.
    public var rateLimited = 0
    /// Times we raised our incarnation to refute a suspicion.
    public var refutations = 0
    /// Seeds ignored at start because they lie outside the scope.
    public var seedsOutOfScope = 0
    /// Torrents beyond `GossipMessage.maxTorrents` left out of our announcements.
    public var torrentsTruncated = 0
    /// Death verdicts we made after unanswered probes, and gossiped ones we accepted.
    public var verdictsMade = 0
    public var verdictsAccepted = 0
}

/// The outcome of `receive`: how the message was judged, and what to do.
public struct GossipReceiveOutcome: Sendable {
    public var result: GossipReceiveResult
    public var directives: [GossipDirective]
}
