import BitTorrent
import Testing
@testable import Swarm
import Values

@Suite("Sites: the site map, the share of each host, the tracker's hand-out")
struct SiteTests {
    static func map(_ entries: String...) throws -> SiteMap {
        var m = SiteMap()
        for e in entries { try m.add(parsing: e) }
        return m
    }

    @Test func siteMapParsesAndMatchesTheLongestBlock() throws {
        let m = try Self.map("dc1=10.0.0.0/8", "rack7=10.7.0.0/16, 192.168.7.0/24", "v6=fd00::/8")
        #expect(m.site(of: IPAddress("10.7.3.4")!) == "rack7", "the /16 is longer than dc1's /8")
        #expect(m.site(of: IPAddress("10.8.3.4")!) == "dc1")
        #expect(m.site(of: IPAddress("192.168.7.9")!) == "rack7")
        #expect(m.site(of: IPAddress("fd00::1")!) == "v6")
        #expect(m.site(of: IPAddress("172.16.0.1")!) == nil)
        #expect(m.sameSite(IPAddress("10.7.0.1")!, IPAddress("192.168.7.1")!) == true)
        #expect(m.sameSite(IPAddress("10.7.0.1")!, IPAddress("172.16.0.1")!) == false, "outside every block is elsewhere")
        #expect(m.sameSite(IPAddress("172.16.0.1")!, IPAddress("10.7.0.1")!) == nil, "a host in no site has no map")
    }

    @Test func siteMapRefusesBadEntries() {
        var m = SiteMap()
        #expect(throws: SiteMap.ParseError.malformed("rack1")) { try m.add(parsing: "rack1") }
        #expect(throws: SiteMap.ParseError.malformed("rack1=")) { try m.add(parsing: "rack1=") }
        #expect(throws: SiteMap.ParseError.badName("")) { try m.add(parsing: "=10.0.0.0/8") }
        #expect(throws: SiteMap.ParseError.badName("a b")) { try m.add(parsing: "a b=10.0.0.0/8") }
        #expect((try? m.add(parsing: "r=10.0.0.0/33")) == nil)
        #expect((try? m.add(parsing: "r=10.0.0.0/8,,")) == nil)
        try? m.add(parsing: "r1=10.1.0.0/16")
        #expect(throws: SiteMap.ParseError.duplicateSite("r1")) { try m.add(parsing: "r1=10.2.0.0/16") }
        #expect(throws: SiteMap.ParseError.duplicateBlock("10.1.0.0/16")) { try m.add(parsing: "r2=10.1.0.0/16") }
        #expect(m.sites.count == 1)
        #expect(SiteMap.ParseError.malformed("x").description.contains("NAME=CIDR"))
    }

    @Test func sharesSplitThePiecesEvenlyAndFollowTheMembers() {
        var own = SiteAffinity(pieceCount: 1000, ownAddress: "10.0.0.100")
        #expect(own.share.isComplete, "alone in the site, every piece is ours")
        for n in 1...4 { own.memberJoined(n, host: "10.0.0.\(n)") }
        // One in five of 1,000 pieces: 200, within a few standard deviations (12.6).
        #expect((150...250).contains(own.share.setCount), "\(own.share.setCount) of 1000")
        let withFour = own.share
        own.memberLeft(4, had: Bitfield(count: 1000))
        #expect(own.share == withFour, "a member that left stays known: its pieces still have their owner")
        own.learn("10.0.0.5")
        #expect(own.share.setCount < withFour.setCount)
        #expect(own.share.subtracting(withFour).isEmpty, "a site-mate learnt only takes from our share")
    }

    @Test func acrossSitesLeavesOutWhatTheSiteHas() {
        var own = SiteAffinity(pieceCount: 16, ownAddress: "10.0.0.100")
        own.memberJoined(1, host: "10.0.0.1")
        var mate = Bitfield(count: 16)
        for p in 0..<8 { mate.set(p) }
        own.memberHas(1, mate)
        let remote = Bitfield(count: 16, allSet: true)
        let any = own.acrossSites(remote, anyOwner: true)
        #expect(any.indices == Array(8..<16))
        #expect(own.acrossSites(remote).indices == any.intersection(own.share).indices)
        own.memberLeft(1, had: mate)
        #expect(own.acrossSites(remote, anyOwner: true).isComplete, "the site-mate's pieces are gone")
    }

    // MARK: the tracker

    /// Sites s0, s1, s2 on 10.0.0.0/24, 10.0.1.0/24 and 10.0.2.0/24: peer n is 10.0.(n / 256).(n % 256).
    static func registry(remote: Int = 4) throws -> TrackerRegistry {
        TrackerRegistry(configuration: .init(sites: try map("s0=10.0.0.0/24", "s1=10.0.1.0/24", "s2=10.0.2.0/24"), remotePeers: remote))
    }

    @Test func trackerHandsOutMostlyTheOwnSite() throws {
        var t = TrackerRegistryTests()
        var reg = try Self.registry()
        for site in 0..<3 { for j in 1...30 { try t.announce(&reg, site * 256 + j, left: 100) } }
        let r = try t.announce(&reg, 256 + 5, left: 100, numWant: 20)
        let sites = r.peers.map { $0.ip.map { Int($0.bytes[14]) } ?? -1 }
        #expect(r.peers.count == 20)
        #expect(sites.filter { $0 == 1 }.count == 16, "16 of its own site: \(sites)")
        #expect(sites.filter { $0 != 1 }.count == 4, "remotePeers of the others")
        #expect(!r.peers.contains { $0.port == UInt16(6000 + 256 + 5) })
        // Per-site counts.
        let stats = reg.siteStats(TrackerRegistryTests.hash)
        #expect(stats["s1"]?.incomplete == 30 && stats.count == 3)
        #expect(reg.stats(TrackerRegistryTests.hash)?.incomplete == 90)
    }

    @Test func aSmallSiteIsFilledFromTheOthersAndAPeerOutsideDrawsFromAll() throws {
        var t = TrackerRegistryTests()
        var reg = try Self.registry()
        for j in 1...3 { try t.announce(&reg, j, left: 100) }
        for j in 1...40 { try t.announce(&reg, 512 + j, left: 100) }
        let r = try t.announce(&reg, 1, left: 100, numWant: 20)
        #expect(r.peers.count == 20, "2 site-mates and 18 from elsewhere")
        // 10.0.3.x is in no site: uniform over everyone.
        let outside = try t.announce(&reg, 3 * 256 + 1, left: 100, numWant: 100)
        #expect(outside.peers.count == 43)
    }

    @Test func siteBucketsSurviveSnapshotAndExpiry() throws {
        var t = TrackerRegistryTests()
        var reg = try Self.registry()
        for site in 0..<3 { for j in 1...5 { try t.announce(&reg, site * 256 + j, left: site == 0 ? 0 : 100, now: 1000) } }
        var restored = try Self.registry()
        restored.restore(reg.snapshot(), now: 1000)
        #expect(restored.siteStats(TrackerRegistryTests.hash) == reg.siteStats(TrackerRegistryTests.hash))
        #expect(restored.peerCount == 15)
        try t.announce(&restored, 256 + 1, left: 100, now: 1100)
        #expect(restored.expire(now: 1100) == 14)
        #expect(restored.siteStats(TrackerRegistryTests.hash).keys.sorted() == ["s1"])
    }
}
