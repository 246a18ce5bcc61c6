import BitTorrent
import Dispatch
import Foundation
import NIOCore
import NIOPosix
@testable import StarlingNode
import Storage
import Testing

// Two engines in this process on 127.0.61.1 and 127.0.61.2, ports 7611-7612.

@Suite("Unchecked-piece backlog")
struct UncheckedBacklogTests {
    @Test("while the piece worker is stuck, requests stop at the backlog limit; the download finishes once it resumes",
          .timeLimit(.minutes(1)))
    func requestsWaitForThePieceWorker() async throws {
        let (dir, file, data, metainfo) = try scratchTorrent("unchecked-backlog", size: 8 * 1024 * 1024, seed: 61, pieceLength: 64 * 1024)
        defer { try? FileManager.default.removeItem(at: dir) }

        let group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
        var seedConfig = EngineConfig(ip: "127.0.61.1")
        seedConfig.portRange = 7611...7611
        var peerConfig = EngineConfig(ip: "127.0.61.2")
        peerConfig.portRange = 7612...7612
        peerConfig.rules.maxUncheckedBytes = 512 * 1024
        peerConfig.rules.maxPipeline = 32
        let (seed, peer) = try await startEnginePair(seed: seedConfig, peer: peerConfig, group: group, label: "unchecked-backlog")

        // A slow disk: the peer's only piece worker is busy until the gate opens.
        let gate = DispatchSemaphore(value: 0)
        let stuck = peer.pieceWorker.runIfActive(eventLoop: group.next()) { gate.wait() }

        _ = try await seed.add(metainfo: metainfo, path: file.path, mode: .seed)
        let out = dir.appendingPathComponent("out.bin")
        let fetching = try await peer.add(metainfo: metainfo, path: out.path, mode: .download)
        peer.addCandidates([PeerAddress(host: "127.0.61.1", port: 7611)], for: metainfo.infoHash)

        func state() async throws -> (unchecked: Int, outstanding: Int) {
            try await fetching.loop.submit {
                (fetching.state.uncheckedBytes, fetching.state.peers.values.reduce(0) { $0 + $1.outstanding.count })
            }.get()
        }
        var s = try await state()
        for _ in 0..<100 where s.unchecked < peerConfig.rules.maxUncheckedBytes {
            try await Task.sleep(for: .milliseconds(50))
            s = try await state()
        }
        try #require(s.unchecked >= peerConfig.rules.maxUncheckedBytes, "pieces arrived and wait for the worker")
        // Requests already sent still arrive; after that nothing more is asked.
        try await Task.sleep(for: .seconds(1))
        s = try await state()
        #expect(s.outstanding == 0, "no request in flight while the worker is behind")
        #expect(s.unchecked <= peerConfig.rules.maxUncheckedBytes + 32 * 16 * 1024 + metainfo.pieceLength,
                "held at the limit plus one pipeline, not the 8 MiB file")
        #expect(try await fetching.loop.submit { fetching.progress }.get() == 0)

        gate.signal()
        try await stuck.get()
        try await fetching.completed.get()
        #expect(try Data(contentsOf: out) == data)
        #expect(try await fetching.loop.submit { fetching.state.uncheckedBytes }.get() == 0)

        await seed.shutdown()
        await peer.shutdown()
        try await group.shutdownGracefully()
    }
}
