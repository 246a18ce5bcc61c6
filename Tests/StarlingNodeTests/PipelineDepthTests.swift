import NIOCore
import Testing
@testable import StarlingNode

/// How many blocks a peer is asked for ahead: `requestHorizon` of its measured rate, bounded.
@Suite struct PipelineDepthTests {
    let config = EngineConfig(ip: "127.0.0.1")

    @Test func aPeerNotYetMeasuredGetsTheMinimum() {
        #expect(config.pipelineDepth(forRate: 0) == config.minPipeline)
    }

    @Test func depthIsTheHorizonOfTheRateInBlocks() {
        // 20 Mbit/s over 500 ms is 1.25 MB: 76.3 blocks of 16 KiB, rounded up.
        #expect(config.pipelineDepth(forRate: 2_500_000) == 77)
        var quarterSecond = config
        quarterSecond.requestHorizon = .milliseconds(250)
        #expect(quarterSecond.pipelineDepth(forRate: 2_500_000) == 39)
    }

    @Test func aSlowPeerKeepsTheMinimumAndAFastOneTheMaximum() {
        // 40 peers sharing a 20 Mbit/s downlink deliver ~64 KB/s each: two blocks of horizon.
        #expect(config.pipelineDepth(forRate: 64_000) == config.minPipeline)
        #expect(config.pipelineDepth(forRate: 600_000_000) == config.maxPipeline)
        #expect(config.pipelineDepth(forRate: .infinity) == config.maxPipeline)
        #expect(config.pipelineDepth(forRate: .nan) == config.minPipeline)
    }
}
