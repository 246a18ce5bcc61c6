import Swarm
import Testing

/// Seeded generator (fileprivate: other files of this target may define their own).
fileprivate typealias C = Choker.Candidate
fileprivate let second: UInt64 = 1_000_000_000

@Suite("Choker")
struct ChokerTests {
    @Test("every interested peer is unchoked when they fit in the slots")
    func allWithinSlots() {
        var choker = Choker(uploadSlots: 4, optimisticPeriod: 30 * second)
        var rng = SplitMix64(seed: 1)
        let peers = [C(id: 1, interested: true, rate: 0), C(id: 2, interested: true, rate: 5),
                     C(id: 3, interested: false, rate: 9), C(id: 4, interested: true, rate: 1),
                     C(id: 5, interested: false, rate: 0)]
        #expect(choker.unchoked(peers, now: 0, random: &rng) == [1, 2, 4])
        // exactly as many as the slots
        let four = (1...4).map { C(id: $0, interested: true, rate: 0) }
        #expect(choker.unchoked(four, now: second, random: &rng) == [1, 2, 3, 4])
    }

    @Test("over the slots: the top rates plus one optimistic peer from the rest")
    func topPlusOptimistic() throws {
        var choker = Choker(uploadSlots: 3, optimisticPeriod: 30 * second)
        var rng = SplitMix64(seed: 2)
        let peers = [C(id: 1, interested: true, rate: 10), C(id: 2, interested: true, rate: 500),
                     C(id: 3, interested: true, rate: 300), C(id: 4, interested: true, rate: 20),
                     C(id: 5, interested: true, rate: 0), C(id: 6, interested: true, rate: 1)]
        let chosen = choker.unchoked(peers, now: 0, random: &rng)
        #expect(chosen.count == 3)
        #expect(chosen.isSuperset(of: [2, 3]))
        let optimistic = try #require(choker.optimistic)
        #expect([1, 4, 5, 6].contains(optimistic))
        #expect(chosen.contains(optimistic))
    }

    @Test("the optimistic peer stays for the period, then rotates to another peer")
    func optimisticRotates() {
        let period = 30 * second
        var choker = Choker(uploadSlots: 2, optimisticPeriod: period)
        var rng = SplitMix64(seed: 3)
        let peers = [C(id: 1, interested: true, rate: 1000)] + (2...5).map { C(id: $0, interested: true, rate: 1) }
        var now: UInt64 = 5 * second
        _ = choker.unchoked(peers, now: now, random: &rng)
        var current = choker.optimistic
        #expect(current != nil && current != 1)
        var seen: Set<Int> = []
        for _ in 0..<12 {
            // within the period (rechoke every 10 s): no change
            for _ in 0..<2 {
                now += 10 * second
                let chosen = choker.unchoked(peers, now: now, random: &rng)
                #expect(choker.optimistic == current)
                #expect(chosen == [1, current!])
            }
            now += 10 * second   // a full period since the last rotation
            let chosen = choker.unchoked(peers, now: now, random: &rng)
            #expect(choker.optimistic != current, "the optimistic slot did not rotate after its period")
            current = choker.optimistic
            seen.insert(current!)
            #expect(chosen == [1, current!])
        }
        #expect(seen == [2, 3, 4, 5])
    }

    @Test("an optimistic peer that leaves or loses interest is replaced at once")
    func optimisticGone() {
        var choker = Choker(uploadSlots: 2, optimisticPeriod: 30 * second)
        var rng = SplitMix64(seed: 4)
        var peers = [C(id: 1, interested: true, rate: 9), C(id: 2, interested: true, rate: 1), C(id: 3, interested: true, rate: 1)]
        _ = choker.unchoked(peers, now: 0, random: &rng)
        let o = choker.optimistic!
        let other = o == 2 ? 3 : 2
        peers[o - 1].interested = false
        peers.append(C(id: 4, interested: true, rate: 0))
        let chosen = choker.unchoked(peers, now: second, random: &rng)
        #expect(!chosen.contains(o))
        #expect(chosen.contains(1))
        #expect(chosen.count == 2)
        #expect([other, 4].contains(choker.optimistic!))
    }

    @Test("the optimistic slot goes to a peer that is behind, and moves on once it has caught up")
    func optimisticHelpsTheLaggard() {
        var choker = Choker(uploadSlots: 3, optimisticPeriod: 30 * second)
        var rng = SplitMix64(seed: 7)
        // 1 and 2 serve us best; 5 has far fewer pieces than 3, 4 and 6.
        var peers = [C(id: 1, interested: true, rate: 9, pieces: 800), C(id: 2, interested: true, rate: 8, pieces: 700),
                     C(id: 3, interested: true, rate: 1, pieces: 680), C(id: 4, interested: true, rate: 1, pieces: 690),
                     C(id: 5, interested: true, rate: 0, pieces: 100), C(id: 6, interested: true, rate: 2, pieces: 590)]
        for t in 0..<5 {
            #expect(choker.unchoked(peers, now: UInt64(t) * 10 * second, random: &rng) == [1, 2, 5])
        }
        // 5 caught up past 6 (3 and 4 are further ahead than 5 %): the slot moves at once, before its period is over.
        peers[4].pieces = 650
        #expect(choker.unchoked(peers, now: 41 * second, random: &rng) == [1, 2, 6])
        // Peers level within 5 % share the slot in turns, one period each.
        for i in peers.indices { peers[i].pieces = 600 + i }
        var seen = Set<Int>()
        for t in 0..<12 {
            _ = choker.unchoked(peers, now: 41 * second + UInt64(t) * 31 * second, random: &rng)
            seen.insert(choker.optimistic!)
        }
        #expect(seen == [3, 4, 5, 6])
    }

    @Test("uninterested peers are never unchoked, whatever their rate", arguments: [1, 2, 3, 16])
    func uninterestedNever(slots: Int) {
        var choker = Choker(uploadSlots: slots, optimisticPeriod: second)
        var rng = SplitMix64(seed: UInt64(slots))
        let peers = (1...20).map { C(id: $0, interested: $0 % 3 == 0, rate: Double(1000 - $0)) }
        for t in 0..<10 {
            let chosen = choker.unchoked(peers, now: UInt64(t) * second, random: &rng)
            #expect(chosen.allSatisfy { $0 % 3 == 0 })
            #expect(chosen.count == min(slots, 6))
        }
        // nobody interested: nobody unchoked
        let none = (1...5).map { C(id: $0, interested: false, rate: 1e9) }
        #expect(choker.unchoked(none, now: 100 * second, random: &rng).isEmpty)
    }
}
