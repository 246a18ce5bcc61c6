import BitTorrent
import Testing
@testable import Swarm
import Values

@Suite("Tracker registry")
struct TrackerRegistryTests {
    static let hash = InfoHash(bytes: [UInt8](repeating: 7, count: 20))!
    static let other = InfoHash(bytes: [UInt8](repeating: 8, count: 20))!

    static func id(_ n: Int) -> [UInt8] {
        var b = Array("-TT0001-".utf8) + Array(String(n).utf8)
        while b.count < 20 { b.append(UInt8(ascii: "x")) }
        return b
    }

    /// 10.x.y.z for peer `n`.
    static func ip(_ n: Int) -> IPAddress { IPAddress(bytes: [10, UInt8(n >> 16 & 0xff), UInt8(n >> 8 & 0xff), UInt8(n & 0xff)])! }

    var rng = SplitMix64(seed: 42)

    @discardableResult
    mutating func announce(_ reg: inout TrackerRegistry, _ n: Int, left: Int64, event: AnnounceEvent? = nil,
                           numWant: Int? = nil, hash: InfoHash = hash, now: Int64 = 1000,
                           compact: Bool = true) throws -> TrackerRegistry.AnnounceResult {
        let r = AnnounceRequest(infoHash: hash, peerID: Self.id(n), port: UInt16(6000 + n % 50_000), left: left, event: event,
                                numWant: numWant, compact: compact)
        return try reg.announce(r, address: Self.ip(n), now: now, using: &rng)
    }

    @Test mutating func leechersGetSeedersAndLeechersButNeverThemselves() throws {
        var reg = TrackerRegistry()
        try announce(&reg, 1, left: 0)
        for n in 2...5 { try announce(&reg, n, left: 100) }
        let r = try announce(&reg, 3, left: 100)
        #expect(r.complete == 1 && r.incomplete == 4)
        #expect(Set(r.peers.map(\.port)) == [6001, 6002, 6004, 6005])
        // No peer ids, in either model: an id handed out is an id another host can claim.
        #expect(r.peers.allSatisfy { $0.peerID == nil })
        #expect(try announce(&reg, 3, left: 100, compact: false).peers.allSatisfy { $0.peerID == nil })
    }

    @Test mutating func seedersGetLeechersOnly() throws {
        var reg = TrackerRegistry()
        for n in 1...3 { try announce(&reg, n, left: 0) }
        for n in 4...6 { try announce(&reg, n, left: 10) }
        let r = try announce(&reg, 1, left: 0)
        #expect(Set(r.peers.map(\.port)) == [6004, 6005, 6006])
    }

    @Test mutating func sampleIsRandomDistinctAndCapped() throws {
        var reg = TrackerRegistry(configuration: .init(defaultNumWant: 50, maxNumWant: 80))
        for n in 1...1000 { try announce(&reg, n, left: n % 3 == 0 ? 0 : 10) }
        let a = try announce(&reg, 1, left: 10)
        #expect(a.peers.count == 50)
        #expect(Set(a.peers).count == 50)
        #expect(!a.peers.contains { $0.port == 6001 })
        let capped = try announce(&reg, 1, left: 10, numWant: 5000)
        #expect(capped.peers.count == 80)
        let b = try announce(&reg, 1, left: 10)
        #expect(Set(a.peers) != Set(b.peers), "two samples of 50 out of 999 should differ")
        // Every peer can be handed out: over many draws the sample covers most of the swarm.
        var seen = Set<UInt16>()
        for _ in 0..<200 { for p in try announce(&reg, 2, left: 10).peers { seen.insert(p.port) } }
        #expect(seen.count > 950)
        #expect(try announce(&reg, 1, left: 10, numWant: 0).peers.isEmpty)
    }

    @Test mutating func stoppedRemovesAtOnce() throws {
        var reg = TrackerRegistry()
        try announce(&reg, 1, left: 0)
        try announce(&reg, 2, left: 10)
        #expect(reg.peerCount == 2)
        let r = try announce(&reg, 2, left: 10, event: .stopped)
        #expect(r.peers.isEmpty && r.incomplete == 0 && r.complete == 1)
        #expect(reg.peerCount == 1)
        #expect(try announce(&reg, 1, left: 0).peers.isEmpty)
        // A stop for an unknown swarm neither fails nor creates the swarm.
        try announce(&reg, 9, left: 0, event: .stopped, hash: Self.other)
        #expect(reg.swarmCount == 1 && reg.stats(Self.other) == nil)
    }

    /// A rollout's progress line reads what the leechers still miss from the scrape.
    @Test mutating func leftSumsWhatTheLeechersLastAnnounced() throws {
        var reg = TrackerRegistry()
        try announce(&reg, 1, left: 0)
        try announce(&reg, 2, left: 100, event: .started)
        try announce(&reg, 3, left: 300, event: .started)
        #expect(reg.stats(Self.hash)?.left == 400)
        try announce(&reg, 3, left: 120)
        #expect(reg.stats(Self.hash)?.left == 220)
        try announce(&reg, 2, left: 0, event: .completed)
        #expect(reg.stats(Self.hash)?.left == 120)
        try announce(&reg, 3, left: 120, event: .stopped)
        #expect(reg.stats(Self.hash)?.left == 0)
        try announce(&reg, 4, left: 50, now: 1000)
        #expect(reg.expire(now: 1100) > 0)
        #expect(reg.stats(Self.hash)?.left ?? 0 == 0)
    }

    @Test mutating func completedCountsOnceAndMovesToSeeders() throws {
        var reg = TrackerRegistry()
        try announce(&reg, 1, left: 10, event: .started)
        try announce(&reg, 1, left: 0, event: .completed)
        try announce(&reg, 1, left: 0, event: .completed) // a repeat must not count twice
        try announce(&reg, 2, left: 0, event: .completed) // unknown before (e.g. tracker restarted): counts
        #expect(reg.stats(Self.hash) == ScrapeStats(complete: 2, incomplete: 0, downloaded: 2, left: 0))
        try announce(&reg, 1, left: 5) // data went missing: back to leecher
        #expect(reg.stats(Self.hash) == ScrapeStats(complete: 1, incomplete: 1, downloaded: 2, left: 5))
        // A leecher that stops with nothing left finished too (aria2c --seed-time=0 skips `completed`).
        try announce(&reg, 1, left: 0, event: .stopped)
        #expect(reg.stats(Self.hash) == ScrapeStats(complete: 1, incomplete: 0, downloaded: 3, left: 0))
        try announce(&reg, 2, left: 0, event: .stopped)
        #expect(reg.stats(Self.hash) == ScrapeStats(complete: 0, incomplete: 0, downloaded: 3, left: 0))
    }

    @Test mutating func silentPeersExpire() throws {
        var reg = TrackerRegistry(configuration: .init(peerTimeout: 60))
        try announce(&reg, 1, left: 0, now: 1000)
        try announce(&reg, 2, left: 10, now: 1000)
        try announce(&reg, 3, left: 10, hash: Self.other, now: 1000)
        try announce(&reg, 2, left: 10, now: 1050)
        #expect(reg.expire(now: 1061) == 2)
        #expect(reg.peerCount == 1)
        #expect(reg.stats(Self.hash) == ScrapeStats(complete: 0, incomplete: 1, downloaded: 0, left: 10))
        #expect(reg.stats(Self.other) == nil, "emptied swarms are dropped")
        #expect(reg.expire(now: 1111) == 1)
        #expect(reg.swarmCount == 0 && reg.peerCount == 0)
    }

    /// A stranger that knows a victim's peer id can neither stop it nor point it elsewhere.
    @Test mutating func onlyItsOwnAddressChangesOrRemovesAnEntry() throws {
        var reg = TrackerRegistry()
        try announce(&reg, 1, left: 0) // the victim: 10.0.0.1:6001
        let stranger = IPAddress("11.0.0.9")!
        let stop = AnnounceRequest(infoHash: Self.hash, peerID: Self.id(1), port: 6001, left: 0, event: .stopped)
        _ = try reg.announce(stop, address: stranger, now: 1000, using: &rng)
        let repoint = AnnounceRequest(infoHash: Self.hash, peerID: Self.id(1), port: 7777, left: 0)
        _ = try reg.announce(repoint, address: stranger, now: 1000, using: &rng)
        let seen = try announce(&reg, 2, left: 10).peers
        #expect(Set(seen) == [TrackerPeer(host: "10.0.0.1", port: 6001), TrackerPeer(host: "11.0.0.9", port: 7777)])
        // The victim's own stop still works.
        try announce(&reg, 1, left: 0, event: .stopped)
        #expect(try announce(&reg, 2, left: 10).peers == [TrackerPeer(host: "11.0.0.9", port: 7777)])
    }

    /// The same address and port with a new id (a restarted client) is one entry, not two.
    @Test mutating func aRestartedClientKeepsOneEntry() throws {
        var reg = TrackerRegistry()
        try announce(&reg, 1, left: 10)
        _ = try reg.announce(AnnounceRequest(infoHash: Self.hash, peerID: Self.id(99), port: 6001, left: 10),
                             address: Self.ip(1), now: 1001, using: &rng)
        #expect(reg.peerCount == 1)
        #expect(reg.snapshot().swarms.first?.peers.map(\.peer.peerID) == [Self.id(99)])
    }

    @Test mutating func maxPeersRefusesNewcomersOnly() throws {
        var reg = TrackerRegistry(configuration: .init(maxPeers: 2))
        try announce(&reg, 1, left: 0)
        try announce(&reg, 2, left: 10)
        #expect(throws: TrackerError.self) { try announce(&reg, 3, left: 10) }
        #expect(throws: TrackerError.self) { try announce(&reg, 4, left: 10, hash: Self.other) }
        #expect(try announce(&reg, 2, left: 0).complete == 2, "known peers still update")
        #expect(reg.swarmCount == 1)
    }

    @Test mutating func snapshotRestoresSwarmsAndGivesPeersAGracePeriod() throws {
        var reg = TrackerRegistry(configuration: .init(peerTimeout: 60))
        try announce(&reg, 1, left: 0, now: 1000)
        try announce(&reg, 2, left: 10, event: .completed, now: 1000)
        try announce(&reg, 2, left: 0, event: .completed, now: 1000)
        try announce(&reg, 3, left: 10, hash: Self.other, now: 1000)
        let snap = reg.snapshot()
        #expect(snap.peerCount == 3)

        var restored = TrackerRegistry(configuration: .init(peerTimeout: 60))
        restored.restore(snap, now: 5000) // long after: without the grace period all would expire
        #expect(restored.peerCount == 3 && restored.swarmCount == 2)
        #expect(restored.stats(Self.hash) == reg.stats(Self.hash))
        #expect(restored.stats(Self.other) == reg.stats(Self.other))
        #expect(restored.expire(now: 5059) == 0)
        var rng2 = SplitMix64(seed: 1)
        let r = try restored.announce(AnnounceRequest(infoHash: Self.other, peerID: Self.id(9), port: 1, left: 5),
                                      address: Self.ip(9), now: 5000, using: &rng2)
        #expect(r.peers.map(\.port) == [6003])
    }

    @Test mutating func handlesAHundredThousandPeers() throws {
        var reg = TrackerRegistry(configuration: .init(peerTimeout: 60))
        let clock = ContinuousClock()
        let elapsed = try clock.measure {
            for n in 0..<100_000 {
                try announce(&reg, n, left: n % 4 == 0 ? 0 : 10, numWant: 0, hash: n % 2 == 0 ? Self.hash : Self.other, now: 1000)
            }
            for n in 0..<20_000 {
                try announce(&reg, n, left: 10, numWant: n % 20 == 0 ? 50 : 0, hash: n % 2 == 0 ? Self.hash : Self.other, now: 1010)
            }
        }
        #expect(reg.peerCount == 100_000)
        // Generous bound for a debug build; O(n) sampling would take minutes.
        #expect(elapsed < .seconds(30))
        #expect(reg.expire(now: 1065) == 80_000)
    }
}
