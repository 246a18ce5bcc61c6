import BitTorrent

extension GossipMembership {
    mutating func expire(now time: GossipTime, into out: inout [GossipDirective]) {
        let t = time.monotonicNanos
        let dead = effectiveDeadAfter
        let suspect = effectiveSuspectAfter
        if !unsettled, calmSince == .max || t - min(t, calmSince) < min(suspect, dead) {
            expireTombstones(t)
            return
        }
        calmSince = .max
        unsettled = false
        for mid in ids {
            var r = records[mid]!
            let silent = t > r.lastHeard ? t - r.lastHeard : 0
            if silent >= dead {
                remove(mid, now: t, left: false, into: &out)
                continue
            }
            if silent < suspect {
                calmSince = min(calmSince, r.lastHeard)
                guard r.member.status == .suspect || r.probeStarted != nil else { continue }
                // Fresh news since: it is alive after all.
                r.probeStarted = nil
                r.probes = 0
                if r.member.status == .suspect {
                    r.member.status = .alive
                    out.append(.memberUpdated(r.member))
                }
                records[mid] = r
                continue
            }
            unsettled = true
            if r.member.status == .alive {
                r.member.status = .suspect
                out.append(.memberUpdated(r.member))
            }
            // Suspect: ask it directly. Silence may only mean news of it is slow to reach us
            // (large clusters); an answer settles that, no answer is a verdict.
            if r.probeStarted == nil || (t - r.lastProbe >= settings.probeTimeout && r.probes < settings.probeAttempts) {
                if send(.ping, to: r.member.gossipEndpoint, now: time, into: &out) {
                    if r.probeStarted == nil { r.probeStarted = t }
                    r.lastProbe = t
                    r.probes += 1
                }
                records[mid] = r
            } else if r.probes >= settings.probeAttempts, t - r.lastProbe >= settings.probeTimeout {
                records[mid] = r
                stats.verdictsMade += 1
                remove(mid, now: t, left: false, verdict: (at: t, revivesAfter: r.probeStarted ?? t), into: &out)
            } else {
                records[mid] = r
            }
        }
        expireTombstones(t)
    }

    private mutating func expireTombstones(_ t: UInt64) {
        for (mid, tomb) in tombstones where tomb.expires <= t {
            tombstones[mid] = nil
            lastEndpoint[mid] = nil
        }
    }

    /// Drops a member and keeps its tombstone. With a `verdict` (a failed probe, ours or
    /// gossiped) the tombstone is gossiped as `dead` for `verdictTTL`, and only news newer than
    /// `revivesAfter` (or a higher incarnation) brings the member back.
    mutating func remove(_ mid: GossipMemberID, now t: UInt64, left: Bool,
                                 verdict: (at: UInt64, revivesAfter: UInt64)? = nil, incarnation: UInt32? = nil,
                                 into out: inout [GossipDirective]) {
        guard let r = forget(mid) else { return }
        if tombstones.count >= settings.maxTombstones,
           let oldest = tombstones.min(by: { ($0.value.expires, $0.key) < ($1.value.expires, $1.key) })?.key {
            tombstones[oldest] = nil
            lastEndpoint[oldest] = nil
        }
        tombstones[mid] = Tombstone(incarnation: max(r.member.incarnation, incarnation ?? 0),
                                    lastHeard: max(r.lastHeard, verdict?.revivesAfter ?? 0),
                                    lastSequence: r.lastSequence, expires: t &+ settings.tombstoneTTL, left: left,
                                    verdictAt: verdict?.at, gossipUntil: verdict == nil ? 0 : t &+ settings.verdictTTL)
        var gone = r.member
        gone.status = .dead
        out.append(.memberRemoved(gone))
    }

    /// Drops the member heard from longest ago, second-hand ones first (their torrents are
    /// not known anyway), without a tombstone: it is not dead, and may be learned again.
    mutating func evictStalest(into out: inout [GossipDirective]) {
        guard let mid = records.min(by: { a, b in
            (a.value.direct ? 1 : 0, a.value.lastHeard, a.key) < (b.value.direct ? 1 : 0, b.value.lastHeard, b.key)
        })?.key, let r = forget(mid) else { return }
        stats.evicted += 1
        out.append(.memberRemoved(r.member))
    }

    /// Takes a member out of the table and of every queue that names it.
    private mutating func forget(_ mid: GossipMemberID) -> Record? {
        guard let r = records.removeValue(forKey: mid) else { return nil }
        let at = idIndex(mid)
        ids.remove(at: at)
        heardAt.remove(at: at)
        byEndpoint[r.member.gossipEndpoint] = nil
        pendingProbes.removeAll { $0 == mid }
        owedAcks.removeAll { $0 == mid }
        return r
    }
}
