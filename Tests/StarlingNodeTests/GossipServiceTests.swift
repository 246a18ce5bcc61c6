import BitTorrent
import Logging
import NIOCore
import NIOPosix
@testable import StarlingNode
import Swarm
import Testing
import Values
#if canImport(Glibc)
import Glibc
#endif

private let key = try! GossipKey(bytes: Array("service-test-key-0123456789".utf8))
private let torrentX = InfoHash(bytes: [UInt8](repeating: 0xab, count: 20))!
private let torrentY = InfoHash(bytes: [UInt8](repeating: 0xcd, count: 20))!

/// Fast rounds so discovery takes a fraction of a second; long failure timeouts so that a
/// member can only disappear within a test by leaving, however starved the test process is
/// (other suites run CPU-bound simulations beside these real-time ones).
private func fastSettings() -> GossipMembershipSettings {
    var s = GossipMembershipSettings()
    s.gossipInterval = 200_000_000
    s.joinInterval = 300_000_000
    s.suspectAfter = 20_000_000_000
    s.deadAfter = 60_000_000_000
    return s
}

private func config(_ ip: String, seeds: [IPEndpoint], subnet: String = "127.0.0.0/29", key: GossipKey? = key) -> GossipConfig {
    GossipConfig(subnet: try! CIDR(parsing: subnet), bindIP: IPAddress(ip)!, port: 0, seeds: seeds, key: key,
                 tickIntervalMillis: 20, membership: fastSettings())
}

/// Polls `condition` every 20 ms until it holds or `seconds` pass (generous: it returns as soon as it holds).
private func eventually(_ seconds: Double = 20, _ condition: () -> Bool) async -> Bool {
    let deadline = ContinuousClock.now + .milliseconds(Int(seconds * 1000))
    while ContinuousClock.now < deadline {
        if condition() { return true }
        try? await Task.sleep(for: .milliseconds(20))
    }
    return condition()
}

private func sendRaw(_ bytes: [UInt8], from ip: String, to: IPEndpoint, group: any EventLoopGroup) async throws {
    let channel = try await DatagramBootstrap(group: group).bind(host: ip, port: 0).get()
    let address = try SocketAddress(ipAddress: to.ip.description, port: Int(to.port))
    try await channel.writeAndFlush(AddressedEnvelope(remoteAddress: address, data: channel.allocator.buffer(bytes: bytes)))
    try await channel.close()
}

@Suite("Gossip service (UDP on 127.0.0.x)", .serialized)
struct GossipServiceTests {
    let group = MultiThreadedEventLoopGroup.singleton
    let logger: Logger = {
        var l = Logger(label: "gossip-test")
        l.logLevel = .error
        return l
    }()

    /// Three nodes on 127.0.0.2-4 with seeds; returns them started, converged.
    private func cluster() async throws -> [GossipService] {
        let a = GossipService(config: config("127.0.0.2", seeds: []), group: group, logger: logger)
        a.announce(torrents: [(torrentX, complete: true)], peerPort: 7001)
        try await a.start()
        let seed = try #require(a.localEndpoint)
        let b = GossipService(config: config("127.0.0.3", seeds: [seed]), group: group, logger: logger)
        b.announce(torrents: [(torrentX, complete: false), (torrentY, complete: true)], peerPort: 7002)
        let c = GossipService(config: config("127.0.0.4", seeds: [seed]), group: group, logger: logger)
        try await b.start()
        try await c.start()
        let nodes = [a, b, c]
        #expect(await eventually { nodes.allSatisfy { $0.members().count == 2 } })
        return nodes
    }

    @Test func nodesDiscoverEachOtherAndShareTorrentPeers() async throws {
        let nodes = try await cluster()
        let (a, b, c) = (nodes[0], nodes[1], nodes[2])
        // C serves nothing yet learns who serves X and Y, with their peer-wire ports.
        #expect(await eventually { c.knownPeers(for: torrentX).count == 2 })
        let x = c.knownPeers(for: torrentX).map { "\($0.host):\($0.port)" }.sorted()
        #expect(x == ["127.0.0.2:7001", "127.0.0.3:7002"])
        #expect(c.knownPeers(for: torrentY).map(\.port) == [7002])
        #expect(c.knownPeerDetails(for: torrentX).first { $0.port == 7001 }?.complete == true)
        #expect(a.knownPeers(for: torrentX).map(\.port) == [7002])

        // The stream delivered the same pairs.
        var streamed: Set<String> = []
        for await p in c.discoveredPeers {
            streamed.insert("\(p.infoHash.shortHex) \(p.host):\(p.port)")
            if streamed.count == 3 { break }
        }
        #expect(streamed == ["abababab 127.0.0.2:7001", "abababab 127.0.0.3:7002", "cdcdcdcd 127.0.0.3:7002"])

        // A later announcement reaches the others.
        c.announce(torrents: [(torrentY, complete: false)], peerPort: 7003)
        #expect(await eventually { a.knownPeers(for: torrentY).count == 2 })

        #expect(a.counts()["in/accepted", default: 0] > 0 && a.counts()["out/sent", default: 0] > 0)
        #expect(a.counts()["in/bad_mac"] == nil)
        let text = String(decoding: StarlingMetrics.exposition(), as: UTF8.self)
        #expect(text.contains("starling_gossip_messages_total{direction=\"in\",result=\"accepted\"}"))
        #expect(text.contains("starling_gossip_members"))
        #expect(text.contains("starling_gossip_sample_entries_dropped_total{reason=\"out_of_scope\"}"))
        #expect(text.contains("starling_gossip_death_verdicts_total{source=\"made\"}"))

        // A clean stop is noticed at once (leave), well before the dead timeout.
        await b.stop()
        #expect(await eventually { a.members().count == 1 && c.members().count == 1 })
        #expect(a.knownPeers(for: torrentY).map(\.port) == [7003])
        await a.stop()
        await c.stop()
    }

    @Test func forgedAndOutOfScopeDatagramsAreCountedAndChangeNothing() async throws {
        let nodes = try await cluster()
        let a = nodes[0]
        let target = try #require(a.localEndpoint)
        #expect(await eventually { a.knownPeers(for: torrentX).count == 1 })
        let membersBefore = nodes.map { $0.members().map(\.id) }
        let peersBefore = nodes.map { $0.knownPeers(for: torrentX).map(\.port) + $0.knownPeers(for: torrentY).map(\.port) }

        let forged = GossipMessage(kind: .ping, sender: 0xF0F0, peerAddress: IPAddress("127.0.0.6")!, peerPort: 6666,
                                   gossipPort: 6890, timestampMillis: wallMillis(), sequence: 1, incarnation: 0,
                                   torrents: [GossipTorrent(infoHash: torrentX, complete: true)])
        let wrongKey = try GossipKey(bytes: Array("an-attacker-guessed-key!".utf8))
        try await sendRaw(GossipCodec.seal(forged, key: wrongKey), from: "127.0.0.6", to: target, group: group)
        try await sendRaw(GossipCodec.seal(forged, key: .insecure), from: "127.0.0.6", to: target, group: group)
        var v2 = GossipCodec.seal(forged, key: key)
        v2[0] = 2
        try await sendRaw(v2, from: "127.0.0.6", to: target, group: group)
        try await sendRaw([UInt8](repeating: 1, count: 1500), from: "127.0.0.6", to: target, group: group)
        try await sendRaw([1, 1, 0], from: "127.0.0.6", to: target, group: group)
        // A correctly keyed datagram from outside the /29 (127.0.0.9) is refused by scope.
        try await sendRaw(GossipCodec.seal(forged, key: key), from: "127.0.0.9", to: target, group: group)

        #expect(await eventually {
            let c = a.counts()
            return c["in/bad_mac"] == 2 && c["in/bad_version"] == 1 && c["in/oversized"] == 1
                && c["in/malformed"] == 1 && c["in/out_of_scope"] == 1
        })
        try await Task.sleep(for: .milliseconds(300))
        #expect(nodes.map { $0.members().map(\.id) } == membersBefore)
        #expect(nodes.map { $0.knownPeers(for: torrentX).map(\.port) + $0.knownPeers(for: torrentY).map(\.port) } == peersBefore)
        #expect(!a.knownPeers(for: torrentX).contains { $0.port == 6666 })
        let text = String(decoding: StarlingMetrics.exposition(), as: UTF8.self)
        #expect(text.contains("starling_gossip_messages_total{direction=\"in\",result=\"bad_mac\"}"))
        for n in nodes { await n.stop() }
    }

    @Test func ipv6LoopbackNodesDiscoverEachOther() async throws {
        let v6 = { (seeds: [IPEndpoint]) in
            GossipConfig(subnet: try! CIDR(parsing: "::1/128"), bindIP: IPAddress("::1")!, port: 0, seeds: seeds, key: key,
                         tickIntervalMillis: 20, membership: fastSettings())
        }
        let a = GossipService(config: v6([]), group: group, logger: logger)
        a.announce(torrents: [(torrentX, complete: true)], peerPort: 7101)
        try await a.start()
        let b = GossipService(config: v6([try #require(a.localEndpoint)]), group: group, logger: logger)
        try await b.start()
        #expect(await eventually { b.knownPeers(for: torrentX).count == 1 && a.members().count == 1 })
        #expect(b.knownPeers(for: torrentX).first?.host == "::1" && b.knownPeers(for: torrentX).first?.port == 7101)
        await a.stop()
        await b.stop()
    }

    @Test func refusesToStartWithoutKeyUnlessInsecure() async throws {
        let plain = GossipService(config: config("127.0.0.5", seeds: [], key: nil), group: group, logger: logger)
        await #expect(throws: GossipConfigError.noKey) { try await plain.start() }
        var cfg = config("127.0.0.5", seeds: [], key: nil)
        cfg.insecure = true
        let insecure = GossipService(config: cfg, group: group, logger: logger)
        try await insecure.start()
        #expect(insecure.localEndpoint != nil)
        await insecure.stop()
        let outside = GossipService(config: config("127.0.0.9", seeds: []), group: group, logger: logger)
        await #expect(throws: GossipConfigError.self) { try await outside.start() }
    }

    @Test("a gossip config is refused without a key (unless insecure), with an address outside its subnet, and with broadcast on IPv6 or an ephemeral port")
    func configValidation() throws {
        func cfg(_ ip: String, _ subnet: String, key: GossipKey? = .insecure,
                 insecure: Bool = false, broadcast: Bool = false, port: UInt16 = 6890) throws -> GossipConfig {
            GossipConfig(subnet: try CIDR(parsing: subnet), bindIP: IPAddress(ip)!, port: port, key: key,
                         insecure: insecure, broadcast: broadcast)
        }
        try cfg("10.1.0.5", "10.1.0.0/16").validate()
        #expect(throws: GossipConfigError.noKey) { try cfg("10.1.0.5", "10.1.0.0/16", key: nil).validate() }
        try cfg("10.1.0.5", "10.1.0.0/16", key: nil, insecure: true).validate()
        #expect(throws: GossipConfigError.bindOutsideSubnet("10.2.0.5", "10.1.0.0/16")) { try cfg("10.2.0.5", "10.1.0.0/16").validate() }
        #expect(throws: GossipConfigError.broadcastNeedsIPv4) { try cfg("fd00::5", "fd00::/64", broadcast: true).validate() }
        #expect(throws: GossipConfigError.broadcastNeedsPort) { try cfg("10.1.0.5", "10.1.0.0/16", broadcast: true, port: 0).validate() }
    }
}

private func wallMillis() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_REALTIME, &ts)
    return UInt64(ts.tv_sec) * 1000 + UInt64(ts.tv_nsec) / 1_000_000
}
