import Foundation
import TestSupport
import Testing

/// Real `starling` processes on loopback addresses (Linux routes all of 127.0.0.0/8 to lo).
/// Serialized: each test is a small swarm that wants both cores.
@Suite(.serialized, .tags(.endToEnd))
struct SwarmEndToEndTests {
    /// One seeder and eight peers fetch a multi-file torrent (nested folders, an empty file,
    /// a file spanning many pieces); every copy is byte-identical.
    @Test func multiFileSwarmOfEightPeers() async throws {
        let dir = try TestPaths.scratch("swarm8")
        defer { try? FileManager.default.removeItem(at: dir) }
        let src = dir.appendingPathComponent("release")
        try FileManager.default.createDirectory(at: src.appendingPathComponent("lib/deep"), withIntermediateDirectories: true)
        try randomData(3_000_000, seed: 1).write(to: src.appendingPathComponent("app.bin"))
        try randomData(70_001, seed: 2).write(to: src.appendingPathComponent("lib/deep/small.so"))
        try Data().write(to: src.appendingPathComponent("lib/empty"))
        try randomData(1_234_567, seed: 3).write(to: src.appendingPathComponent("lib/z.dat"))
        let torrent = try await makeTorrent(src, in: dir, extra: ["--piece-size", "64KiB"])

        let seedIP = "127.0.1.1"
        let peerIPs = (2...9).map { "127.0.1.\($0)" }
        let all = ([seedIP] + peerIPs).flatMap { ["--peer", "\($0):7101"] }
        let seeder = try TestProcess.starling(["seed", torrent.path, src.path, "--ip", seedIP, "--port-range", "7101-7101"],
                                              log: dir.appendingPathComponent("seed.log"), name: "seeder")
        defer { seeder.stop() }
        try await seeder.waitForOutput("seeding", timeout: 30)
        let peers = try peerIPs.map { ip in
            try TestProcess.starling(["peer", torrent.path, dir.appendingPathComponent("out-\(ip)").path, "--ip", ip,
                                      "--port-range", "7101-7101", "--seed-after", "2", "--timeout", "90"] + all,
                                     log: dir.appendingPathComponent("peer-\(ip).log"), name: "peer \(ip)")
        }
        for p in peers {
            let status = try await p.wait(timeout: 120)
            #expect(status == 0, "\(p.name) exited \(status): \(p.output.suffix(2000))")
        }
        for ip in peerIPs {
            let out = dir.appendingPathComponent("out-\(ip)")
            for file in ["app.bin", "lib/deep/small.so", "lib/empty", "lib/z.dat"] {
                let a = try Data(contentsOf: src.appendingPathComponent(file))
                let b = try Data(contentsOf: out.appendingPathComponent(file))
                #expect(a == b, "\(file) differs at \(ip)")
            }
            #expect(!FileManager.default.fileExists(atPath: out.path + ".part"))
        }
    }

    /// A peer killed mid-download resumes from its verified pieces instead of starting over.
    @Test func killedPeerResumes() async throws {
        let dir = try TestPaths.scratch("resume")
        defer { try? FileManager.default.removeItem(at: dir) }
        let file = dir.appendingPathComponent("artifact.bin")
        let size = 16 * 1024 * 1024
        try randomData(size, seed: 7).write(to: file)
        let torrent = try await makeTorrent(file, in: dir, extra: ["--piece-size", "256KiB"])
        // A slow seeder (4 MB/s) so the kill lands mid-transfer.
        let seeder = try TestProcess.starling(["seed", torrent.path, file.path, "--ip", "127.0.2.1", "--port-range", "7201-7201",
                                               "--up-rate", "4MB"], log: dir.appendingPathComponent("seed.log"), name: "seeder")
        defer { seeder.stop() }
        try await seeder.waitForOutput("seeding", timeout: 30)
        let out = dir.appendingPathComponent("copy.bin")
        let args = ["peer", torrent.path, out.path, "--ip", "127.0.2.2", "--port-range", "7202-7202",
                    "--peer", "127.0.2.1:7201", "--timeout", "60"]
        let first = try TestProcess.starling(args + ["--metrics-listen", "127.0.2.2:9402"],
                                             log: dir.appendingPathComponent("peer1.log"), name: "peer (first run)")
        // Kill it once a quarter is verified (read from its /status, whatever the machine's load).
        let progress = try await waitForStatus("127.0.2.2:9402", "progress", dir: dir, timeout: 30) { $0 >= 0.25 }
        #expect(progress >= 0.25 && progress < 1, "first run progress \(progress) when killed")
        first.signal(SIGKILL)
        try await first.wait(timeout: 10)
        #expect(FileManager.default.fileExists(atPath: out.path + ".part"))
        #expect(!FileManager.default.fileExists(atPath: out.path), "an unfinished download must not appear under its final name")

        let second = try TestProcess.starling(args, log: dir.appendingPathComponent("peer2.log"), name: "peer (second run)")
        let status = try await second.wait(timeout: 60)
        #expect(status == 0, "\(second.output.suffix(2000))")
        let (verified, fetched) = resumeFigures(second.output)
        #expect(verified > 0, "the second run should resume from verified pieces; log:\n\(second.output.suffix(2000))")
        #expect(fetched >= 0 && fetched <= size - verified * 256 * 1024,
                "second run fetched \(fetched) bytes although \(verified) pieces were already verified")
        #expect(try Data(contentsOf: out) == Data(contentsOf: file))
    }

    /// A peer that serves corrupt blocks is banned; the download still completes from the honest seeder.
    @Test func lyingPeerIsBanned() async throws {
        let dir = try TestPaths.scratch("liar")
        defer { try? FileManager.default.removeItem(at: dir) }
        let file = dir.appendingPathComponent("artifact.bin")
        try randomData(8 * 1024 * 1024, seed: 9).write(to: file)
        let torrent = try await makeTorrent(file, in: dir, extra: ["--piece-size", "64KiB"])
        let (hash, pieces) = try await infoHash(of: torrent, in: dir)
        let liar = try TestProcess("/usr/bin/python3", [TestPaths.fixtures.appendingPathComponent("liar_peer.py").path,
                                                        "127.0.3.9", "7309", hash, "\(pieces)"],
                                   log: dir.appendingPathComponent("liar.log"), name: "liar")
        defer { liar.stop() }
        try await liar.waitForOutput("listening", timeout: 10)
        // The honest seeder is slow, so the liar gets asked for plenty of blocks.
        let seeder = try TestProcess.starling(["seed", torrent.path, file.path, "--ip", "127.0.3.1", "--port-range", "7301-7301",
                                               "--up-rate", "3MB"], log: dir.appendingPathComponent("seed.log"), name: "seeder")
        defer { seeder.stop() }
        try await seeder.waitForOutput("seeding", timeout: 30)
        let out = dir.appendingPathComponent("copy.bin")
        let peer = try TestProcess.starling(["peer", torrent.path, out.path, "--ip", "127.0.3.2", "--port-range", "7302-7302",
                                             "--peer", "127.0.3.9:7309", "--peer", "127.0.3.1:7301", "--timeout", "60"],
                                            log: dir.appendingPathComponent("peer.log"), name: "peer")
        let status = try await peer.wait(timeout: 90)
        #expect(status == 0, "\(peer.output.suffix(2000))")
        #expect(peer.output.contains("banning peer that sent corrupt data"), "\(peer.output.suffix(2000))")
        #expect(try Data(contentsOf: out) == Data(contentsOf: file))
    }
}
