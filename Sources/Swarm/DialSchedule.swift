import BitTorrent

/// Which known addresses of one torrent to dial, and when: each failure doubles the wait
/// before the next attempt (2 s up to 60 s), a connection that worked and closed resets it.
/// Pure state; time is injected nanoseconds.
public struct DialSchedule: Sendable {
    struct Entry: Sendable {
        var failures = 0
        var nextAttempt: UInt64 = 0
    }

    /// Most addresses kept, from every source together: a tracker that lists millions of
    /// fake peers must not grow the process (`EngineConfig.maxCandidates`).
    public let capacity: Int
    private var known: [PeerAddress: Entry] = [:]
    private var dialling: Set<PeerAddress> = []

    public init(capacity: Int) { self.capacity = capacity }

    public var count: Int { known.count }
    /// Dials started and not yet answered.
    public var inProgress: Int { dialling.count }

    /// Learns addresses; returns how many were dropped because the list is full (known ones stay).
    public mutating func add(_ addresses: [PeerAddress]) -> Int {
        var dropped = 0
        for a in addresses where known[a] == nil {
            guard known.count < capacity else { dropped += 1; continue }
            known[a] = Entry()
        }
        return dropped
    }

    /// Up to `budget` addresses to dial now, not yet dialling and not `skipped`; each is
    /// marked as dialling until `dialEnded`.
    public mutating func due(now: UInt64, budget: Int, skipping skipped: (PeerAddress) -> Bool) -> [PeerAddress] {
        var out: [PeerAddress] = []
        for (address, entry) in known where out.count < budget {
            guard entry.nextAttempt <= now, !dialling.contains(address), !skipped(address) else { continue }
            dialling.insert(address)
            known[address]!.nextAttempt = now + UInt64(min(60, 2 << min(entry.failures, 5))) * 1_000_000_000
            out.append(address)
        }
        return out
    }

    public mutating func dialEnded(_ address: PeerAddress, connected: Bool) {
        dialling.remove(address)
        if !connected { known[address]?.failures += 1 }
    }

    /// A connection to `address` ran and closed: the next dial waits no longer than the first.
    public mutating func connectionClosed(_ address: PeerAddress) {
        known[address]?.failures = 0
    }
}
