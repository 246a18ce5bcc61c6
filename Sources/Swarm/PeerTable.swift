/// The connected peers of a `TorrentState`, by id.
///
/// A `Dictionary`'s getter copies the whole value, so every `peers[id]!.flag` read of a
/// `PeerState` (a dozen arrays and sets) cost a dozen retains and releases; here reads and
/// writes reach the stored value in place. Slots of departed peers are reused, and iteration
/// follows slot order, which depends only on the order of arrivals and departures.
public struct PeerTable: Sendable, Sequence {
    private var slots: ContiguousArray<PeerState?> = []
    private var slotOf: [Int: Int] = [:]
    private var free: [Int] = []

    public init() {}

    public var count: Int { slotOf.count }
    public var isEmpty: Bool { slotOf.isEmpty }
    public var keys: [Int] { slots.compactMap { $0?.id } }
    public var values: [PeerState] { slots.compactMap { $0 } }

    public func contains(_ id: Int) -> Bool { slotOf[id] != nil }

    // Queries that read the stored peers where they are, instead of the copies the
    // sequence's iterator makes.
    public func contains(where test: (PeerState) -> Bool) -> Bool { slots.contains { $0 != nil && test($0!) } }
    public func allSatisfy(_ test: (PeerState) -> Bool) -> Bool { !contains { !test($0) } }
    public func count(where test: (PeerState) -> Bool) -> Int { slots.count { $0 != nil && test($0!) } }
    public func first(where test: (PeerState) -> Bool) -> PeerState? { slots.first { $0 != nil && test($0!) } ?? nil }
    public func map<T>(_ transform: (PeerState) -> T) -> [T] { slots.compactMap { $0 != nil ? transform($0!) : nil } }
    public func compactMap<T>(_ transform: (PeerState) -> T?) -> [T] { slots.compactMap { $0 != nil ? transform($0!) : nil } }
    public func forEach(_ body: (PeerState) -> Void) { for s in slots.indices where slots[s] != nil { body(slots[s]!) } }
    public func ids(where test: (PeerState) -> Bool) -> [Int] { slots.compactMap { $0 != nil && test($0!) ? $0!.id : nil } }

    public subscript(id: Int) -> PeerState? {
        _read {
            if let s = slotOf[id] { yield slots[s] } else { yield nil }
        }
        _modify {
            if let s = slotOf[id] {
                yield &slots[s]
                if slots[s] == nil { release(id, slot: s) }
            } else {
                var added: PeerState?
                yield &added
                if let added { insert(added, as: id) }
            }
        }
    }

    @discardableResult
    public mutating func removeValue(forKey id: Int) -> PeerState? {
        guard let s = slotOf[id] else { return nil }
        let peer = slots[s]
        slots[s] = nil
        release(id, slot: s)
        return peer
    }

    private mutating func insert(_ peer: PeerState, as id: Int) {
        let s = free.popLast() ?? slots.count
        if s == slots.count { slots.append(peer) } else { slots[s] = peer }
        slotOf[id] = s
    }

    private mutating func release(_ id: Int, slot: Int) {
        slotOf[id] = nil
        free.append(slot)
    }

    public func makeIterator() -> some IteratorProtocol<(key: Int, value: PeerState)> {
        slots.lazy.compactMap { $0.map { (key: $0.id, value: $0) } }.makeIterator()
    }
}
