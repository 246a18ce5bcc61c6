import BitTorrent
import StarlingNode
import Testing
import Values

/// The address `seed` and `peer` announce without `--ip`.
@Suite("Announce address")
struct AnnounceAddressTests {
    static let lo = AnnounceAddress.Interface(name: "lo", address: IPAddress("127.0.0.1")!, isLoopback: true)
    static let eth0 = AnnounceAddress.Interface(name: "eth0", address: IPAddress("192.168.5.7")!)
    static let eth1 = AnnounceAddress.Interface(name: "eth1", address: IPAddress("10.0.0.7")!)
    static let v6 = AnnounceAddress.Interface(name: "eth0", address: IPAddress("fd00::7")!)
    static let linkLocal = AnnounceAddress.Interface(name: "eth0", address: IPAddress("fe80::1")!)

    @Test func theRouteToTheTrackerWins() {
        var asked: [String] = []
        let choice = AnnounceAddress.choose(trackers: ["http://10.0.0.1:6969/announce"], interfaces: [Self.lo, Self.eth0, Self.eth1]) { host, port in
            asked.append("\(host):\(port)")
            return IPAddress("10.0.0.7")
        }
        #expect(choice?.address == IPAddress("10.0.0.7"))
        #expect(choice?.reason == "the route to tracker 10.0.0.1")
        #expect(asked == ["10.0.0.1:6969"])
    }

    @Test func trackersAreTriedInOrderThenPeers() {
        var asked: [String] = []
        let choice = AnnounceAddress.choose(trackers: ["http://tracker.invalid/announce", "udp://10.9.9.9:80"],
                                            peers: [PeerAddress(host: "10.0.0.2", port: 6881)],
                                            interfaces: [Self.eth0]) { host, port in
            asked.append("\(host):\(port)")
            return host == "10.0.0.2" ? IPAddress("10.0.0.7") : nil
        }
        #expect(asked == ["tracker.invalid:80", "10.9.9.9:80", "10.0.0.2:6881"])
        #expect(choice?.description == "10.0.0.7 (the route to --peer 10.0.0.2)")
    }

    @Test func withoutATrackerTheFirstNonLoopbackIPv4() {
        let choice = AnnounceAddress.choose(trackers: [], interfaces: [Self.lo, Self.v6, Self.eth0, Self.eth1]) { _, _ in
            Issue.record("nothing to route to")
            return nil
        }
        #expect(choice?.address == IPAddress("192.168.5.7"))
        #expect(choice?.reason == "no tracker; the first non-loopback IPv4 address, of eth0")
    }

    @Test func anUnroutableTrackerFallsBackAndSaysSo() {
        let choice = AnnounceAddress.choose(trackers: ["http://10.0.0.1:6969/announce"], interfaces: [Self.lo, Self.eth0]) { _, _ in nil }
        #expect(choice?.address == IPAddress("192.168.5.7"))
        #expect(choice?.reason == "no route to 10.0.0.1; the first non-loopback IPv4 address, of eth0")
    }

    @Test func theGossipSubnetNarrowsTheFallback() {
        let choice = AnnounceAddress.choose(trackers: [], within: CIDR("10.0.0.0/24"), interfaces: [Self.lo, Self.eth0, Self.eth1]) { _, _ in nil }
        #expect(choice?.address == IPAddress("10.0.0.7"))
        #expect(choice?.reason == "no tracker; the first non-loopback IPv4 address in 10.0.0.0/24, of eth1")
    }

    @Test func downLoopbackAndLinkLocalAreSkipped() {
        var down = Self.eth0
        down.isUp = false
        #expect(AnnounceAddress.choose(trackers: [], interfaces: [Self.lo, down, Self.linkLocal]) { _, _ in nil } == nil)
        let v6 = AnnounceAddress.choose(trackers: [], interfaces: [Self.lo, Self.linkLocal, Self.v6]) { _, _ in nil }
        #expect(v6?.address == IPAddress("fd00::7"))
    }

    @Test func trackerURLs() {
        func hp(_ url: String) -> String? { AnnounceAddress.hostAndPort(ofTracker: url).map { "\($0.0) \($0.1)" } }
        #expect(hp("http://10.0.0.1:6969/announce") == "10.0.0.1 6969")
        #expect(hp("http://tracker.example/announce?x=1") == "tracker.example 80")
        #expect(hp("https://u:p@t.example:8443") == "t.example 8443")
        #expect(hp("http://[fd00::1]:6969/announce") == "fd00::1 6969")
        #expect(hp("http://[fd00::1]/announce") == "fd00::1 80")
        #expect(hp("http://10.0.0.1:0/announce") == nil)
        #expect(hp("no scheme") == nil)
    }

    /// The kernel's side: loopback routes from loopback, and the interface list has it.
    @Test func theKernelAnswers() {
        #expect(AnnounceAddress.routeSource(host: "127.0.0.1", port: 6969) == IPAddress("127.0.0.1"))
        #expect(AnnounceAddress.routeSource(host: "not a host", port: 6969) == nil)
        #expect(AnnounceAddress.interfaces().contains { $0.isLoopback && $0.address == IPAddress("127.0.0.1") })
    }
}
