import BitTorrent
import Values

extension GossipMembership {
    /// The `k` members heard of most recently (ties by id, for reproducibility).
    private func freshestIDs(_ k: Int) -> [GossipMemberID] {
        guard k > 0 else { return [] }
        var best: [(UInt64, GossipMemberID)] = []
        best.reserveCapacity(k + 1)
        for (mid, heard) in zip(ids, heardAt) {
            let key = (heard, mid)
            if best.count == k, let last = best.last, !(key > last) { continue }
            let at = best.firstIndex { key > $0 } ?? best.count
            best.insert(key, at: at)
            if best.count > k { best.removeLast() }
        }
        return best.map(\.1)
    }

    /// Up to `k` distinct member ids chosen at random (partial Fisher-Yates over a copy of `ids`).
    mutating func randomIDs(_ k: Int) -> [GossipMemberID] {
        var pool = ids
        let n = min(k, pool.count)
        for i in 0..<n { pool.swapAt(i, Int.random(in: i..<pool.count, using: &rng)) }
        return Array(pool.prefix(n))
    }

    mutating func refill(_ t: UInt64) {
        guard t > lastRefill else { return }
        tokens = min(settings.sendBurst, tokens + Double(t - lastRefill) / 1e9 * settings.sendRate)
        lastRefill = t
    }

    mutating func take() -> Bool {
        guard tokens >= 1 else { stats.rateLimited += 1; return false }
        tokens -= 1
        return true
    }

    @discardableResult
    mutating func send(_ kind: GossipMessage.Kind, to endpoint: IPEndpoint, now: GossipTime,
                               into out: inout [GossipDirective]) -> Bool {
        // Defence in depth: nothing outside the scope is ever contacted, whatever put it here.
        guard endpoint != gossipEndpoint, scope.contains(endpoint.ip) else { return true }
        guard take() else { return false }
        out.append(.send(makeMessage(kind, now: now), to: endpoint))
        return true
    }

    mutating func makeMessage(_ kind: GossipMessage.Kind, now: GossipTime) -> GossipMessage {
        sequence += 1
        var sample: [GossipMemberEntry] = []
        if kind != .leave {
            let t = now.monotonicNanos
            // Half the sample is the members we heard of most recently: fresh ages spread in
            // a hop or two, which keeps silence (and false suspicion) short. The rest is random,
            // so every member still reaches everyone.
            var room = GossipCodec.memberCapacity(torrents: torrents.count)
            // Death verdicts first, so they outrun the stale news that would keep a member alive.
            for (mid, tomb) in tombstones.filter({ $0.value.gossipUntil > t }).sorted(by: { $0.key < $1.key })
            where sample.count < settings.maxVerdictsPerMessage {
                guard let at = tomb.verdictAt, let endpoint = lastEndpoint[mid] else { continue }
                sample.append(GossipMemberEntry(id: mid, address: endpoint.ip, peerPort: 0, gossipPort: endpoint.port,
                                                status: .dead, incarnation: tomb.incarnation,
                                                ageMillis: UInt32(min((t - min(t, at)) / 1_000_000, UInt64(UInt32.max)))))
            }
            room -= sample.count
            var chosen = freshestIDs(room / 2)
            for mid in randomIDs(room + room / 2) where chosen.count < room && !chosen.contains(mid) {
                chosen.append(mid)
            }
            for mid in chosen {
                let r = records[mid]!
                let age = min((t > r.lastHeard ? t - r.lastHeard : 0) / 1_000_000, UInt64(UInt32.max))
                sample.append(GossipMemberEntry(id: mid, address: r.member.gossipEndpoint.ip,
                                                peerPort: r.member.peerPort, gossipPort: r.member.gossipEndpoint.port,
                                                status: r.member.status, incarnation: r.member.incarnation,
                                                ageMillis: UInt32(age)))
            }
        }
        return GossipMessage(kind: kind, sender: id, peerAddress: peerAddress, peerPort: peerPort,
                             gossipPort: gossipEndpoint.port, timestampMillis: now.unixMillis, sequence: sequence,
                             incarnation: incarnation, torrents: kind == .leave ? [] : torrents, members: sample)
    }
}
