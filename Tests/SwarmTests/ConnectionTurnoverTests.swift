import Swarm
import Testing

fileprivate let second: UInt64 = 1_000_000_000

@Suite("Connection turnover")
struct ConnectionTurnoverTests {
    let policy = ConnectionTurnover(idleAfter: 10 * second)

    func candidate(_ id: Int, connected: UInt64, useful: UInt64 = 0, interested: Bool = true) -> ConnectionTurnover.Candidate {
        .init(id: id, connectedAt: connected * second, lastUsefulAt: useful * second, interested: interested)
    }

    @Test("a working connection is never evicted: the newcomer is refused")
    func nobodyIdle() {
        let links = [candidate(1, connected: 0, useful: 95), candidate(2, connected: 92)]
        #expect(policy.victim(among: links, now: 100 * second) == nil)
        #expect(policy.victim(among: [], now: 100 * second) == nil)
    }

    @Test("the idle connection quiet longest goes first, one with no interest either way before any other")
    func longestIdle() {
        let now = 100 * second
        let links = [candidate(1, connected: 0, useful: 80), candidate(2, connected: 10, useful: 20), candidate(3, connected: 50, useful: 95)]
        #expect(policy.victim(among: links, now: now) == 2)
        let withUninterested = links + [candidate(4, connected: 85, useful: 0, interested: false)]
        #expect(policy.victim(among: withUninterested, now: now) == 4)
    }

    @Test("a connection younger than idleAfter that never moved a block is not yet idle")
    func youngConnections() {
        let links = [candidate(1, connected: 95), candidate(2, connected: 89)]
        #expect(policy.victim(among: links, now: 100 * second) == 2)
    }
}
