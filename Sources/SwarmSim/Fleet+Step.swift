import BitTorrent
import Swarm
import Values

extension Fleet {
    // MARK: events

    enum Timer {
        case announce, tick, rechoke, gossip, wake, haveFlush
    }

    enum Event {
        /// A host's periodic work, from the host's incarnation `epoch`.
        case timer(Timer, Int, Int)
        case connect(from: Int, to: Int, epoch: Int)
        case checked(Int, piece: Int, digests: Bool, epoch: Int)
        case datagram(to: Int, GossipMessage, from: IPEndpoint)
        case crash(Int)
        case restart(Int)
    }

    mutating func schedule(_ e: Event, at t: UInt64) { events.push(e, at: t) }

    mutating func run() -> Simulation.Report {
        while now <= scenario.timeLimit {
            while let (t, e) = events.peek(), t <= now {
                _ = events.pop()
                handle(e)
            }
            deliverArrivals()
            if completed >= mustComplete { break }
            transmit()
            now += scenario.step
            if now % 1_000_000_000 == 0 {
                takeSample()
                if now % 5_000_000_000 == 0 { progress?(Double(now) / 1e9, completed, mustComplete) }
            }
        }
        return report()
    }

    /// Hands this step's arrivals to their hosts, one host at a time: each host gets its
    /// items in arrival order, then one read batch end per connection that had any, as NIO
    /// ends one per socket read. Hosts take their turns in the order of their first arrival,
    /// so that a host's state is read once per step, not once per item: at 10,000 hosts the
    /// fleet's state is gigabytes, and visiting it item by item missed the cache on each.
    private mutating func deliverArrivals() {
        var batch = self.batch
        self.batch = StepScratch()
        batch.arrived.removeAll(keepingCapacity: true)
        batch.keys.removeAll(keepingCapacity: true)
        for q in arrivals.indices {
            while let a = arrivals[q].pop(dueBy: now) {
                batch.arrived.append(a)
                batch.keys.append(a.to)
            }
        }
        if !batch.arrived.isEmpty {
            batch.groups.group(batch.keys, hosts: hosts.count)
            for h in batch.groups.order {
                batch.touched.removeAll(keepingCapacity: true)
                for k in batch.groups.range(of: h) {
                    let a = batch.arrived[batch.groups.index[k]]
                    // The read batch ends once per step and connection: noted on the first item.
                    guard readAt[a.link] != Self.closed else { continue }
                    deliver(a.item, to: h, from: a.peer)
                    if readAt[a.link] != now {
                        readAt[a.link] = now
                        batch.touched.append(a.peer)
                    }
                }
                for p in batch.touched where hosts[h].alive && hosts[h].state.peers.contains(p) {
                    perform(h, hosts[h].state.readBatchEnded(p, now: now))
                }
            }
            batch.groups.reset()
        }
        self.batch = batch
    }

    private mutating func handle(_ e: Event) {
        switch e {
        case .timer(let timer, let h, let epoch):
            guard hosts[h].alive, hosts[h].epoch == epoch else { return }
            switch timer {
            case .announce:
                announce(h)
                schedule(.timer(.announce, h, epoch), at: now + scenario.announceInterval)
            case .tick:
                perform(h, hosts[h].state.tick(now: now))
                dialCandidates(h)
                schedule(.timer(.tick, h, epoch), at: now + 1_000_000_000)
            case .rechoke:
                perform(h, hosts[h].state.rechoke(now: now))
                schedule(.timer(.rechoke, h, epoch), at: now + 10_000_000_000)
            case .gossip:
                guard hosts[h].gossip != nil else { return }
                gossip(h, hosts[h].gossip!.tick(now: gossipTime(now)))
                schedule(.timer(.gossip, h, epoch), at: now + scenario.gossipTick)
            case .wake:
                perform(h, hosts[h].state.wake(now: now))
            case .haveFlush:
                hosts[h].flushArmed = false
                var held: [Int] = []
                swap(&held, &hosts[h].heldLinks)
                for l in held where links[l].held > 0 { flushHeld(l) }
                held.removeAll(keepingCapacity: true)
                hosts[h].heldLinks = held
            }
        case .connect(let from, let to, let epoch):
            guard hosts[from].epoch == epoch else { return }
            connect(from, to)
        case .checked(let h, let piece, let wanted, let epoch):
            guard hosts[h].alive, hosts[h].epoch == epoch else { return }
            let flags = hosts[h].corrupt.removeValue(forKey: piece) ?? [Bool](repeating: false, count: layout.blockCount(ofPiece: piece))
            let bad = flags.contains(true)
            let digests = bad || wanted ? flags.enumerated().map { Self.digest(piece: piece, block: $0.offset, corrupt: $0.element) } : nil
            let verdict: TorrentState.PieceCheck = bad ? .mismatched(blockDigests: digests!) : .matched(blockDigests: digests)
            perform(h, hosts[h].state.pieceChecked(piece, verdict, now: now))
        case .datagram(let h, let message, let source):
            guard hosts[h].alive, hosts[h].gossip != nil else { return }
            gossip(h, hosts[h].gossip!.receive(message, from: source, now: gossipTime(now)).directives)
        case .crash(let h):
            guard hosts[h].alive else { return }
            kill(h)
            crashes += 1
            schedule(.restart(h), at: now + scenario.churnDowntime)
        case .restart(let h):
            // A new process on the same disk: what was verified is kept, the rest is fetched again.
            hosts[h].alive = true
            hosts[h].epoch += 1
            hosts[h].corrupt = [:]
            hosts[h].state = TorrentState(layout: layout, have: hosts[h].state.have, rules: rules,
                                          ownPeerID: hosts[h].peerID, ownAddress: hosts[h].address.host, seed: random.next(), now: now)
            hosts[h].dial = DialSchedule(capacity: 1000)
            start(h, at: now)
        }
    }

    /// A stand-in for a block's SHA-1: equal for equal content, so blame compares as it would.
    static func digest(piece: Int, block: Int, corrupt: Bool) -> SHA1Digest {
        var bytes = [UInt8](repeating: 0, count: 9)
        for k in 0..<4 { bytes[k] = UInt8(truncatingIfNeeded: piece >> (8 * k)); bytes[4 + k] = UInt8(truncatingIfNeeded: block >> (8 * k)) }
        bytes[8] = corrupt ? 1 : 0
        return SHA1Hasher.hash(bytes)
    }

    private mutating func deliver(_ item: Item, to h: Int, from peer: Int) {
        var bits: [UInt8] = []
        if item.kind == .bitfield { bits = bitfields.removeValue(forKey: Int(item.piece)) ?? [] }
        guard hosts[h].alive, hosts[h].state.peers.contains(peer) else { return }
        let actions = hosts[h].state.received(item.message { bits }, from: peer, now: now)
        // Noted only while some piece holds a corrupt block: a piece without an entry is all honest.
        if let req = item.block, item.corrupt || !hosts[h].corrupt.isEmpty, actions.contains(.assemble(req)) {
            let blocks = layout.blockCount(ofPiece: req.piece)
            hosts[h].corrupt[req.piece, default: [Bool](repeating: false, count: blocks)][req.begin / layout.blockLength] = item.corrupt
        }
        perform(h, actions)
    }
}
