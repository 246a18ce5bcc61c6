/// The connected peers of a `TorrentState`, by id.
///
/// Reads reach the stored `PeerState` in place: a `Dictionary`'s getter (and a yielding
/// accessor over an `Array`) copies the whole value, so every `peers[id]!.flag` read cost a
/// dozen retains and releases, a tenth of a simulated swarm's time. A peer's id names its
/// slot (the low bits) and the slot's generation (the rest): a lookup is an index, not a
/// hash, and no id is ever used twice (the picker and the blame ledger remember departed
/// peers by id). Iteration follows slot order, which depends only on the order of arrivals
/// and departures.
///
/// The slots live in one class instance that values share until a write; every write first
/// makes its own copy unless it is the only owner (copy on write, as `Array`'s buffer). Not
/// `Sendable`: a torrent's state belongs to the one loop (or simulated host) that drives it.
public struct PeerTable: Sequence {
    private static let slotBits = 20
    private static let slotMask = (1 << slotBits) - 1

    private final class Storage {
        /// Slot 0 stays empty: a read of an unknown id points at it.
        var base: UnsafeMutablePointer<PeerState?>
        var capacity: Int
        var used = 1

        init(capacity: Int) {
            self.capacity = capacity
            base = .allocate(capacity: capacity)
            base.initialize(to: nil)
        }

        func copy(capacity: Int) -> Storage {
            let new = Storage(capacity: capacity)
            (new.base + 1).initialize(from: base + 1, count: used - 1)
            new.used = used
            return new
        }

        deinit {
            base.deinitialize(count: used)
            base.deallocate()
        }
    }

    private var storage = Storage(capacity: 8)
    private var generation: [Int] = [0]
    private var free: [Int] = []
    public private(set) var count = 0

    public init() {}

    public var isEmpty: Bool { count == 0 }

    /// The id the next peer stored must take. A slot's generation is even while a peer
    /// holds it and odd while it is free, so an id (always even) matches only a live peer.
    public var nextID: Int {
        guard let s = free.last else { return storage.used }
        return (generation[s] + 1) << Self.slotBits | s
    }

    /// The slot `id` occupies, or 0.
    private func slot(of id: Int) -> Int {
        let s = id & Self.slotMask
        guard s > 0, s < storage.used, generation[s] == id >> Self.slotBits else { return 0 }
        return s
    }

    public func contains(_ id: Int) -> Bool { slot(of: id) != 0 }

    /// The slot of the peer `id` names while it is here: a small index, one per peer present
    /// (reused after it leaves), for a shell's table of its own beside this one.
    public static func slot(of id: Int) -> Int { id & slotMask }

    /// Read in place; setting nil removes the peer; a new peer is stored under `nextID` only.
    public subscript(id: Int) -> PeerState? {
        unsafeAddress { UnsafePointer(storage.base + slot(of: id)) }
        _modify {
            // An unknown id gets the empty slot 0 to write into, so the accessor's frame
            // holds no `PeerState` of its own: one that large is allocated on the heap on
            // every access (a third of a simulated swarm's mallocs).
            let s = slot(of: id)
            makeUnique(growing: false)
            yield &storage.base[s]
            if s != 0 {
                if storage.base[s] == nil { release(s) }
            } else if storage.base[0] != nil {
                let added = storage.base[0]!
                storage.base[0] = nil
                precondition(id == nextID, "a new peer is stored under PeerTable.nextID")
                insert(added)
            }
        }
    }

    @discardableResult
    public mutating func removeValue(forKey id: Int) -> PeerState? {
        let s = slot(of: id)
        guard s != 0 else { return nil }
        makeUnique(growing: false)
        let peer = storage.base[s]
        storage.base[s] = nil
        release(s)
        return peer
    }

    private mutating func insert(_ peer: PeerState) {
        if let s = free.popLast() {
            makeUnique(growing: false)
            storage.base[s] = peer
            generation[s] += 1
        } else {
            makeUnique(growing: storage.used == storage.capacity)
            (storage.base + storage.used).initialize(to: peer)
            storage.used += 1
            if generation.count < storage.used { generation.append(0) }
        }
        count += 1
    }

    private mutating func release(_ s: Int) {
        generation[s] += 1
        free.append(s)
        count -= 1
    }

    private mutating func makeUnique(growing: Bool) {
        if growing {
            storage = storage.copy(capacity: storage.capacity * 2)
        } else if !isKnownUniquelyReferenced(&storage) {
            storage = storage.copy(capacity: storage.capacity)
        }
    }

    // Queries that read the stored peers where they are, instead of the copies the
    // sequence's iterator makes.

    // A slot is taken while its generation is even, and its peer's id follows from the
    // generation and the slot: neither reads the stored peer, whose nil check reads a field
    // of its own (a cache miss per peer in a fleet of thousands of simulated hosts).
    private func occupied() -> some Sequence<Int> {
        let generation = generation
        return (1..<storage.used).lazy.filter { generation[$0] & 1 == 0 }
    }

    public var keys: [Int] {
        let generation = generation
        return occupied().map { generation[$0] << Self.slotBits | $0 }
    }
    public var values: [PeerState] { occupied().map { storage.base[$0]! } }
    public func contains(where test: (PeerState) -> Bool) -> Bool { occupied().contains { test(storage.base[$0]!) } }
    public func allSatisfy(_ test: (PeerState) -> Bool) -> Bool { !contains { !test($0) } }
    public func count(where test: (PeerState) -> Bool) -> Int { occupied().count { test(storage.base[$0]!) } }
    public func first(where test: (PeerState) -> Bool) -> PeerState? {
        occupied().first { test(storage.base[$0]!) }.map { storage.base[$0]! }
    }
    public func map<T>(_ transform: (PeerState) -> T) -> [T] { occupied().map { transform(storage.base[$0]!) } }
    public func compactMap<T>(_ transform: (PeerState) -> T?) -> [T] { occupied().compactMap { transform(storage.base[$0]!) } }
    public func forEach(_ body: (PeerState) -> Void) { for s in occupied() { body(storage.base[s]!) } }
    public func ids(where test: (PeerState) -> Bool) -> [Int] { occupied().filter { test(storage.base[$0]!) }.map { storage.base[$0]!.id } }

    public func makeIterator() -> some IteratorProtocol<(key: Int, value: PeerState)> {
        values.map { (key: $0.id, value: $0) }.makeIterator()
    }
}
