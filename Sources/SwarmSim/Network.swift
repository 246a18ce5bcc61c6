import BitTorrent
import Swarm

// The network model of docs/simulator.md: links as FIFOs, the per-step water-filling, and
// items in flight. `Simulation` drives it once per step.

extension Fleet {
    /// Unsent bytes the kernel takes per connection of a host that is not the origin before a
    /// write waits: a deep default buffer. The origin's are `TorrentRules.seedUnsentBytes`.
    static let peerKernelBuffer = 1 << 20

    /// Wire bytes per payload byte: Ethernet, IP and TCP headers of full 1514-byte frames.
    static let frameOverhead = 1514.0 / 1448.0

    /// One direction of a connection: a FIFO of messages and blocks.
    struct Link {
        var from = 0, to = 0
        /// The sender's id for the receiver in its rules, and the receiver's for the sender.
        var idAtFrom = -1, idAtTo = -1
        var open = false
        var active = false
        var items: [Item] = []
        var head = 0
        var headSent = 0
        var queued = 0
        var credit = 0.0
        /// First item whose `blockSent` is not yet reported (the kernel has not taken it), and
        /// the bytes of the items from `head` up to it.
        var firstUnreported = 0
        var taken = 0
        /// Haves written and not yet flushed (`TorrentRules.haveFlushDelay`), the last `held`
        /// items: they may go with the next item for this peer, or at the sender's flush timer.
        /// In the queue itself, where a list of their own cost an allocation per have.
        var held = 0
        var heldBytes = 0
    }

    /// A message or a block on a link, as plain integers: the links and the arrival queues
    /// hold millions of them, and a `TorrentState.Message` (an enum with an array payload) is
    /// three times the size and counts references on every copy.
    struct Item {
        enum Kind: UInt8 {
            case choke, unchoke, interested, notInterested, have, bitfield, request, block, cancel, suggest
            case haveAll, haveNone, reject, allowedFast
        }

        var bytes: Int
        var kind: Kind
        var corrupt = false
        /// The piece (for a bitfield, its bytes' key in `Fleet.bitfields`), a block's offset and length.
        var piece: Int32 = 0, begin: Int32 = 0, length: Int32 = 0

        /// Any message but a bitfield, which `Fleet.perform` packs with its bytes set aside.
        init(bytes: Int, message m: TorrentState.Message) {
            self.bytes = bytes
            switch m {
            case .choke: kind = .choke
            case .unchoke: kind = .unchoke
            case .interested: kind = .interested
            case .notInterested: kind = .notInterested
            case .haveAll: kind = .haveAll
            case .haveNone: kind = .haveNone
            case .have(let p): kind = .have; piece = Int32(p)
            case .suggest(let p): kind = .suggest; piece = Int32(p)
            case .allowedFast(let p): kind = .allowedFast; piece = Int32(p)
            case .request(let r): kind = .request; set(r)
            case .cancel(let r): kind = .cancel; set(r)
            case .reject(let r): kind = .reject; set(r)
            case .piece(let r): kind = .block; set(r)
            case .bitfield: preconditionFailure("a bitfield's bytes are kept apart (Fleet.perform)")
            }
        }

        init(bytes: Int, bitfieldKey: Int) {
            self.bytes = bytes
            kind = .bitfield
            piece = Int32(bitfieldKey)
        }

        init(block: BlockRequest, corrupt: Bool) {
            bytes = Fleet.wireLength(.piece(block))
            kind = .block
            self.corrupt = corrupt
            set(block)
        }

        private mutating func set(_ r: BlockRequest) {
            piece = Int32(r.piece)
            begin = Int32(r.begin)
            length = Int32(r.length)
        }

        private var request: BlockRequest { BlockRequest(piece: Int(piece), begin: Int(begin), length: Int(length)) }
        var block: BlockRequest? { kind == .block ? request : nil }

        /// The message as it arrives; a bitfield's bytes come from `Fleet.bitfields`.
        func message(bitfield: () -> [UInt8]) -> TorrentState.Message {
            switch kind {
            case .choke: return .choke
            case .unchoke: return .unchoke
            case .interested: return .interested
            case .notInterested: return .notInterested
            case .haveAll: return .haveAll
            case .haveNone: return .haveNone
            case .have: return .have(piece: Int(piece))
            case .suggest: return .suggest(piece: Int(piece))
            case .allowedFast: return .allowedFast(piece: Int(piece))
            case .request: return .request(request)
            case .cancel: return .cancel(request)
            case .reject: return .reject(request)
            case .block: return .piece(request)
            case .bitfield: return .bitfield(bitfield())
            }
        }
    }

    /// Peer-wire bytes of a message. A request, cancel, reject or block of a unit larger than
    /// 16 KiB (`Scenario.blockLength`) costs what its 16 KiB messages would.
    static func wireLength(_ m: TorrentState.Message) -> Int {
        switch m {
        case .choke, .unchoke, .interested, .notInterested, .haveAll, .haveNone: return 5
        case .have, .suggest, .allowedFast: return 9
        case .bitfield(let b): return 5 + b.count
        case .request(let r), .cancel(let r), .reject(let r): return 17 * wireParts(r.length)
        case .piece(let r): return 13 * wireParts(r.length) + r.length
        }
    }

    static func wireParts(_ length: Int) -> Int { max(1, (length + PieceLayout.blockSize - 1) / PieceLayout.blockSize) }

    // MARK: network

    /// Moves one step of bytes: two rounds of water-filling along each busy link's path
    /// (`NetworkScratch.fillRound`), so an uplink's share that a downlink or a site's uplink
    /// could not take goes to its other connections; max-min fair to within a few percent.
    /// Items that finish arrive a step plus the latency later.
    mutating func transmit() {
        let dt = Double(scenario.step) / 1e9
        let up = min(scenario.rate, scenario.upCap > 0 ? Double(scenario.upCap) * Self.frameOverhead : .infinity) * dt
        let down = min(scenario.rate, scenario.downCap > 0 ? Double(scenario.downCap) * Self.frameOverhead : .infinity) * dt
        network.prepare(links: &links, hosts: hosts.count, up: up, down: down,
                        sites: scenario.sites, site: scenario.siteRate * dt, siteOf: siteOf, overhead: Self.frameOverhead)
        guard !network.active.isEmpty else { return }
        for _ in 0..<2 { network.fillRound() }
        var done: [Item] = [], sent: [BlockRequest] = []
        batch.sent.removeAll(keepingCapacity: true)
        batch.keys.removeAll(keepingCapacity: true)
        for (k, l) in network.active.enumerated() where network.grant[k] > 0 {
            let sender = links[l].from
            let cross = siteOf.map { $0[sender] != $0[links[l].to] } ?? false
            if sender == 0 { sample.origin += network.grant[k] } else { sample.peers += network.grant[k] }
            hostSecond[sender].up += network.grant[k]
            hostSecond[links[l].to].down += network.grant[k]
            if cross {
                siteBytes[hosts[sender].site].out += network.grant[k]
                siteBytes[hosts[links[l].to].site].in += network.grant[k]
            }
            links[l].transmit(wireBytes: network.grant[k], overhead: Self.frameOverhead,
                              kernelBuffer: sender == 0 ? rules.seedUnsentBytes : Self.peerKernelBuffer,
                              done: &done, sent: &sent)
            let at = now + scenario.step + scenario.latency + (cross ? scenario.siteLatency : 0)
            for item in done { arrivals[cross ? 1 : 0].push((l, links[l].to, links[l].idAtTo, item), at: at) }
            for req in sent {
                batch.sent.append((l, req))
                batch.keys.append(sender)
            }
        }
        // Each sender hears of its writes the kernel took, one host at a time (as arrivals).
        guard !batch.sent.isEmpty else { return }
        var scratch = batch
        batch = StepScratch()
        scratch.groups.group(scratch.keys, hosts: hosts.count)
        for h in scratch.groups.order {
            for k in scratch.groups.range(of: h) {
                let (l, req) = scratch.sent[scratch.groups.index[k]]
                guard links[l].open else { continue }
                perform(h, hosts[h].state.blockSent(req, to: links[l].idAtFrom, sent: true, now: now))
            }
        }
        scratch.groups.reset()
        batch = scratch
    }
}

extension Fleet.Link {
    /// Queues an item; haves held before it go ahead of it.
    mutating func push(_ item: Fleet.Item) {
        if held > 0 { release() }
        items.append(item)
        queued += item.bytes
    }

    /// Appends a have that waits (`TorrentRules.haveFlushDelay`): in the queue, not yet sendable.
    mutating func hold(_ item: Fleet.Item) {
        items.append(item)
        held += 1
        heldBytes += item.bytes
    }

    /// The held haves may go.
    mutating func release() {
        queued += heldBytes
        held = 0
        heldBytes = 0
    }

    /// Sends `wireBytes` worth of the queue. Gives the items that left in full, and the
    /// blocks the kernel has now taken (its buffer has room before them): their `blockSent`.
    mutating func transmit(wireBytes: Double, overhead: Double, kernelBuffer: Int,
                           done: inout [Fleet.Item], sent: inout [BlockRequest]) {
        credit += wireBytes
        done.removeAll(keepingCapacity: true)
        sent.removeAll(keepingCapacity: true)
        let end = items.count - held
        while head < end {
            let need = Double(items[head].bytes - headSent) * overhead
            if credit + 1e-6 < need {
                let part = Int(credit / overhead)
                headSent += part
                queued -= part
                credit -= Double(part) * overhead
                break
            }
            credit -= need
            queued -= items[head].bytes - headSent
            if head < firstUnreported {
                taken -= items[head].bytes
            } else {
                // Sent in full before the kernel took it in a scan below: it takes it now.
                if let b = items[head].block { sent.append(b) }
                firstUnreported = head + 1
            }
            done.append(items[head])
            headSent = 0
            head += 1
        }
        if head == end { credit = 0 }
        // The kernel takes items while less than its buffer is queued ahead of them.
        while firstUnreported < end, taken - headSent < kernelBuffer {
            if let b = items[firstUnreported].block { sent.append(b) }
            taken += items[firstUnreported].bytes
            firstUnreported += 1
        }
        if head == end {
            // Idle: a link that once carried a burst keeps no buffer for it (a fleet has
            // tens of thousands of links).
            if held > 0 { items.removeFirst(head) } else { items.removeAll(keepingCapacity: items.capacity <= 64) }
            firstUnreported = 0
            taken = 0
            head = 0
        } else if head > 1024, head * 2 > items.count {
            items.removeFirst(head)
            firstUnreported -= head
            head = 0
        }
    }
}

/// The per-step allocation of link capacity, kept between steps so that a step allocates
/// nothing: the busy links, their demands and grants, and per-host groups of them.
struct NetworkScratch {
    /// Links with bytes queued, in the order they became busy.
    var active: [Int] = []
    var demand: [Double] = []
    var grant: [Double] = []
    /// What each link may still move this round, narrowed stage by stage.
    var amount: [Double] = []
    /// Each busy link's sender and receiver, and across sites their sites (-1 within a site):
    /// read from the links once per step.
    private var from: [Int] = [], to: [Int] = []
    private var siteFrom: [Int] = [], siteTo: [Int] = []
    var upLeft: [Double] = []
    var downLeft: [Double] = []
    var siteOutLeft: [Double] = []
    var siteInLeft: [Double] = []
    /// Per host or site, how many busy links it carries in this stage and where they end in
    /// `members`, which holds them grouped (each group in the links' order).
    private var count: [Int] = []
    private var end: [Int] = []
    private var members: [Int] = []
    private var grouped: [Int] = []
    private var order: [Int] = []

    /// Drops links that emptied or closed and reads the demands of the rest.
    mutating func prepare(links: inout [Fleet.Link], hosts: Int, up: Double, down: Double,
                          sites: Int, site: Double, siteOf: [Int]?, overhead: Double) {
        active.removeAll { l in
            guard links[l].queued == 0 else { return false }
            links[l].active = false
            return true
        }
        if count.count < max(hosts, sites) {
            count = Array(repeating: 0, count: max(hosts, sites))
            end = count
        }
        Self.fill(&upLeft, up, hosts)
        Self.fill(&downLeft, down, hosts)
        Self.fill(&siteOutLeft, site, sites)
        Self.fill(&siteInLeft, site, sites)
        demand.removeAll(keepingCapacity: true)
        from.removeAll(keepingCapacity: true)
        to.removeAll(keepingCapacity: true)
        siteFrom.removeAll(keepingCapacity: true)
        siteTo.removeAll(keepingCapacity: true)
        for l in active {
            // At least a byte: credit left from earlier steps can cover all but a fraction of one,
            // less than a round grants (`fillRound`), and the link would never drain.
            demand.append(max(1, Double(links[l].queued) * overhead - links[l].credit))
            from.append(links[l].from)
            to.append(links[l].to)
            if let siteOf {
                let across = siteOf[links[l].from] != siteOf[links[l].to]
                siteFrom.append(across ? siteOf[links[l].from] : -1)
                siteTo.append(across ? siteOf[links[l].to] : -1)
            }
        }
        Self.fill(&grant, 0, active.count)
    }

    private static func fill(_ a: inout [Double], _ value: Double, _ n: Int) {
        a.removeAll(keepingCapacity: true)
        a.append(contentsOf: repeatElement(value, count: n))
    }

    /// One round of water-filling along each link's path: its sender's uplink, then (across
    /// sites) the sending site's uplink out and the receiving site's uplink in, then the
    /// receiver's downlink. Each stage gives max-min shares of what it has left to what the
    /// stage before it let through; what passes every stage is granted.
    mutating func fillRound() {
        amount.removeAll(keepingCapacity: true)
        for k in active.indices { amount.append(demand[k] - grant[k] > 0.5 ? demand[k] - grant[k] : 0) }
        stage(\.upLeft, by: \.from)
        if !siteFrom.isEmpty {
            stage(\.siteOutLeft, by: \.siteFrom)
            stage(\.siteInLeft, by: \.siteTo)
        }
        stage(\.downLeft, by: \.to)
        for k in active.indices where amount[k] > 0 {
            grant[k] += amount[k]
            upLeft[from[k]] -= amount[k]
            downLeft[to[k]] -= amount[k]
            if !siteFrom.isEmpty, siteFrom[k] >= 0 {
                siteOutLeft[siteFrom[k]] -= amount[k]
                siteInLeft[siteTo[k]] -= amount[k]
            }
        }
    }

    /// Narrows `amount` to max-min shares of each resource's capacity left; links that do
    /// not pass through this stage (`resource` -1) keep theirs.
    private mutating func stage(_ capacities: KeyPath<Self, [Double]>, by resources: KeyPath<Self, [Int]>) {
        let resource = self[keyPath: resources]
        for k in amount.indices where amount[k] > 0 && resource[k] >= 0 {
            let r = resource[k]
            if count[r] == 0 { grouped.append(r) }
            count[r] += 1
        }
        var next = 0
        for r in grouped {
            next += count[r]
            end[r] = next - count[r]
        }
        members.removeAll(keepingCapacity: true)
        members.append(contentsOf: repeatElement(0, count: next))
        for k in amount.indices where amount[k] > 0 && resource[k] >= 0 {
            members[end[resource[k]]] = k
            end[resource[k]] += 1
        }
        let left = self[keyPath: capacities]
        for r in grouped {
            Self.waterfill(left[r], members[(end[r] - count[r])..<end[r]], &order, &amount)
            count[r] = 0
        }
        grouped.removeAll(keepingCapacity: true)
    }

    /// Max-min shares of `capacity` among the links `ks`, each wanting `amount[k]`, which
    /// becomes its share.
    private static func waterfill(_ capacity: Double, _ ks: ArraySlice<Int>, _ order: inout [Int], _ amount: inout [Double]) {
        let left0 = max(0, capacity)
        // Everyone wants at least an equal share (a busy uplink's usual case): no sort needed.
        let equal = left0 / Double(ks.count)
        if ks.allSatisfy({ amount[$0] >= equal }) {
            for k in ks { amount[k] = equal }
            return
        }
        order.removeAll(keepingCapacity: true)
        order.append(contentsOf: ks)
        if order.count > 1 { order.sort { amount[$0] < amount[$1] } }
        var left = left0
        for (n, k) in order.enumerated() {
            let g = min(amount[k], left / Double(order.count - n))
            amount[k] = g
            left -= g
        }
    }
}

/// Items in flight, in the order they arrive.
struct ArrivalQueue {
    /// Each with its link's receiver and the receiver's id for the sender, so that handing it
    /// over does not read the link (a cache miss per item among a fleet's million links).
    typealias Arrival = (link: Int, to: Int, peer: Int, item: Fleet.Item)
    private var items: [(time: UInt64, arrival: Arrival)] = []
    private var head = 0

    mutating func push(_ arrival: Arrival, at t: UInt64) { items.append((t, arrival)) }

    mutating func pop(dueBy now: UInt64) -> Arrival? {
        guard head < items.count, items[head].time <= now else {
            if head > 4096, head * 2 > items.count {
                items.removeFirst(head)
                head = 0
            }
            return nil
        }
        head += 1
        return items[head - 1].arrival
    }
}

