/// Which connection gives up its slot when a torrent is full and another peer connects
/// (libtorrent's peer turnover). Without it, connections that handshake and then do
/// nothing hold every slot: 60 idle connections locked a seed's 60 slots, and an honest
/// peer was refused until it gave up.
///
/// A connection is idle when no block has moved either way for `idleAfter`; the victim is
/// the idle one quiet longest, preferring one where neither side is interested. A
/// connection that is working is never evicted: the newcomer is refused instead.
public struct ConnectionTurnover: Sendable {
    public struct Candidate: Sendable, Equatable {
        public var id: Int
        /// Uptime (ns) when the connection opened, and when a block last moved on it.
        public var connectedAt: UInt64
        public var lastUsefulAt: UInt64
        /// Either side wants something of the other.
        public var interested: Bool

        public init(id: Int, connectedAt: UInt64, lastUsefulAt: UInt64, interested: Bool) {
            self.id = id
            self.connectedAt = connectedAt
            self.lastUsefulAt = lastUsefulAt
            self.interested = interested
        }
    }

    /// How long without a block before a connection may lose its slot (ns).
    public var idleAfter: UInt64

    public init(idleAfter: UInt64 = 10_000_000_000) {
        self.idleAfter = idleAfter
    }

    /// The connection to close for a newcomer, or nil when every connection is working.
    public func victim(among candidates: [Candidate], now: UInt64) -> Int? {
        let idle = candidates.filter { now &- max($0.lastUsefulAt, $0.connectedAt) >= idleAfter }
        return idle.min { a, b in
            (a.interested ? 1 : 0, max(a.lastUsefulAt, a.connectedAt), a.id)
                < (b.interested ? 1 : 0, max(b.lastUsefulAt, b.connectedAt), b.id)
        }?.id
    }
}
