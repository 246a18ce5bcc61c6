import Foundation
import TestSupport
import Testing

/// Faults in a running swarm of real processes on loopback: parts killed, restarted, out of
/// disk, stopped mid-write. Every honest copy must end byte-identical to the source.
@Suite(.serialized, .tags(.endToEnd))
struct FaultTests {
    private struct Lab {
        let dir: URL
        let file: URL
        let torrent: URL
        let size: Int
        let net: String   // 127.0.N
    }

    private func swarm(_ name: String, net: Int, size: Int = 8 << 20, pieceSize: String = "64KiB",
                       tracker: Bool = false) async throws -> Lab {
        let dir = try TestPaths.scratch(name)
        let file = dir.appendingPathComponent("artifact.bin")
        try randomData(size, seed: UInt64(net)).write(to: file)
        let extra = tracker ? ["--tracker", "http://127.0.\(net).1:6991/announce"] : []
        let torrent = try await makeTorrent(file, in: dir, extra: ["--piece-size", pieceSize] + extra)
        return Lab(dir: dir, file: file, torrent: torrent, size: size, net: "127.0.\(net)")
    }

    private func peer(_ s: Lab, _ i: Int, port: Int, extra: [String] = [], run: Int = 1) throws -> TestProcess {
        try TestProcess.starling(["peer", s.torrent.path, s.dir.appendingPathComponent("out\(i).bin").path, "--ip", "\(s.net).\(i)",
                                  "--port-range", "\(port)-\(port)", "--timeout", "90"] + extra,
                                 log: s.dir.appendingPathComponent("peer\(i)-\(run).log"), name: "peer \(i) run \(run)")
    }

    private func expectIdentical(_ s: Lab, _ peers: some Sequence<Int>) throws {
        let original = try Data(contentsOf: s.file)
        for i in peers {
            #expect(try Data(contentsOf: s.dir.appendingPathComponent("out\(i).bin")) == original, "copy \(i) differs")
        }
    }

    /// The seeder is killed once one peer holds a full copy and the others have started:
    /// they finish from the swarm.
    @Test func seederKilledOnceOneCopyExists() async throws {
        let s = try await swarm("fault-seed-killed", net: 40, tracker: true)
        defer { try? FileManager.default.removeItem(at: s.dir) }
        let tracker = try TestProcess.starling(["tracker", "--listen", "\(s.net).1:6991", "--interval", "2"],
                                               log: s.dir.appendingPathComponent("tracker.log"), name: "tracker")
        defer { tracker.stop() }
        try await tracker.waitForOutput("listening", timeout: 20)
        let seeder = try TestProcess.starling(["seed", s.torrent.path, s.file.path, "--ip", "\(s.net).2", "--port-range", "8002-8002",
                                               "--up-rate", "4MB"], log: s.dir.appendingPathComponent("seed.log"), name: "seeder")
        defer { seeder.stop() }
        try await seeder.waitForOutput("seeding", timeout: 30)
        // Peer 3 fetches the first copy alone and stays; the others start after it at 1 MB/s,
        // so when the seeder dies they are seconds from done however slow the machine is: a
        // cap bounds their speed from above, where a race against peer 3 would not.
        let first = try peer(s, 3, port: 8002, extra: ["--seed-after", "600"])
        defer { first.stop() }
        try await first.waitForOutput("download complete", timeout: 60)
        let peers = try (4...8).map {
            try peer(s, $0, port: 8002, extra: ["--seed-after", "2", "--down-rate", "1MB", "--metrics-listen", "\(s.net).\($0):9402"])
        }
        defer { for p in peers { p.stop() } }
        _ = try await waitForStatus("\(s.net).4:9402", "progress", dir: s.dir, timeout: 60) { $0 > 0 }
        seeder.signal(SIGKILL)
        #expect(peers.allSatisfy { !$0.output.contains("download complete") }, "the seeder should die while peers still download")
        for p in peers { #expect(try await p.wait(timeout: 90) == 0, "\(p.name): \(p.output.suffix(1500))") }
        // The tracker counts six downloads: a seed that started complete announces none.
        let scrape = try TestProcess.starling(["status", "--tracker", "http://\(s.net).1:6991/announce", "--torrent", s.torrent.path, "--json"],
                                              log: s.dir.appendingPathComponent("scrape.log"), name: "scrape")
        #expect(try await scrape.wait(timeout: 20) == 0, "\(scrape.output)")
        #expect(scrape.output.contains("\"completed\":6"), "\(scrape.output)")
        first.signal(SIGTERM)
        #expect(try await first.wait(timeout: 15) == 0, "\(first.output.suffix(1500))")
        try expectIdentical(s, 3...8)
    }

    /// Tracker and seeder are both killed once every piece has left the seeder:
    /// with gossip the peers still find each other and finish.
    @Test func trackerAndSeederKilledMidRunWithGossip() async throws {
        let s = try await swarm("fault-both-killed", net: 41, tracker: true)
        defer { try? FileManager.default.removeItem(at: s.dir) }
        let key = s.dir.appendingPathComponent("gossip.key")
        try "fault-tests-shared-gossip-secret".write(to: key, atomically: true, encoding: .utf8)
        let gossip = ["--gossip-subnet", "\(s.net).0/24", "--gossip-seed", "\(s.net).2", "--gossip-key-file", key.path]
        let tracker = try TestProcess.starling(["tracker", "--listen", "\(s.net).1:6991", "--interval", "2"],
                                               log: s.dir.appendingPathComponent("tracker.log"), name: "tracker")
        defer { tracker.stop() }
        try await tracker.waitForOutput("listening", timeout: 20)
        let seeder = try TestProcess.starling(["seed", s.torrent.path, s.file.path, "--ip", "\(s.net).2", "--port-range", "8012-8012",
                                               "--up-rate", "3MB", "--metrics-listen", "\(s.net).2:9412"] + gossip,
                                              log: s.dir.appendingPathComponent("seed.log"), name: "seeder")
        defer { seeder.stop() }
        try await seeder.waitForOutput("gossip on", timeout: 30)
        let peers = try (3...8).map { try peer(s, $0, port: 8012, extra: ["--seed-after", "5", "--down-rate", "1MB"] + gossip) }
        defer { for p in peers { p.stop() } }
        // A distinct-first seed sends every block once before any twice. Blocks it has sent but
        // a peer has not yet read die with it (the kernel resets the connection): six capped
        // peers that read slowly hold up to about 3 MiB in socket buffers, half a second of
        // their reading. So it dies 3 s after a full copy (and a tenth) has left it, when every
        // first copy has been read; the peers, at 1 MB/s, are then about two thirds done.
        _ = try await waitForStatus("\(s.net).2:9412", "uploaded", dir: s.dir, timeout: 60) { $0 >= 1.1 * Double(s.size) }
        try await Task.sleep(for: .seconds(3))
        tracker.signal(SIGKILL)
        seeder.signal(SIGKILL)
        #expect(peers.contains { !$0.output.contains("download complete") }, "both should die mid-run")
        for p in peers { #expect(try await p.wait(timeout: 90) == 0, "\(p.name): \(p.output.suffix(1500))") }
        try expectIdentical(s, 3...8)
    }

    /// Two of ten peers are killed mid-download and started again: they resume from their
    /// verified pieces, fetch only the rest, and every copy is exact.
    @Test func fifthOfThePeersKilledAndRestarted() async throws {
        let s = try await swarm("fault-churn", net: 42)
        defer { try? FileManager.default.removeItem(at: s.dir) }
        let seeder = try TestProcess.starling(["seed", s.torrent.path, s.file.path, "--ip", "\(s.net).1", "--port-range", "8021-8021",
                                               "--up-rate", "4MB"], log: s.dir.appendingPathComponent("seed.log"), name: "seeder")
        defer { seeder.stop() }
        try await seeder.waitForOutput("seeding", timeout: 30)
        let all = (1...12).flatMap { ["--peer", "\(s.net).\($0):8021"] }
        func start(_ i: Int, run: Int) throws -> TestProcess {
            try peer(s, i, port: 8021, extra: ["--seed-after", "4", "--down-rate", "1MB", "--metrics-listen", "\(s.net).\(i):9421"] + all, run: run)
        }
        var peers = try Dictionary(uniqueKeysWithValues: (2...11).map { ($0, try start($0, run: 1)) })
        defer { for p in peers.values { p.stop() } }
        for i in [2, 3] {
            let progress = try await waitForStatus("\(s.net).\(i):9421", "progress", dir: s.dir, timeout: 60) { $0 >= 0.3 }
            #expect(progress < 1)
            peers[i]!.signal(SIGKILL)
            try await peers[i]!.wait(timeout: 10)
        }
        for i in [2, 3] { peers[i] = try start(i, run: 2) }
        for p in peers.values { #expect(try await p.wait(timeout: 90) == 0, "\(p.name): \(p.output.suffix(1500))") }
        for i in [2, 3] {
            let (verified, downloaded) = resumeFigures(peers[i]!.output)
            #expect(verified > 0, "peer \(i) should resume; log:\n\(peers[i]!.output.suffix(1500))")
            #expect(downloaded >= 0 && downloaded <= s.size - verified * 64 * 1024,
                    "peer \(i) fetched \(downloaded) bytes although \(verified) pieces were verified")
        }
        try expectIdentical(s, 2...11)
    }

    /// The disk fills mid-download: the peer stops with a clear error and keeps what it
    /// verified; once space is freed, the next run resumes and completes.
    @Test(.enabled(if: getuid() == 0, "mounts a small tmpfs"))
    func diskFillsThenFreesSpace() async throws {
        let s = try await swarm("fault-disk", net: 43)
        defer { try? FileManager.default.removeItem(at: s.dir) }
        let small = s.dir.appendingPathComponent("small")
        try FileManager.default.createDirectory(at: small, withIntermediateDirectories: true)
        let mount = try TestProcess("/usr/bin/mount", ["-t", "tmpfs", "-o", "size=12m", "tmpfs", small.path],
                                    log: s.dir.appendingPathComponent("mount.log"), name: "mount")
        #expect(try await mount.wait(timeout: 10) == 0, "\(mount.output)")
        defer {
            let umount = Process()
            umount.executableURL = URL(fileURLWithPath: "/usr/bin/umount")
            umount.arguments = ["-l", small.path]
            try? umount.run()
            umount.waitUntilExit()
        }
        let filler = small.appendingPathComponent("filler")
        try Data(count: 8 << 20).write(to: filler)
        let seeder = try TestProcess.starling(["seed", s.torrent.path, s.file.path, "--ip", "\(s.net).1", "--port-range", "8031-8031"],
                                              log: s.dir.appendingPathComponent("seed.log"), name: "seeder")
        defer { seeder.stop() }
        try await seeder.waitForOutput("seeding", timeout: 30)
        let out = small.appendingPathComponent("copy.bin")
        let args = ["peer", s.torrent.path, out.path, "--ip", "\(s.net).2", "--port-range", "8032-8032",
                    "--peer", "\(s.net).1:8031", "--timeout", "60"]
        let first = try TestProcess.starling(args, log: s.dir.appendingPathComponent("peer1.log"), name: "peer (disk full)")
        let status = try await first.wait(timeout: 60)
        #expect(status != 0, "the download cannot fit")
        #expect(first.output.lowercased().contains("no space left"), "\(first.output.suffix(1500))")
        #expect(!FileManager.default.fileExists(atPath: out.path))
        try FileManager.default.removeItem(at: filler)
        let second = try TestProcess.starling(args, log: s.dir.appendingPathComponent("peer2.log"), name: "peer (space freed)")
        #expect(try await second.wait(timeout: 60) == 0, "\(second.output.suffix(1500))")
        #expect(resumeFigures(second.output).verified > 0, "the second run should keep what the first verified")
        #expect(try Data(contentsOf: out) == Data(contentsOf: s.file))
    }

    /// SIGTERM while pieces are being written fast: the peer stops, and the next run finds
    /// no torn piece (every piece it keeps verifies) and completes exactly.
    @Test func sigtermDuringHeavyWritesLeavesNoTornPiece() async throws {
        let s = try await swarm("fault-sigterm", net: 44, size: 48 << 20, pieceSize: "1MiB")
        defer { try? FileManager.default.removeItem(at: s.dir) }
        let seeder = try TestProcess.starling(["seed", s.torrent.path, s.file.path, "--ip", "\(s.net).1", "--port-range", "8041-8041"],
                                              log: s.dir.appendingPathComponent("seed.log"), name: "seeder")
        defer { seeder.stop() }
        try await seeder.waitForOutput("seeding", timeout: 30)
        let out = s.dir.appendingPathComponent("copy.bin")
        // 6 MB/s: the 30 % mark comes after about 2.5 s and leaves about 6 s before the end,
        // room for a slow machine to notice the mark and deliver the signal.
        let args = ["peer", s.torrent.path, out.path, "--ip", "\(s.net).2", "--port-range", "8042-8042",
                    "--peer", "\(s.net).1:8041", "--timeout", "60", "--down-rate", "6MB"]
        let first = try TestProcess.starling(args + ["--metrics-listen", "\(s.net).2:9442"],
                                             log: s.dir.appendingPathComponent("peer1.log"), name: "peer (terminated)")
        defer { first.stop() }
        _ = try await waitForStatus("\(s.net).2:9442", "progress", dir: s.dir, timeout: 60) { $0 >= 0.3 }
        first.signal(SIGTERM)
        let status = try await first.wait(timeout: 15)
        #expect(status != 0 && !FileManager.default.fileExists(atPath: out.path),
                "the signal should stop the download midway (exit \(status)): \(first.output.suffix(1500))")
        let second = try TestProcess.starling(args, log: s.dir.appendingPathComponent("peer2.log"), name: "peer (restarted)")
        defer { second.stop() }
        #expect(try await second.wait(timeout: 60) == 0, "\(second.output.suffix(1500))")
        let (verified, downloaded) = resumeFigures(second.output)
        #expect(verified >= 14, "at 30 % at least 14 of 48 pieces were verified; the restart kept \(verified)")
        #expect(downloaded >= 0 && downloaded <= s.size - verified * (1 << 20))
        #expect(try Data(contentsOf: out) == Data(contentsOf: s.file))
    }
}
