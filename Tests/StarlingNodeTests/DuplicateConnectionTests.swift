import BitTorrent
import Foundation
import NIOCore
import NIOPosix
@testable import StarlingNode
import Testing

// Two engines in this process on 127.0.60.1 and 127.0.60.2, ports 7601-7602.

@Suite("Duplicate connections")
struct DuplicateConnectionTests {
    /// A session's links, by id, with the listen address each is known by; read on its loop.
    func links(_ session: TorrentSession) async throws -> [Int: PeerAddress?] {
        try await session.loop.submit { session.state.peers.mapValues(\.listenAddress) }.get()
    }

    @Test("a peer dialled again at its listen address keeps its established link and is not dialled again")
    func establishedLinkSurvivesRedial() async throws {
        let (dir, file, _, metainfo) = try scratchTorrent("duplicate-connections", size: 512 * 1024, seed: 60)
        defer { try? FileManager.default.removeItem(at: dir) }

        let group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
        var seedConfig = EngineConfig(ip: "127.0.60.1")
        seedConfig.portRange = 7601...7601
        seedConfig.upRate = 32 * 1024   // 16 s for the file: the download is still running throughout
        var peerConfig = EngineConfig(ip: "127.0.60.2")
        peerConfig.portRange = 7602...7602
        let (seed, peer) = try await startEnginePair(seed: seedConfig, peer: peerConfig, group: group, label: "duplicate-connections")
        let seeding = try await seed.add(metainfo: metainfo, path: file.path, mode: .seed)
        let fetching = try await peer.add(metainfo: metainfo, path: dir.appendingPathComponent("out.bin").path, mode: .download)

        // The peer dials the seed: the seed sees an inbound link, without the peer's listen address.
        peer.addCandidates([PeerAddress(host: "127.0.60.1", port: 7601)], for: metainfo.infoHash)
        var first: [Int: PeerAddress?] = [:]
        for _ in 0..<50 where first.isEmpty {
            try await Task.sleep(for: .milliseconds(100))
            first = try await links(seeding)
        }
        try #require(first.count == 1, "the peer connected")
        #expect(first.values.first! == nil)

        // Established for more than two seconds, the seed learns the peer from a tracker and dials it.
        try await Task.sleep(for: .milliseconds(2500))
        seed.addCandidates([PeerAddress(host: "127.0.60.2", port: 7602)], for: metainfo.infoHash)
        try await Task.sleep(for: .seconds(1))

        let after = try await links(seeding)
        #expect(Set(after.keys) == Set(first.keys), "the established link is kept, the new one refused")
        #expect(after.values.first! == PeerAddress(host: "127.0.60.2", port: 7602),
                "the refused dial taught the seed the peer's listen address, so it stops dialling it")
        let peerSide = try await links(fetching)
        #expect(peerSide.count == 1)
        #expect(try await fetching.loop.submit { fetching.progress }.get() < 1, "still downloading over the kept link")

        await seed.shutdown()
        await peer.shutdown()
        try await group.shutdownGracefully()
    }
}
