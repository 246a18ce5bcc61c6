import Logging
import NIOCore
@testable import StarlingNode

/// A seed engine and a peer engine in this process, each on a loop of `group`, listening.
func startEnginePair(seed: EngineConfig, peer: EngineConfig, group: EventLoopGroup,
                     label: String) async throws -> (seed: PeerEngine, peer: PeerEngine) {
    let logger = Logger(label: label)
    let s = try PeerEngine(config: seed, loop: group.next(), logger: logger)
    let p = try PeerEngine(config: peer, loop: group.next(), logger: logger)
    try await s.start()
    try await p.start()
    return (s, p)
}
