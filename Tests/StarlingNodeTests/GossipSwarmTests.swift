import Foundation
import TestSupport
import Testing

/// The swarm without its tracker: peers find each other by UDP gossip (real processes on loopback).
@Suite(.serialized, .tags(.endToEnd))
struct GossipSwarmTests {
    static func gossipArgs(subnet: String, seed: String, keyFile: URL) -> [String] {
        ["--gossip-subnet", subnet, "--gossip-seed", seed, "--gossip-key-file", keyFile.path]
    }

    /// A torrent with no tracker at all: a seeder and four peers find each other by gossip alone.
    @Test func torrentWithoutTrackerSpreadsByGossip() async throws {
        let dir = try TestPaths.scratch("gossip-only")
        defer { try? FileManager.default.removeItem(at: dir) }
        let file = dir.appendingPathComponent("artifact.bin")
        try randomData(6 * 1024 * 1024, seed: 41).write(to: file)
        let key = dir.appendingPathComponent("gossip.key")
        try "00112233445566778899aabbccddeeff\n".write(to: key, atomically: true, encoding: .utf8)
        let torrent = try await makeTorrent(file, in: dir, extra: ["--piece-size", "64KiB"])   // no --tracker
        let gossip = Self.gossipArgs(subnet: "127.0.30.0/24", seed: "127.0.30.1", keyFile: key)
        let seeder = try TestProcess.starling(["seed", torrent.path, file.path, "--ip", "127.0.30.1", "--port-range", "7901-7901"] + gossip,
                                              log: dir.appendingPathComponent("seed.log"), name: "seeder")
        defer { seeder.stop() }
        try await seeder.waitForOutput("gossip on", timeout: 30)
        let peers = try (2...5).map { i in
            try TestProcess.starling(["peer", torrent.path, dir.appendingPathComponent("out\(i).bin").path, "--ip", "127.0.30.\(i)",
                                      "--port-range", "7901-7901", "--seed-after", "3", "--timeout", "60"] + gossip,
                                     log: dir.appendingPathComponent("peer\(i).log"), name: "peer \(i)")
        }
        for p in peers { #expect(try await p.wait(timeout: 90) == 0, "\(p.name): \(p.output.suffix(1500))") }
        let original = try Data(contentsOf: file)
        for i in 2...5 { #expect(try Data(contentsOf: dir.appendingPathComponent("out\(i).bin")) == original) }
    }

    /// The tracker dies once the first peers have started; peers started afterwards cannot
    /// announce, yet find the swarm through gossip and finish.
    @Test func lateJoinersFinishAfterTheTrackerDied() async throws {
        let dir = try TestPaths.scratch("gossip-late")
        defer { try? FileManager.default.removeItem(at: dir) }
        let file = dir.appendingPathComponent("artifact.bin")
        try randomData(6 * 1024 * 1024, seed: 42).write(to: file)
        let key = dir.appendingPathComponent("gossip.key")
        try "a-shared-secret-of-enough-length".write(to: key, atomically: true, encoding: .utf8)
        let tracker = try TestProcess.starling(["tracker", "--listen", "127.0.31.1:6990"], log: dir.appendingPathComponent("tracker.log"), name: "tracker")
        defer { tracker.stop() }
        try await tracker.waitForOutput("listening", timeout: 20)
        let torrent = try await makeTorrent(file, in: dir, extra: ["--tracker", "http://127.0.31.1:6990/announce", "--piece-size", "64KiB"])
        let gossip = Self.gossipArgs(subnet: "127.0.31.0/24", seed: "127.0.31.2", keyFile: key)
        let seeder = try TestProcess.starling(["seed", torrent.path, file.path, "--ip", "127.0.31.2", "--port-range", "7911-7911",
                                               "--up-rate", "4MB"] + gossip, log: dir.appendingPathComponent("seed.log"), name: "seeder")
        defer { seeder.stop() }
        try await seeder.waitForOutput("gossip on", timeout: 30)
        func peer(_ i: Int) throws -> TestProcess {
            try TestProcess.starling(["peer", torrent.path, dir.appendingPathComponent("out\(i).bin").path, "--ip", "127.0.31.\(i)",
                                      "--port-range", "7911-7911", "--seed-after", "4", "--timeout", "60"] + gossip,
                                     log: dir.appendingPathComponent("peer\(i).log"), name: "peer \(i)")
        }
        let early = try [peer(3), peer(4)]
        try await early[0].waitForOutput("listening", timeout: 20)
        tracker.stop()
        let late = try [peer(5), peer(6)]
        for p in early + late { #expect(try await p.wait(timeout: 90) == 0, "\(p.name): \(p.output.suffix(1500))") }
        for p in late { #expect(p.output.contains("tracker announce failed"), "a late joiner should have found the tracker dead") }
        let original = try Data(contentsOf: file)
        for i in 3...6 { #expect(try Data(contentsOf: dir.appendingPathComponent("out\(i).bin")) == original) }
    }
}
