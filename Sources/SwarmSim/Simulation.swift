import BitTorrent
import Swarm

/// A swarm of `TorrentState`s over a modelled network, in virtual time (docs/simulator.md).
///
/// The hosts run the engine's own rules; this type plays the part `TorrentSession` and
/// `PeerEngine` play in a process: it carries out their actions, moves bytes over links of
/// the scenario's capacity, and feeds back what arrives. Single-threaded and seeded: the same
/// scenario gives the same run, event for event.
public final class Simulation {
    public let scenario: Scenario
    let layout: PieceLayout
    private(set) var hosts: [Host] = []
    private var conns: [Conn?] = []
    private var tracker = TrackerRegistry()
    private let infoHash = InfoHash(bytes: [UInt8](repeating: 7, count: 20))!
    private var events = EventQueue()
    private var random: SplitMix64
    public private(set) var now: UInt64 = 0
    private var completed = 0
    /// Unsent bytes the kernel takes per connection before a write waits: the origin's
    /// sockets are set to TCP_NOTSENT_LOWAT 128 KiB, the others keep deep default buffers.
    static let kernelBuffer = (seed: 128 * 1024, peer: 1 << 20)

    /// Wire bytes per payload byte: Ethernet, IP and TCP headers of full 1514-byte frames.
    static let frameOverhead = 1514.0 / 1448.0

    struct Host {
        let index: Int
        let address: PeerAddress
        let peerID: [UInt8]
        var state: TorrentState
        var dial: DialSchedule
        var conn: [Int: Int] = [:]      // peer id in `state` -> connection index
        var alive = true
        var liar = false
        var doneAt: UInt64?
        /// Per piece, per block: the block assembled was corrupt (for the piece's verdict).
        var corrupt: [Int: [Bool]] = [:]
        var uploaded: Int64 = 0
    }

    /// One TCP connection: a link each way, each a FIFO of messages and blocks.
    struct Conn {
        var a: Int, b: Int           // host indices; `a` dialled
        var idAtA: Int, idAtB: Int   // each side's peer id for the other
        var ab = Link(), ba = Link()
    }

    struct Link {
        var items: [Item] = []
        var head = 0
        var headSent = 0
        var queued = 0
        var credit = 0.0
        /// First item whose `blockSent` is not yet reported (the kernel has not taken it).
        var firstUnreported = 0
    }

    struct Item {
        var bytes: Int
        var message: TorrentState.Message?
        var block: BlockRequest?
        var corrupt = false
    }

    public init(_ scenario: Scenario) {
        self.scenario = scenario
        layout = PieceLayout(totalLength: scenario.fileBytes, pieceLength: scenario.effectivePieceLength)
        random = SplitMix64(seed: scenario.seed)
        var rules = scenario.rules
        rules.maxPeers = min(rules.maxPeers, scenario.hosts - 1)
        let liarCount = Int((Double(scenario.hosts - 1) * scenario.liars).rounded())
        for i in 0..<scenario.hosts {
            let address = PeerAddress(host: "10.\(i >> 16).\((i >> 8) & 255).\(i & 255)", port: 6881)
            let id = Array("-SL0100-".utf8) + Array(String(i, radix: 36).leftPadded(to: 12).utf8)
            let have = Bitfield(count: layout.pieceCount, allSet: i == 0)
            var host = Host(index: i, address: address, peerID: id,
                            state: TorrentState(layout: layout, have: have, rules: rules, ownPeerID: id, seed: random.next(), now: 0),
                            dial: DialSchedule(capacity: 1000))
            host.liar = i > 0 && i <= liarCount
            if i == 0 { host.doneAt = 0 }
            hosts.append(host)
        }
        // The seeder and the tracker are up first; peers start within 100 ms, as a rollout's do.
        schedule(.announce(0), at: 0)
        for i in hosts.indices {
            let start = i == 0 ? 0 : 1_000_000 + random.next() % 100_000_000
            schedule(.announce(i), at: start)
            schedule(.tick(i), at: start + 1_000_000_000)
            schedule(.rechoke(i), at: start + 10_000_000_000)
        }
    }

    // MARK: events

    enum Event {
        case announce(Int)
        case tick(Int)
        case rechoke(Int)
        case wake(Int)
        case connect(from: Int, to: Int)
        case deliver(conn: Int, toB: Bool, Item)
        case checked(Int, piece: Int, digests: Bool)
    }

    private func schedule(_ e: Event, at t: UInt64) { events.push(e, at: t) }

    /// Runs until every live host is complete or the time limit; returns the figures.
    public func run() -> Report {
        while now <= scenario.timeLimit {
            var touched: [(host: Int, peer: Int)] = []
            while let (t, e) = events.peek(), t <= now {
                _ = events.pop()
                handle(e, touched: &touched)
            }
            for (h, p) in touched where hosts[h].alive && hosts[h].state.peers[p] != nil {
                perform(h, hosts[h].state.readBatchEnded(p, now: now))
            }
            if hosts.allSatisfy({ !$0.alive || $0.doneAt != nil }) { break }
            transmit()
            now += scenario.step
        }
        return report()
    }

    private func handle(_ e: Event, touched: inout [(host: Int, peer: Int)]) {
        switch e {
        case .announce(let h):
            guard hosts[h].alive else { return }
            announce(h)
            schedule(.announce(h), at: now + scenario.announceInterval)
        case .tick(let h):
            guard hosts[h].alive else { return }
            perform(h, hosts[h].state.tick(now: now))
            dialCandidates(h)
            schedule(.tick(h), at: now + 1_000_000_000)
        case .rechoke(let h):
            guard hosts[h].alive else { return }
            perform(h, hosts[h].state.rechoke(now: now))
            schedule(.rechoke(h), at: now + 10_000_000_000)
        case .wake(let h):
            guard hosts[h].alive else { return }
            perform(h, hosts[h].state.wake(now: now))
        case .connect(let from, let to):
            connect(from, to)
        case .deliver(let c, let toB, let item):
            guard let conn = conns[c] else { return }
            let (h, peer) = toB ? (conn.b, conn.idAtB) : (conn.a, conn.idAtA)
            deliver(item, to: h, from: peer)
            touched.append((h, peer))
        case .checked(let h, let piece, let wanted):
            guard hosts[h].alive else { return }
            let flags = hosts[h].corrupt.removeValue(forKey: piece) ?? []
            let bad = flags.contains(true)
            let digests = bad || wanted ? flags.enumerated().map { Self.digest(piece: piece, block: $0.offset, corrupt: $0.element) } : nil
            let verdict: TorrentState.PieceCheck = bad ? .mismatched(blockDigests: digests!) : .matched(blockDigests: digests)
            perform(h, hosts[h].state.pieceChecked(piece, verdict, now: now))
        }
    }

    /// A stand-in for a block's SHA-1: equal for equal content, so blame compares as it would.
    static func digest(piece: Int, block: Int, corrupt: Bool) -> SHA1Digest {
        var bytes = [UInt8](repeating: 0, count: 9)
        for k in 0..<4 { bytes[k] = UInt8(truncatingIfNeeded: piece >> (8 * k)); bytes[4 + k] = UInt8(truncatingIfNeeded: block >> (8 * k)) }
        bytes[8] = corrupt ? 1 : 0
        return SHA1Hasher.hash(bytes)
    }

    private func deliver(_ item: Item, to h: Int, from peer: Int) {
        guard hosts[h].alive, hosts[h].state.peers[peer] != nil, let m = item.message else { return }
        let actions = hosts[h].state.received(m, from: peer, now: now)
        if let req = item.block, actions.contains(.assemble(req)) {
            let blocks = layout.blockCount(ofPiece: req.piece)
            hosts[h].corrupt[req.piece, default: [Bool](repeating: false, count: blocks)][req.begin / PieceLayout.blockSize] = item.corrupt
        }
        perform(h, actions)
    }

    // MARK: tracker and connections

    private func announce(_ h: Int) {
        let host = hosts[h]
        let left = host.state.left
        let request = AnnounceRequest(infoHash: infoHash, peerID: host.peerID, port: UInt16(host.address.port),
                                      downloaded: 0, left: left, event: host.doneAt == nil ? .started : nil)
        guard let ip = IPAddress(host.address.host),
              let result = try? tracker.announce(request, address: ip, now: Int64(now / 1_000_000_000), using: &random) else { return }
        let addresses = result.peers.map { PeerAddress(host: $0.host, port: Int($0.port)) }
        _ = hosts[h].dial.add(addresses)
        dialCandidates(h)
    }

    private func index(of address: PeerAddress) -> Int? {
        let parts = address.host.split(separator: ".").compactMap { Int($0) }
        guard parts.count == 4 else { return nil }
        let i = parts[1] << 16 | parts[2] << 8 | parts[3]
        return i < hosts.count ? i : nil
    }

    private func dialCandidates(_ h: Int) {
        let state = hosts[h].state
        let connected = state.listenAddresses
        let budget = state.rules.maxPeers - state.peers.count - hosts[h].dial.inProgress
        guard budget > 0 else { return }
        let due = hosts[h].dial.due(now: now, budget: budget) { connected.contains($0) || state.isBanned($0.host) }
        for address in due {
            guard let to = index(of: address) else { continue }
            // The handshake reaches the other side after a round trip and a half.
            schedule(.connect(from: h, to: to), at: now + 3 * scenario.latency + scenario.step)
        }
    }

    private func connect(_ from: Int, _ to: Int) {
        let target = hosts[to].address
        defer { if hosts[from].alive { dialCandidates(from) } }
        guard hosts[from].alive, hosts[to].alive else {
            hosts[from].dial.dialEnded(target, connected: false)
            return
        }
        hosts[from].dial.dialEnded(target, connected: true)
        let c = conns.count
        let inbound = TorrentState.Arrival(remote: PeerAddress(host: hosts[from].address.host, port: 30000 + c % 30000),
                                           outbound: false, peerID: hosts[from].peerID, fast: true)
        let (acceptedAtB, actionsB) = hosts[to].state.admit(inbound, now: now)
        guard case .admitted(let idAtB) = acceptedAtB else { return perform(to, actionsB) }
        let outbound = TorrentState.Arrival(remote: target, outbound: true, peerID: hosts[to].peerID, fast: true)
        let (acceptedAtA, actionsA) = hosts[from].state.admit(outbound, now: now)
        conns.append(Conn(a: from, b: to, idAtA: -1, idAtB: idAtB))
        hosts[to].conn[idAtB] = c
        perform(to, actionsB)
        guard case .admitted(let idAtA) = acceptedAtA else {
            perform(from, actionsA)
            return close(c)
        }
        conns[c]!.idAtA = idAtA
        hosts[from].conn[idAtA] = c
        perform(from, actionsA)
    }

    /// Both ends learn the connection is gone, as NIO's channelInactive tells each shell.
    private func close(_ c: Int) {
        guard let conn = conns[c] else { return }
        conns[c] = nil
        for (h, id) in [(conn.a, conn.idAtA), (conn.b, conn.idAtB)] where id >= 0 {
            hosts[h].conn[id] = nil
            if hosts[h].alive { perform(h, hosts[h].state.disconnected(id, now: now)) }
        }
    }

    // MARK: actions

    private func perform(_ h: Int, _ actions: [TorrentState.Action]) {
        for action in actions {
            switch action {
            case .send(let m, let id):
                enqueue(from: h, to: id, Item(bytes: Self.wireLength(m), message: m))
            case .serve(let req, let id):
                enqueue(from: h, to: id, Item(bytes: 13 + req.length, message: .piece(req), block: req, corrupt: hosts[h].liar))
                hosts[h].uploaded += Int64(req.length)
            case .assemble:
                break
            case .check(let piece, let digests):
                schedule(.checked(h, piece: piece, digests: digests), at: now)
            case .finalize:
                perform(h, hosts[h].state.finalized(now: now))
                if hosts[h].doneAt == nil {
                    hosts[h].doneAt = now
                    completed += 1
                    announce(h)
                    if let k = scenario.killSeederAfterCompleteOf, completed >= k, hosts[0].alive { kill(0) }
                }
            case .close(let id, _):
                if let c = hosts[h].conn[id] { close(c) }
            case .wake(let after):
                schedule(.wake(h), at: now + after)
            case .failed, .log:
                break
            }
        }
    }

    private func kill(_ h: Int) {
        hosts[h].alive = false
        for c in hosts[h].conn.values { close(c) }
        hosts[h].conn.removeAll()
    }

    static func wireLength(_ m: TorrentState.Message) -> Int {
        switch m {
        case .choke, .unchoke, .interested, .notInterested, .haveAll, .haveNone: return 5
        case .have, .suggest, .allowedFast: return 9
        case .bitfield(let b): return 5 + b.count
        case .request, .cancel, .reject: return 17
        case .piece(let r): return 13 + r.length
        }
    }

    private func enqueue(from h: Int, to id: Int, _ item: Item) {
        guard let c = hosts[h].conn[id], var conn = conns[c] else { return }
        if conn.a == h { conn.ab.push(item) } else { conn.ba.push(item) }
        conns[c] = conn
    }

    // MARK: network

    /// Moves one step of bytes: each uplink is shared equally by its busy connections, each
    /// downlink caps what its incoming connections get, and an uplink's share a downlink could
    /// not take goes to its other connections (two rounds of water-filling: max-min fair to
    /// within a few percent). Items that finish arrive `latency` later.
    private func transmit() {
        let dt = Double(scenario.step) / 1e9
        let up = min(scenario.rate, scenario.upCap > 0 ? Double(scenario.upCap) * Self.frameOverhead : .infinity) * dt
        let down = min(scenario.rate, scenario.downCap > 0 ? Double(scenario.downCap) * Self.frameOverhead : .infinity) * dt
        // Busy links: (conn, direction a->b?, sender, receiver, demand in wire bytes).
        var busy: [(c: Int, ab: Bool, from: Int, to: Int, demand: Double)] = []
        for (c, conn) in conns.enumerated() {
            guard let conn else { continue }
            if conn.ab.queued > 0 { busy.append((c, true, conn.a, conn.b, Double(conn.ab.queued) * Self.frameOverhead - conn.ab.credit)) }
            if conn.ba.queued > 0 { busy.append((c, false, conn.b, conn.a, Double(conn.ba.queued) * Self.frameOverhead - conn.ba.credit)) }
        }
        guard !busy.isEmpty else { return }
        var grant = [Double](repeating: 0, count: busy.count)
        var upLeft = [Double](repeating: up, count: hosts.count)
        var downLeft = [Double](repeating: down, count: hosts.count)
        for _ in 0..<2 {
            // Uplinks offer an equal share of what is left to each link still wanting more.
            var offer = [Double](repeating: 0, count: busy.count)
            var bySender: [Int: [Int]] = [:]
            for (k, l) in busy.enumerated() where busy[k].demand - grant[k] > 0.5 { bySender[l.from, default: []].append(k) }
            for (s, ks) in bySender { waterfill(upLeft[s], ks.map { busy[$0].demand - grant[$0] }) { offer[ks[$0]] = $1 } }
            var byReceiver: [Int: [Int]] = [:]
            for k in busy.indices where offer[k] > 0 { byReceiver[busy[k].to, default: []].append(k) }
            for (r, ks) in byReceiver {
                waterfill(downLeft[r], ks.map { offer[$0] }) { i, g in
                    let k = ks[i]
                    grant[k] += g
                    upLeft[busy[k].from] -= g
                    downLeft[r] -= g
                }
            }
        }
        for (k, l) in busy.enumerated() where grant[k] > 0 {
            guard var conn = conns[l.c] else { continue }
            var link = l.ab ? conn.ab : conn.ba
            let (done, sent) = link.transmit(wireBytes: grant[k], overhead: Self.frameOverhead,
                                             kernelBuffer: l.from == 0 ? Self.kernelBuffer.seed : Self.kernelBuffer.peer)
            if l.ab { conn.ab = link } else { conn.ba = link }
            conns[l.c] = conn
            for item in done { schedule(.deliver(conn: l.c, toB: l.ab, item), at: now + scenario.step + scenario.latency) }
            let sender = l.from, id = l.ab ? conn.idAtA : conn.idAtB
            for req in sent { perform(sender, hosts[sender].state.blockSent(req, to: id, sent: true, now: now)) }
        }
    }

    /// Max-min shares of `capacity` among `demands`, reported as (index, share).
    private func waterfill(_ capacity: Double, _ demands: [Double], _ give: (Int, Double) -> Void) {
        guard capacity > 0 else { return }
        let order = demands.indices.sorted { demands[$0] < demands[$1] }
        var left = capacity
        for (n, i) in order.enumerated() {
            let share = left / Double(order.count - n)
            let g = min(demands[i], share)
            give(i, g)
            left -= g
        }
    }

    // MARK: report

    public struct Report: Sendable, Equatable {
        public var hosts: Int
        public var fileBytes: Int64
        public var makespan: Double?
        public var median: Double?
        public var p90: Double?
        public var tMin: Double
        public var seederUploadXFile: Double
        public var allComplete: Bool
        public var completeHosts: Int
        /// Peers that are not liars: the ones that must complete.
        public var honestPeers: Int
        public var virtualSeconds: Double
    }

    /// One line per host that did not complete: what it holds and whom it is connected to.
    public func stragglers() -> [String] {
        hosts.filter { $0.alive && $0.doneAt == nil }.map { h in
            let p = h.state.peers.values
            return "host \(h.index): \(h.state.have.setCount)/\(layout.pieceCount) pieces, \(p.count) peers "
                + "(\(p.filter(\.isSeed).count) seeds, \(p.filter { !$0.peerChoking }.count) unchoking us, "
                + "\(p.filter(\.amInterested).count) interesting, \(p.reduce(0) { $0 + $1.outstanding.count }) requests out), "
                + "\(h.dial.count) addresses known, \(h.dial.inProgress) dialling, unchecked \(h.state.uncheckedBytes)"
        }
    }

    private func report() -> Report {
        let peers = hosts.dropFirst()
        let honest = peers.filter { !$0.liar }
        let times = honest.map { $0.doneAt.map { Double($0) / 1e9 } ?? .infinity }.sorted()
        let all = !times.contains(.infinity)
        func percentile(_ p: Double) -> Double? {
            guard !times.isEmpty else { return nil }
            let k = Double(times.count - 1) * p / 100
            let lo = Int(k.rounded(.down)), hi = Int(k.rounded(.up))
            if times[hi] == .infinity { return nil }
            return times[lo] + (times[hi] - times[lo]) * (k - Double(lo))
        }
        return Report(hosts: scenario.hosts, fileBytes: scenario.fileBytes, makespan: all ? times.last : nil,
                      median: percentile(50), p90: percentile(90), tMin: scenario.tMin,
                      seederUploadXFile: Double(hosts[0].uploaded) / Double(scenario.fileBytes),
                      allComplete: all, completeHosts: honest.filter { $0.doneAt != nil }.count, honestPeers: honest.count,
                      virtualSeconds: Double(now) / 1e9)
    }
}

extension Simulation.Link {
    mutating func push(_ item: Simulation.Item) {
        items.append(item)
        queued += item.bytes
    }

    /// Sends `wireBytes` worth of the queue. Returns the items that left in full, and the
    /// blocks the kernel has now taken (its buffer has room before them): their `blockSent`.
    mutating func transmit(wireBytes: Double, overhead: Double, kernelBuffer: Int) -> ([Simulation.Item], [BlockRequest]) {
        credit += wireBytes
        var done: [Simulation.Item] = []
        var sent: [BlockRequest] = []
        while head < items.count {
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
            // Sent in full before the kernel-buffer scan below saw it: the kernel took it too.
            if head >= firstUnreported, let b = items[head].block { sent.append(b) }
            done.append(items[head])
            headSent = 0
            head += 1
        }
        if head == items.count { credit = 0 }
        var ahead = -headSent
        var i = head
        firstUnreported = max(firstUnreported, head)
        while i < items.count, ahead < kernelBuffer {
            if i >= firstUnreported, let b = items[i].block { sent.append(b) }
            ahead += items[i].bytes
            i += 1
        }
        firstUnreported = max(firstUnreported, i)
        if head > 1024, head * 2 > items.count {
            items.removeFirst(head)
            firstUnreported -= head
            head = 0
        }
        return (done, sent)
    }
}

/// Events in time order; equal times in the order they were scheduled.
struct EventQueue {
    private var heap: [(time: UInt64, seq: UInt64, event: Simulation.Event)] = []
    private var seq: UInt64 = 0

    mutating func push(_ e: Simulation.Event, at t: UInt64) {
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

    func peek() -> (UInt64, Simulation.Event)? { heap.first.map { ($0.time, $0.event) } }

    mutating func pop() -> Simulation.Event? {
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

extension String {
    func leftPadded(to n: Int) -> String { count >= n ? String(suffix(n)) : String(repeating: "0", count: n - count) + self }
}
