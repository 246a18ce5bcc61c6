import Values
/// Decides which interested peers we upload to.
///
/// Up to `uploadSlots` interested peers are unchoked: the ones that serve us best while we
/// download (tit-for-tat), the ones we serve fastest once we seed (spreads pieces quickly),
/// plus one optimistic slot. A fleet rollout is a trusted swarm, so the default slot count
/// is generous: every interested peer of a small swarm is served at once.
///
/// The optimistic slot goes to a peer among those with the fewest pieces. Tit-for-tat
/// starves a peer that fell behind: it has nothing the others lack, so nobody downloads from
/// it and everybody chokes it. In a rollout the slowest host is the makespan, so every
/// uploader lends that peer its spare slot until it has caught up.
public struct Choker: Sendable {
    public struct Candidate: Sendable {
        public var id: Int
        public var interested: Bool
        /// Bytes per second they send us (while downloading) or we send them (while seeding).
        public var rate: Double
        /// Pieces they have.
        public var pieces: Int
        public init(id: Int, interested: Bool, rate: Double, pieces: Int = 0) {
            self.id = id
            self.interested = interested
            self.rate = rate
            self.pieces = pieces
        }
    }

    public var uploadSlots: Int
    /// Nanoseconds between optimistic-slot rotations.
    public var optimisticPeriod: UInt64
    public private(set) var optimistic: Int?
    private var lastRotation: UInt64?

    public init(uploadSlots: Int = Defaults.uploadSlots, optimisticPeriod: UInt64 = 30_000_000_000) {
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
        let rest = ranked.dropFirst(uploadSlots - 1)
        // Behind: within 5 % (and one piece) of the fewest pieces, so peers that are level do
        // not take turns on every rechoke.
        let fewest = rest.map(\.pieces).min() ?? 0
        let behind = rest.filter { $0.pieces <= fewest + max(1, fewest / 20) }.map(\.id)
        let due = lastRotation.map { now >= $0 + optimisticPeriod } ?? true
        if due || optimistic.map({ !behind.contains($0) }) ?? true {
            // Rotate to another peer: a fresh draw from all of `behind` would often keep the same one.
            let others = behind.filter { $0 != optimistic }
            optimistic = (others.isEmpty ? behind : others).randomElement(using: &random)
            lastRotation = now
        }
        if let o = optimistic { chosen.insert(o) }
        return chosen
    }
}
