/// Decides which interested peers we upload to.
///
/// Up to `uploadSlots` interested peers are unchoked: the ones that serve us best while we
/// download (tit-for-tat), the ones we serve fastest once we seed (spreads pieces quickly),
/// plus one optimistic slot that rotates so newcomers get their first pieces. A fleet
/// rollout is a trusted swarm, so the default slot count is generous: every interested
/// peer of a small swarm is served at once.
public struct Choker: Sendable {
    public struct Candidate: Sendable {
        public var id: Int
        public var interested: Bool
        /// Bytes per second they send us (while downloading) or we send them (while seeding).
        public var rate: Double
        public init(id: Int, interested: Bool, rate: Double) {
            self.id = id
            self.interested = interested
            self.rate = rate
        }
    }

    public var uploadSlots: Int
    /// Nanoseconds between optimistic-slot rotations.
    public var optimisticPeriod: UInt64
    public private(set) var optimistic: Int?
    private var lastRotation: UInt64?

    public init(uploadSlots: Int = 16, optimisticPeriod: UInt64 = 30_000_000_000) {
        self.uploadSlots = max(1, uploadSlots)
        self.optimisticPeriod = optimisticPeriod
    }

    /// The peers to unchoke now. `random` picks the optimistic peer.
    public mutating func unchoked(_ candidates: [Candidate], now: UInt64,
                                  random: inout some RandomNumberGenerator) -> Set<Int> {
        let interested = candidates.filter(\.interested)
        if interested.count <= uploadSlots { return Set(interested.map(\.id)) }
        let ranked = interested.sorted { ($0.rate, $1.id) > ($1.rate, $0.id) }
        var chosen = Set(ranked.prefix(uploadSlots - 1).map(\.id))
        let rest = ranked.dropFirst(uploadSlots - 1).map(\.id)
        let due = lastRotation.map { now >= $0 + optimisticPeriod } ?? true
        if due || optimistic.map({ !rest.contains($0) }) ?? true {
            // Rotate to another peer: a fresh draw from all of `rest` would often keep the same one.
            let others = rest.filter { $0 != optimistic }
            optimistic = (others.isEmpty ? rest : others).randomElement(using: &random)
            lastRotation = now
        }
        if let o = optimistic { chosen.insert(o) }
        return chosen
    }
}
