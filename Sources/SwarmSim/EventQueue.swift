/// Events in time order; equal times in the order they were scheduled.
struct EventQueue {
    private var heap: [(time: UInt64, seq: UInt64, event: Fleet.Event)] = []
    private var seq: UInt64 = 0

    mutating func push(_ e: Fleet.Event, at t: UInt64) {
        seq += 1
        heap.append((t, seq, e))
        var i = heap.count - 1
        while i > 0 {
            let p = (i - 1) / 2
            guard less(i, p) else { break }
            heap.swapAt(i, p)
            i = p
        }
    }

    func peek() -> (UInt64, Fleet.Event)? { heap.first.map { ($0.time, $0.event) } }

    mutating func pop() -> Fleet.Event? {
        guard !heap.isEmpty else { return nil }
        heap.swapAt(0, heap.count - 1)
        let top = heap.removeLast()
        var i = 0
        while true {
            let l = 2 * i + 1, r = l + 1
            var m = i
            if l < heap.count, less(l, m) { m = l }
            if r < heap.count, less(r, m) { m = r }
            guard m != i else { break }
            heap.swapAt(i, m)
            i = m
        }
        return top.event
    }

    private func less(_ a: Int, _ b: Int) -> Bool { (heap[a].time, heap[a].seq) < (heap[b].time, heap[b].seq) }
}

/// Items of one step grouped by host (a stable counting sort): hosts in the order of their
/// first item, each host's items in their own order. Kept between steps so that a step
/// allocates nothing.
struct HostGroups {
    /// The hosts that have items, in the order of their first item.
    private(set) var order: [Int] = []
    /// Indices of the items, grouped by host (`range(of:)`).
    private(set) var index: [Int] = []
    private var count: [Int] = []
    private var start: [Int] = []
    private var cursor: [Int] = []

    /// Groups the items whose hosts are `keys`; `reset` must follow before the next call.
    mutating func group(_ keys: [Int], hosts: Int) {
        if count.count < hosts {
            count = Array(repeating: 0, count: hosts)
            start = count
            cursor = count
        }
        for h in keys {
            if count[h] == 0 { order.append(h) }
            count[h] += 1
        }
        var next = 0
        for h in order {
            start[h] = next
            cursor[h] = next
            next += count[h]
        }
        index.removeAll(keepingCapacity: true)
        index.append(contentsOf: repeatElement(0, count: keys.count))
        for (k, h) in keys.enumerated() {
            index[cursor[h]] = k
            cursor[h] += 1
        }
    }

    func range(of h: Int) -> Range<Int> { start[h]..<(start[h] + count[h]) }

    mutating func reset() {
        for h in order { count[h] = 0 }
        order.removeAll(keepingCapacity: true)
    }
}
