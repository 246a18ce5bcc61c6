import Foundation
import TestSupport
import Testing

/// Starling against clients nobody here wrote: libtorrent (python3-libtorrent), aria2 and
/// opentracker, all from Debian. Each test skips only when its tool is not installed.
@Suite(.serialized, .tags(.endToEnd))
struct CompatibilityTests {
    static let haveLibtorrent: Bool = {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
        p.arguments = ["-c", "import libtorrent"]
        p.standardError = FileHandle.nullDevice
        guard (try? p.run()) != nil else { return false }
        p.waitUntilExit()
        return p.terminationStatus == 0
    }()
    static let aria2 = TestPaths.which("aria2c")
    static let opentracker = TestPaths.which("opentracker")

    static func ltPeer(_ args: [String], dir: URL, name: String) throws -> TestProcess {
        try TestProcess("/usr/bin/python3", [TestPaths.fixtures.appendingPathComponent("lt_peer.py").path] + args,
                        log: dir.appendingPathComponent("\(name).log"), name: name)
    }

    static func aria2Peer(_ torrent: URL, into folder: URL, ip: String, port: Int, dir: URL) throws -> TestProcess {
        try TestProcess(aria2!, ["--dir", folder.path, "--interface", ip, "--listen-port", "\(port)",
                                 "--enable-dht=false", "--enable-dht6=false", "--bt-enable-lpd=false",
                                 "--enable-peer-exchange=false", "--seed-time=0", "--file-allocation=none",
                                 "--summary-interval=0", "--console-log-level=warn", "--bt-tracker-interval=2",
                                 torrent.path], log: dir.appendingPathComponent("aria2-\(ip).log"), name: "aria2 \(ip)")
    }

    static func tracker(ip: String, port: Int, dir: URL) async throws -> TestProcess {
        let t = try TestProcess.starling(["tracker", "--listen", "\(ip):\(port)", "--interval", "2"],
                                         log: dir.appendingPathComponent("tracker.log"), name: "tracker")
        try await t.waitForOutput("listening", timeout: 20)
        return t
    }

    /// A Starling peer downloads from a libtorrent seeder through opentracker.
    @Test(.enabled(if: haveLibtorrent && opentracker != nil && getuid() == 0,
                   "needs python3-libtorrent, opentracker, and root (Debian's opentracker chroots into its folder)"))
    func starlingPeerFromLibtorrentSeederThroughOpentracker() async throws {
        let dir = try TestPaths.scratch("compat-ot")
        defer { try? FileManager.default.removeItem(at: dir) }
        let seedDir = dir.appendingPathComponent("seed")
        try FileManager.default.createDirectory(at: seedDir, withIntermediateDirectories: true)
        let file = seedDir.appendingPathComponent("payload.bin")
        try randomData(6 * 1024 * 1024 + 123, seed: 21).write(to: file)
        let torrent = dir.appendingPathComponent("payload.torrent")
        let make = try Self.ltPeer(["make", file.path, "--tracker", "http://127.0.6.1:6971/announce",
                                    "--output", torrent.path, "--piece-kib", "64"], dir: dir, name: "lt-make")
        #expect(try await make.wait(timeout: 30) == 0)
        let (hash, _) = try await infoHash(of: torrent, in: dir)
        // Debian's opentracker serves only whitelisted info-hashes and chroots into -d.
        let otDir = dir.appendingPathComponent("ot")
        try FileManager.default.createDirectory(at: otDir, withIntermediateDirectories: true)
        try (hash + "\n").write(to: otDir.appendingPathComponent("whitelist.txt"), atomically: true, encoding: .utf8)
        let ot = try TestProcess(Self.opentracker!, ["-i", "127.0.6.1", "-p", "6971", "-P", "6971", "-d", otDir.path,
                                                     "-w", "/whitelist.txt"], log: dir.appendingPathComponent("ot.log"), name: "opentracker")
        defer { ot.stop() }
        try await Task.sleep(nanoseconds: 500_000_000)
        let seeder = try Self.ltPeer(["seed", torrent.path, seedDir.path, "--ip", "127.0.6.2", "--port", "7602"], dir: dir, name: "lt-seed")
        defer { seeder.stop() }
        try await seeder.waitForOutput("started", timeout: 20)
        try await Task.sleep(nanoseconds: 1_000_000_000)
        let out = dir.appendingPathComponent("copy.bin")
        let peer = try TestProcess.starling(["peer", torrent.path, out.path, "--ip", "127.0.6.3", "--port-range", "7603-7603",
                                             "--timeout", "60"], log: dir.appendingPathComponent("peer.log"), name: "starling peer")
        let status = try await peer.wait(timeout: 90)
        #expect(status == 0, "\(peer.output.suffix(2000))")
        #expect(try Data(contentsOf: out) == Data(contentsOf: file))
    }

    /// A mixed swarm around a Starling tracker and seeder: libtorrent and aria2 peers download
    /// from Starling (and from each other), a Starling peer downloads from them all.
    @Test(.enabled(if: haveLibtorrent && aria2 != nil, "needs python3-libtorrent and aria2"))
    func mixedSwarmAroundStarlingSeeder() async throws {
        let dir = try TestPaths.scratch("compat-mixed")
        defer { try? FileManager.default.removeItem(at: dir) }
        let file = dir.appendingPathComponent("payload.bin")
        try randomData(8 * 1024 * 1024 + 4321, seed: 22).write(to: file)
        let tracker = try await Self.tracker(ip: "127.0.7.1", port: 6972, dir: dir)
        defer { tracker.stop() }
        let torrent = try await makeTorrent(file, in: dir, extra: ["--tracker", "http://127.0.7.1:6972/announce", "--piece-size", "64KiB"])
        let seeder = try TestProcess.starling(["seed", torrent.path, file.path, "--ip", "127.0.7.2", "--port-range", "7702-7702"],
                                              log: dir.appendingPathComponent("seed.log"), name: "starling seed")
        defer { seeder.stop() }
        try await seeder.waitForOutput("seeding", timeout: 30)

        let ltDir = dir.appendingPathComponent("lt")
        let ariaDir = dir.appendingPathComponent("aria2")
        let lt = try Self.ltPeer(["peer", torrent.path, ltDir.path, "--ip", "127.0.7.3", "--port", "7703", "--linger", "8",
                                  "--timeout", "60"], dir: dir, name: "lt-peer")
        defer { lt.stop() }
        let aria = try Self.aria2Peer(torrent, into: ariaDir, ip: "127.0.7.4", port: 7704, dir: dir)
        defer { aria.stop() }
        let out = dir.appendingPathComponent("starling-copy.bin")
        let peer = try TestProcess.starling(["peer", torrent.path, out.path, "--ip", "127.0.7.5", "--port-range", "7705-7705",
                                             "--timeout", "60", "--seed-after", "5"],
                                            log: dir.appendingPathComponent("peer.log"), name: "starling peer")
        #expect(try await lt.wait(timeout: 90) == 0, "\(lt.output.suffix(1500))")
        #expect(try await aria.wait(timeout: 90) == 0, "\(aria.output.suffix(1500))")
        #expect(try await peer.wait(timeout: 90) == 0, "\(peer.output.suffix(1500))")
        let original = try Data(contentsOf: file)
        #expect(try Data(contentsOf: ltDir.appendingPathComponent("payload.bin")) == original)
        #expect(try Data(contentsOf: ariaDir.appendingPathComponent("payload.bin")) == original)
        #expect(try Data(contentsOf: out) == original)
    }

    /// A Starling peer fetches from a libtorrent seeder while an aria2 peer fetches from it.
    @Test(.enabled(if: haveLibtorrent && aria2 != nil, "needs python3-libtorrent and aria2"))
    func starlingRelaysBetweenLibtorrentAndAria2() async throws {
        let dir = try TestPaths.scratch("compat-relay")
        defer { try? FileManager.default.removeItem(at: dir) }
        let seedDir = dir.appendingPathComponent("seed")
        try FileManager.default.createDirectory(at: seedDir, withIntermediateDirectories: true)
        let file = seedDir.appendingPathComponent("payload.bin")
        try randomData(5 * 1024 * 1024, seed: 23).write(to: file)
        let tracker = try await Self.tracker(ip: "127.0.8.1", port: 6973, dir: dir)
        defer { tracker.stop() }
        let torrent = try await makeTorrent(file, in: dir, extra: ["--tracker", "http://127.0.8.1:6973/announce", "--piece-size", "32KiB"])
        let seeder = try Self.ltPeer(["seed", torrent.path, seedDir.path, "--ip", "127.0.8.2", "--port", "7802"], dir: dir, name: "lt-seed")
        defer { seeder.stop() }
        try await seeder.waitForOutput("started", timeout: 20)
        let out = dir.appendingPathComponent("copy.bin")
        let peer = try TestProcess.starling(["peer", torrent.path, out.path, "--ip", "127.0.8.3", "--port-range", "7803-7803",
                                             "--timeout", "60", "--seed-after", "20"],
                                            log: dir.appendingPathComponent("peer.log"), name: "starling peer")
        defer { peer.stop() }
        try await peer.waitForOutput("complete and verified", timeout: 60)
        // The libtorrent seeder leaves: aria2 can only get the data from Starling now.
        seeder.stop()
        let ariaDir = dir.appendingPathComponent("aria2")
        let aria = try Self.aria2Peer(torrent, into: ariaDir, ip: "127.0.8.4", port: 7804, dir: dir)
        defer { aria.stop() }
        #expect(try await aria.wait(timeout: 60) == 0, "\(aria.output.suffix(1500))")
        #expect(try Data(contentsOf: ariaDir.appendingPathComponent("payload.bin")) == Data(contentsOf: file))
        #expect(try Data(contentsOf: out) == Data(contentsOf: file))
    }
}
