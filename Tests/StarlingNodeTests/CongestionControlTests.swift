import BitTorrent
import Foundation
import NIOCore
import NIOPosix
import NodeConfig
@testable import StarlingNode
import Storage
import Testing
import Values

// Engines in this process on 127.0.62.1-3, ports 7621-7623.

@Suite("TCP congestion control option")
struct CongestionControlTests {
    /// The algorithm the kernel runs for a connected channel.
    private func congestionControl(of channel: Channel) async throws -> String {
        let provider = try #require(channel as? SocketOptionProvider)
        let bytes: CongestionName.Bytes = try await provider.unsafeGetSocketOption(
            level: SocketOptionLevel(IPPROTO_TCP), name: PeerEngine.congestionOption).get()
        return CongestionName.name(of: bytes)
    }

    @Test("accepted and dialled connections run the configured algorithm, or the default", .timeLimit(.minutes(2)))
    func connectionsUseTheConfiguredAlgorithm() async throws {
        let (dir, file, data, metainfo) = try scratchTorrent("congestion-control", size: 1024 * 1024, seed: 62)
        defer { try? FileManager.default.removeItem(at: dir) }

        let group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
        // One configured and one default, which differ from each other and from this
        // machine's own (bbr).
        var seedConfig = EngineConfig(ip: "127.0.62.1")
        seedConfig.portRange = 7621...7621
        seedConfig.tcpCongestion = "reno"
        var peerConfig = EngineConfig(ip: "127.0.62.2")
        peerConfig.portRange = 7622...7622
        #expect(peerConfig.tcpCongestion == nil && Defaults.tcpCongestion == "cubic")
        // A crawl until the connections have been looked at: a finished peer, now a seed
        // too, would close its link to the seed.
        peerConfig.downRate = 64 * 1024
        let (seed, peer) = try await startEnginePair(seed: seedConfig, peer: peerConfig, group: group, label: "congestion-control")

        let serving = try await seed.add(metainfo: metainfo, path: file.path, mode: .seed)
        let out = dir.appendingPathComponent("out.bin")
        let fetching = try await peer.add(metainfo: metainfo, path: out.path, mode: .download)
        peer.addCandidates([PeerAddress(host: "127.0.62.1", port: 7621)], for: metainfo.infoHash)
        var inbound: Channel?, outbound: Channel?
        // Generous: the whole suite runs in parallel on two cores.
        for _ in 0..<3000 where inbound == nil || outbound == nil {
            try await Task.sleep(for: .milliseconds(10))
            inbound = try await serving.loop.submit { serving.links.values.first?.channel }.get()
            outbound = try await fetching.loop.submit { fetching.links.values.first?.channel }.get()
        }
        #expect(try await congestionControl(of: try #require(inbound)) == "reno", "the seed accepted this connection")
        #expect(try await congestionControl(of: try #require(outbound)) == "cubic", "the peer dialled this connection, with the default")
        peer.limiter.setRates(up: 0, down: 0)
        try await fetching.completed.get()
        #expect(try Data(contentsOf: out) == data)

        await seed.shutdown()
        await peer.shutdown()
        try await group.shutdownGracefully()
    }

    @Test("an algorithm the kernel lacks stops the start with a clear error and frees the port")
    func unknownAlgorithmFailsTheStart() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        var config = EngineConfig(ip: "127.0.62.3")
        config.portRange = 7623...7623
        config.tcpCongestion = "nosuchcc"
        let engine = try PeerEngine(config: config, loop: group.next(), logger: .init(label: "congestion-control"))
        let error = await #expect(throws: SettingError.self) { try await engine.start() }
        let text = error?.description ?? ""
        #expect(error?.setting == .tcpCongestion && text.contains("nosuchcc"), "\(text)")
        #expect(text.contains("this host offers:") && text.contains("reno"), "lists what the kernel has: \(text)")

        config.tcpCongestion = nil
        let again = try PeerEngine(config: config, loop: group.next(), logger: .init(label: "congestion-control"))
        try await again.start()
        #expect(again.listenPort == 7623, "the refused listener released its port")
        await again.shutdown()
        await engine.shutdown()
        try await group.shutdownGracefully()
    }

    @Test func namesArePaddedAndCutToTheKernelLimit() {
        #expect(CongestionName.name(of: CongestionName("cubic").bytes) == "cubic")
        #expect(CongestionName.name(of: CongestionName("a_name_longer_than_fifteen").bytes) == "a_name_longer_t")
        #expect(CongestionName.name(of: CongestionName("").bytes) == "")
    }
}
