import Foundation
import TestSupport
import Testing

/// Hostile peers against real `starling` processes on loopback: liars must not get honest
/// senders banned, floods must not grow memory, idle connections must not hold every slot,
/// and the allow-list keeps strangers out. Serialized: each test wants both cores.
@Suite(.serialized, .tags(.endToEnd))
struct HostilePeerTests {
    /// Memory a seed or a peer may reach under any flood (the bar).
    static let rssLimitKiB = 64 * 1024

    /// An 8 MiB artifact, its torrent, info-hash and piece count.
    private func artifact(_ dir: URL, seed: UInt64, pieceSize: String = "64KiB") async throws -> (file: URL, torrent: URL, hash: String, pieces: Int) {
        let file = dir.appendingPathComponent("artifact.bin")
        try randomData(8 * 1024 * 1024, seed: seed).write(to: file)
        let torrent = try await makeTorrent(file, in: dir, extra: ["--piece-size", pieceSize])
        let (hash, pieces) = try await infoHash(of: torrent, in: dir)
        return (file, torrent, hash, pieces)
    }

    /// A seed of `a` on IP:PORT, started and seeding.
    private func seed(_ a: (file: URL, torrent: URL, hash: String, pieces: Int), ip: String, port: Int, extra: [String] = [],
                      dir: URL) async throws -> TestProcess {
        let seeder = try TestProcess.starling(["seed", a.torrent.path, a.file.path, "--ip", ip, "--port-range", "\(port)-\(port)"] + extra,
                                              log: dir.appendingPathComponent("seed.log"), name: "seeder")
        try await seeder.waitForOutput("seeding", timeout: 30)
        return seeder
    }

    private func hostile(_ mode: String, from ip: String, to target: String, _ a: (file: URL, torrent: URL, hash: String, pieces: Int),
                         count: Int = 1, seconds: Double = 5, dir: URL) throws -> TestProcess {
        try TestProcess("/usr/bin/python3", [TestPaths.fixtures.appendingPathComponent("hostile_peer.py").path, mode, ip, target,
                                             a.hash, "\(a.pieces)", "\(count)", "\(seconds)"],
                        log: dir.appendingPathComponent("hostile-\(mode)-\(ip).log"), name: "hostile \(mode)")
    }

    /// Peak resident memory of a process (VmHWM), in KiB.
    private func peakRSS(_ p: TestProcess) -> Int {
        let status = (try? String(contentsOfFile: "/proc/\(p.process.processIdentifier)/status", encoding: .utf8)) ?? ""
        let line = status.split(separator: "\n").first { $0.hasPrefix("VmHWM:") } ?? ""
        return Int(line.split(separator: " ").dropFirst().first ?? "") ?? -1
    }

    private func bannedHosts(_ log: String) -> [String] {
        log.split(separator: "\n").filter { $0.contains("banning peer") }.map { String($0) }
    }

    /// A peer with no data that pushes two corrupt blocks of every piece, unasked, while the
    /// only honest seed serves: the blocks are dropped, nobody is banned, the copy is exact.
    /// (Before, unrequested blocks entered pieces in progress, each failed piece struck every
    /// sender, and the honest seed was banned every time.)
    @Test func unsolicitedCorruptBlocksGetNobodyBanned() async throws {
        let dir = try TestPaths.scratch("unsolicited")
        defer { try? FileManager.default.removeItem(at: dir) }
        let a = try await artifact(dir, seed: 21)
        let seeder = try await seed(a, ip: "127.0.7.1", port: 7701, extra: ["--up-rate", "2MB"], dir: dir)
        defer { seeder.stop() }
        let out = dir.appendingPathComponent("copy.bin")
        let peer = try TestProcess.starling(["peer", a.torrent.path, out.path, "--ip", "127.0.7.2", "--port-range", "7702-7702",
                                             "--peer", "127.0.7.1:7701", "--timeout", "60"],
                                            log: dir.appendingPathComponent("peer.log"), name: "peer")
        try await peer.waitForOutput("listening", timeout: 30)
        let attacker = try hostile("unsolicited", from: "127.0.7.9", to: "127.0.7.2:7702", a, seconds: 20, dir: dir)
        defer { attacker.stop() }
        let status = try await peer.wait(timeout: 90)
        #expect(status == 0, "\(peer.output.suffix(2000))")
        #expect(bannedHosts(peer.output).isEmpty, "\(bannedHosts(peer.output))")
        #expect(try Data(contentsOf: out) == Data(contentsOf: a.file))
    }

    /// A lying seeder beside a slow honest one: the liar is banned, the honest seed never is,
    /// and the download completes exactly (it stuck at 75 % when both were banned). Pieces of
    /// 16 blocks, so nearly every piece mixes blocks of both.
    @Test func liarBesideHonestSeedBansOnlyTheLiar() async throws {
        let dir = try TestPaths.scratch("liar-exact")
        defer { try? FileManager.default.removeItem(at: dir) }
        let a = try await artifact(dir, seed: 22, pieceSize: "256KiB")
        let liar = try TestProcess("/usr/bin/python3", [TestPaths.fixtures.appendingPathComponent("liar_peer.py").path,
                                                        "127.0.7.19", "7719", a.hash, "\(a.pieces)"],
                                   log: dir.appendingPathComponent("liar.log"), name: "liar")
        defer { liar.stop() }
        try await liar.waitForOutput("listening", timeout: 10)
        let seeder = try await seed(a, ip: "127.0.7.11", port: 7711, extra: ["--up-rate", "3MB"], dir: dir)
        defer { seeder.stop() }
        let out = dir.appendingPathComponent("copy.bin")
        let peer = try TestProcess.starling(["peer", a.torrent.path, out.path, "--ip", "127.0.7.12", "--port-range", "7712-7712",
                                             "--peer", "127.0.7.19:7719", "--peer", "127.0.7.11:7711", "--timeout", "60"],
                                            log: dir.appendingPathComponent("peer.log"), name: "peer")
        let status = try await peer.wait(timeout: 90)
        #expect(status == 0, "\(peer.output.suffix(2000))")
        let bans = bannedHosts(peer.output)
        #expect(bans.count == 1 && bans.allSatisfy { $0.contains("127.0.7.19") }, "\(bans)")
        #expect(try Data(contentsOf: out) == Data(contentsOf: a.file))
    }

    /// Floods from a peer that never reads: the target closes it and stays under 64 MiB, then
    /// still serves an honest peer (a seed) or completes its own download (a peer under a slow seed).
    private func floods(against role: String) async throws {
        let dir = try TestPaths.scratch("flood-\(role)")
        defer { try? FileManager.default.removeItem(at: dir) }
        let a = try await artifact(dir, seed: 23)
        let seeder = try await seed(a, ip: "127.0.8.1", port: 7801, extra: role == "peer" ? ["--up-rate", "256KiB"] : [], dir: dir)
        defer { seeder.stop() }
        var target = seeder
        var targetAddress = "127.0.8.1:7801"
        var downloader: TestProcess?
        if role == "peer" {
            let p = try TestProcess.starling(["peer", a.torrent.path, dir.appendingPathComponent("slow.bin").path, "--ip", "127.0.8.2",
                                              "--port-range", "7802-7802", "--peer", "127.0.8.1:7801", "--timeout", "120",
                                              "--seed-after", "60"],
                                             log: dir.appendingPathComponent("target-peer.log"), name: "target peer")
            try await p.waitForOutput("listening", timeout: 30)
            downloader = p
            target = p
            targetAddress = "127.0.8.2:7802"
        }
        defer { downloader?.stop() }
        // Flips coalesce into one rechoke per read batch and send nothing, so that connection
        // may stay; the other two queue replies until the target closes them.
        let floods = [("unread-requests", 3_000_000, true), ("interest-flips", 1_000_000, false), ("request-cancel", 500_000, true)]
        for (i, (mode, count, closes)) in floods.enumerated() {
            let attacker = try hostile(mode, from: "127.0.8.\(10 + i)", to: targetAddress, a, count: count, dir: dir)
            defer { attacker.stop() }
            #expect(try await attacker.wait(timeout: 120) == 0, "\(attacker.output)")
            if closes { #expect(attacker.output.contains("closed by target: True"), "\(mode): \(attacker.output)") }
            let peak = peakRSS(target)
            print("\(role) under \(mode) (\(count)): peak RSS \(peak / 1024) MiB; \(attacker.output)", terminator: "")
            #expect(peak > 0 && peak < Self.rssLimitKiB, "\(role) reached \(peak / 1024) MiB under \(mode)")
        }
        #expect(target.process.isRunning, "\(target.output.suffix(2000))")
        if let downloader {
            // The peer under attack finishes its own download, exactly.
            try await downloader.waitForOutput("download complete", timeout: 90)
            #expect(try Data(contentsOf: dir.appendingPathComponent("slow.bin")) == Data(contentsOf: a.file))
            return
        }
        let out = dir.appendingPathComponent("copy.bin")
        let honest = try TestProcess.starling(["peer", a.torrent.path, out.path, "--ip", "127.0.8.3", "--port-range", "7803-7803",
                                               "--peer", "127.0.8.1:7801", "--timeout", "60"],
                                              log: dir.appendingPathComponent("honest.log"), name: "honest peer")
        #expect(try await honest.wait(timeout: 90) == 0, "\(honest.output.suffix(2000))")
        #expect(try Data(contentsOf: out) == Data(contentsOf: a.file))
    }

    @Test func floodsAgainstASeedStayBounded() async throws { try await floods(against: "seed") }

    @Test func floodsAgainstAPeerStayBounded() async throws { try await floods(against: "peer") }

    /// A tracker that answers every announce with 170,000 fake peers, once a second: the peer
    /// keeps a bounded candidate list and stays under 64 MiB (ten answers took main to 274 MiB).
    @Test func hostileTrackerDoesNotGrowAPeer() async throws {
        let dir = try TestPaths.scratch("fake-tracker")
        defer { try? FileManager.default.removeItem(at: dir) }
        let file = dir.appendingPathComponent("artifact.bin")
        try randomData(1 << 20, seed: 26).write(to: file)
        let torrent = try await makeTorrent(file, in: dir, extra: ["--tracker", "http://127.0.11.1:7981/announce"])
        let tracker = try TestProcess("/usr/bin/python3", [TestPaths.fixtures.appendingPathComponent("fake_tracker.py").path,
                                                           "127.0.11.1", "7981", "170000"],
                                      log: dir.appendingPathComponent("tracker.log"), name: "fake tracker")
        defer { tracker.stop() }
        try await tracker.waitForOutput("listening", timeout: 10)
        let peer = try TestProcess.starling(["peer", torrent.path, dir.appendingPathComponent("copy.bin").path, "--ip", "127.0.11.2",
                                             "--port-range", "7982-7982", "--timeout", "60"],
                                            log: dir.appendingPathComponent("peer.log"), name: "peer")
        defer { peer.stop() }
        try await tracker.waitForOutput("answered 10", timeout: 60)
        let peak = peakRSS(peer)
        print("peer after 10 answers of 170,000 fake peers: peak RSS \(peak / 1024) MiB")
        #expect(peer.process.isRunning, "\(peer.output.suffix(2000))")
        #expect(peak > 0 && peak < Self.rssLimitKiB, "peer reached \(peak / 1024) MiB")
    }

    /// 60 connections from 60 addresses that handshake and then do nothing take every slot of a
    /// seed; once they have idled, an honest peer takes a slot from one of them. At most four
    /// connections per torrent are taken from one address.
    @Test func idleConnectionsGiveWayAndOneAddressGetsFewSlots() async throws {
        let dir = try TestPaths.scratch("slots")
        defer { try? FileManager.default.removeItem(at: dir) }
        let a = try await artifact(dir, seed: 24)
        let seeder = try await seed(a, ip: "127.0.9.1", port: 7901, dir: dir)
        defer { seeder.stop() }
        let sameAddress = try hostile("same-address", from: "127.0.9.200", to: "127.0.9.1:7901", a, count: 10, dir: dir)
        #expect(try await sameAddress.wait(timeout: 60) == 0)
        #expect(sameAddress.output.contains("open 4 of 10"), "\(sameAddress.output)")

        let squatters = try hostile("idle", from: "127.0.9.10", to: "127.0.9.1:7901", a, count: 60, seconds: 60, dir: dir)
        defer { squatters.stop() }
        try await squatters.waitForOutput("open", timeout: 60)
        #expect(squatters.output.contains("open 60 of 60"), "\(squatters.output)")
        let out = dir.appendingPathComponent("copy.bin")
        let honest = try TestProcess.starling(["peer", a.torrent.path, out.path, "--ip", "127.0.9.2", "--port-range", "7902-7902",
                                               "--peer", "127.0.9.1:7901", "--timeout", "40"],
                                              log: dir.appendingPathComponent("honest.log"), name: "honest peer")
        #expect(try await honest.wait(timeout: 60) == 0, "\(honest.output.suffix(2000))")
        #expect(try Data(contentsOf: out) == Data(contentsOf: a.file))
        #expect(seeder.output.contains("while another peer needed the slot"), "\(seeder.output.suffix(2000))")
    }

    /// `--allow-peers`: a connection from outside is closed before the handshake; inside, the
    /// download works as usual.
    @Test func allowListKeepsStrangersOut() async throws {
        let dir = try TestPaths.scratch("allow")
        defer { try? FileManager.default.removeItem(at: dir) }
        let a = try await artifact(dir, seed: 25)
        let seeder = try await seed(a, ip: "127.0.10.1", port: 7951, extra: ["--allow-peers", "127.0.10.0/30"], dir: dir)
        defer { seeder.stop() }
        let stranger = try hostile("handshake", from: "127.0.10.9", to: "127.0.10.1:7951", a, dir: dir)
        #expect(try await stranger.wait(timeout: 30) == 0)
        #expect(stranger.output.contains("closed"), "\(stranger.output)")
        let member = try hostile("handshake", from: "127.0.10.3", to: "127.0.10.1:7951", a, dir: dir)
        #expect(try await member.wait(timeout: 30) == 0)
        #expect(member.output.contains("handshake"), "\(member.output)")
        let out = dir.appendingPathComponent("copy.bin")
        let peer = try TestProcess.starling(["peer", a.torrent.path, out.path, "--ip", "127.0.10.2", "--port-range", "7952-7952",
                                             "--peer", "127.0.10.1:7951", "--allow-peers", "127.0.10.0/30", "--timeout", "60"],
                                            log: dir.appendingPathComponent("peer.log"), name: "peer")
        #expect(try await peer.wait(timeout: 90) == 0, "\(peer.output.suffix(2000))")
        #expect(try Data(contentsOf: out) == Data(contentsOf: a.file))
    }
}
