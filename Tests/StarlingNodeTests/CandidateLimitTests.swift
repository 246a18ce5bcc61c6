import BitTorrent
import Logging
import NIOPosix
@testable import StarlingNode
import Testing

@Suite("Candidate limit")
struct CandidateLimitTests {
    /// A hostile tracker (or any source) listing millions of peers: the engine keeps at most
    /// `maxCandidates` per torrent, and the addresses it kept stay.
    @Test func candidatesPerTorrentAreCapped() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        var config = EngineConfig(ip: "127.0.0.1")
        config.maxCandidates = 300
        let engine = try PeerEngine(config: config, loop: group.next(), logger: Logger(label: "candidates"))
        let hash = InfoHash(bytes: Array(repeating: 7, count: 20))!
        let first = (0..<200).map { PeerAddress(host: "10.0.\($0 / 250).\($0 % 250 + 1)", port: 6881) }
        engine.addCandidates(first, for: hash)
        for batch in 0..<20 {
            engine.addCandidates((0..<5000).map { PeerAddress(host: "10.\(batch + 1).\($0 / 250).\($0 % 250 + 1)", port: 6881) }, for: hash)
        }
        #expect(await engine.candidateCount(for: hash) == 300)
        engine.addCandidates(first, for: hash)
        #expect(await engine.candidateCount(for: hash) == 300, "known addresses are not counted twice")
        await engine.shutdown()
        try await group.shutdownGracefully()
    }
}
