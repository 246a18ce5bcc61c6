import BitTorrent
import Foundation
import Storage
import TestSupport
import Testing
@testable import StarlingNode

/// Stock clients through a Starling tracker: a libtorrent seeder and an aria2c leecher find
/// each other only through the tracker (DHT, LSD, PEX, UPnP, NAT-PMP off) and complete the
/// download; then aria2c seeds and a libtorrent leecher fetches from it.
@Suite("Tracker interoperability", .serialized, .tags(.endToEnd))
struct TrackerInteropTests {
    static let aria2 = "/usr/bin/aria2c"
    static let python = "/usr/bin/python3"
    static var toolsPresent: Bool {
        let present = FileManager.default.isExecutableFile(atPath: aria2) && FileManager.default.isExecutableFile(atPath: python)
            && (try? run(python, ["-c", "import libtorrent"], timeout: 20)) == 0
        if !present { print("skipping tracker interop test: needs \(aria2) and \(python) with libtorrent (apt-get install aria2 python3-libtorrent)") }
        return present
    }

    static let ltScript = """
    import libtorrent as lt, signal, sys, time
    mode, torrent, save, port = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    ses = lt.session({"listen_interfaces": f"127.0.0.1:{port}", "enable_dht": False, "enable_lsd": False,
                      "enable_upnp": False, "enable_natpmp": False, "stop_tracker_timeout": 1,
                      "alert_mask": lt.alert.category_t.status_notification | lt.alert.category_t.error_notification
                                    | lt.alert.category_t.tracker_notification})
    atp = lt.add_torrent_params()
    atp.ti = lt.torrent_info(torrent)
    atp.save_path = save
    atp.flags |= lt.torrent_flags.disable_pex
    if mode == "seed":
        atp.flags |= lt.torrent_flags.seed_mode
    h = ses.add_torrent(atp)
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    deadline = time.time() + 50
    while not stop and time.time() < deadline:
        ses.wait_for_alert(200)
        for a in ses.pop_alerts():
            if isinstance(a, lt.tracker_reply_alert):
                print(f"tracker reply: {a.num_peers} peers", flush=True)
            elif isinstance(a, lt.torrent_finished_alert) and mode == "peer":
                print("finished", flush=True)
                sys.exit(0)
            elif a.category() & lt.alert.category_t.error_notification:
                print(f"alert: {a.message()}", flush=True)
    sys.exit(0 if mode == "seed" else 3)
    """

    /// Runs a process to completion (bounded); returns its exit status.
    @discardableResult
    static func run(_ exe: String, _ args: [String], timeout: TimeInterval, log: String? = nil) throws -> Int32 {
        let p = try spawn(exe, args, log: log)
        let deadline = Date().addingTimeInterval(timeout)
        while p.isRunning && Date() < deadline { usleep(50_000) }
        if p.isRunning {
            p.terminate()
            p.waitUntilExit()
            return -1
        }
        return p.terminationStatus
    }

    static func spawn(_ exe: String, _ args: [String], log: String? = nil) throws -> Process {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: exe)
        p.arguments = args
        if let log {
            _ = FileManager.default.createFile(atPath: log, contents: nil)
            let h = try FileHandle(forWritingTo: URL(fileURLWithPath: log))
            p.standardOutput = h
            p.standardError = h
        } else {
            p.standardOutput = FileHandle.nullDevice
            p.standardError = FileHandle.nullDevice
        }
        try p.run()
        return p
    }

    static func stop(_ p: Process) {
        guard p.isRunning else { return }
        p.terminate()
        let deadline = Date().addingTimeInterval(5)
        while p.isRunning && Date() < deadline { usleep(50_000) }
        if p.isRunning { kill(p.processIdentifier, SIGKILL) }
        p.waitUntilExit()
    }

    /// SIGTERM to all at once, then SIGKILL whatever is still running after 3 s.
    static func stopAll(_ ps: [Process]) {
        for p in ps where p.isRunning { p.terminate() }
        let deadline = Date().addingTimeInterval(3)
        while ps.contains(where: { $0.isRunning }) && Date() < deadline { usleep(50_000) }
        for p in ps where p.isRunning { kill(p.processIdentifier, SIGKILL) }
        for p in ps { p.waitUntilExit() }
    }

    /// A port the kernel just handed out for 127.0.0.1 (bound, read, closed), so clients
    /// never collide with each other or with fixed ports of other tests.
    static func freePort() -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return Int.random(in: 20_000...30_000) }
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        addr.sin_port = 0
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        let ok = withUnsafeMutablePointer(to: &addr) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa in
                bind(fd, sa, len) == 0 && getsockname(fd, sa, &len) == 0
            }
        }
        return ok ? Int(UInt16(bigEndian: addr.sin_port)) : Int.random(in: 20_000...30_000)
    }

    @Test(.enabled(if: toolsPresent, "aria2c and python3-libtorrent are installed"), .timeLimit(.minutes(1)))
    func libtorrentAndAria2FindEachOtherThroughTheTracker() async throws {
        let dir = try TrackerTestSupport.tempDir("interop")
        var processes: [Process] = []
        defer {
            Self.stopAll(processes)
            TrackerTestSupport.removeTree(dir)
        }
        let server = try await TrackerTestSupport.startServer()
        defer { Task { try? await server.shutdown() } }
        let announce = TrackerTestSupport.url(server)

        // 3 MiB of random bytes in 64 KiB pieces.
        try FileManager.default.createDirectory(atPath: dir + "/seed", withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: dir + "/aria2", withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: dir + "/lt", withIntermediateDirectories: true)
        var rng = SystemRandomNumberGenerator()
        let payload = (0..<(3 << 20)).map { _ in UInt8.random(in: 0...255, using: &rng) }
        try FilePaths.writeAtomically(payload, to: dir + "/seed/payload.bin")
        var builder = TorrentBuilder()
        builder.trackers = [announce]
        builder.pieceLength = 64 * 1024
        let built = try builder.build(path: dir + "/seed/payload.bin")
        try FilePaths.writeAtomically(built.bytes, to: dir + "/payload.torrent")
        let hash = built.metainfo.infoHash
        let script = dir + "/lt.py"
        try Self.ltScript.write(toFile: script, atomically: true, encoding: .utf8)

        let began = Date()
        func waitFor(_ what: String, seconds: Double, _ condition: () -> Bool) async throws {
            defer { print("interop: \(what): done at \(Int(Date().timeIntervalSince(began) * 1000)) ms") }
            let deadline = Date().addingTimeInterval(seconds)
            while !condition() {
                guard Date() < deadline else {
                    let logs = ["lt-seed.log", "aria2.log", "aria2-seed.log", "lt-peer.log", "transmission.log"].map { name in
                        "--- \(name)\n" + ((try? String(contentsOfFile: dir + "/" + name, encoding: .utf8)) ?? "")
                    }
                    Issue.record("timed out waiting for \(what)\n\(logs.joined(separator: "\n"))")
                    throw CancellationError()
                }
                try await Task.sleep(nanoseconds: 100_000_000)
            }
        }

        // 1. libtorrent seeds; the tracker must see it as a seeder.
        let ltSeedPort = Self.freePort()
        processes.append(try Self.spawn(Self.python, [script, "seed", dir + "/payload.torrent", dir + "/seed", "\(ltSeedPort)"],
                                        log: dir + "/lt-seed.log"))
        try await waitFor("the libtorrent seeder's announce", seconds: 15) { server.service.snapshot().swarms.first?.peers.count == 1 }

        // 2. aria2c downloads, knowing the seeder only from the tracker, and exits when done.
        //    With transmission-cli installed, it leeches too, from whoever the tracker names
        //    (DHT, LSD, PEX off through its settings.json).
        let aria2Args = ["--enable-dht=false", "--enable-dht6=false", "--bt-enable-lpd=false", "--enable-peer-exchange=false",
                         "--disable-ipv6=true", "--file-allocation=none", "--summary-interval=0", "--console-log-level=notice",
                         "--bt-stop-timeout=40", "--allow-overwrite=true"]
        let aria2 = try Self.spawn(Self.aria2, aria2Args + ["--listen-port=\(Self.freePort())", "--seed-time=0",
                                                            "--dir=\(dir)/aria2", dir + "/payload.torrent"],
                                   log: dir + "/aria2.log")
        processes.append(aria2)
        let transmission = "/usr/bin/transmission-cli"
        let withTransmission = FileManager.default.isExecutableFile(atPath: transmission)
        if withTransmission {
            try FileManager.default.createDirectory(atPath: dir + "/tr/config", withIntermediateDirectories: true)
            try #"{"dht-enabled": false, "lpd-enabled": false, "pex-enabled": false, "utp-enabled": false, "port-forwarding-enabled": false}"#
                .write(toFile: dir + "/tr/config/settings.json", atomically: true, encoding: .utf8)
            // Slow to get going (about 10 s) and never exits by itself: started early, polled at the end.
            processes.append(try Self.spawn(transmission, ["-g", dir + "/tr/config", "-w", dir + "/tr", "-p", "\(Self.freePort())",
                                                           "-M", dir + "/payload.torrent"], log: dir + "/transmission.log"))
        } else {
            print("skipping the transmission-cli part: \(transmission) is not installed")
        }
        try await waitFor("aria2c to finish the download", seconds: 40) { !aria2.isRunning }
        #expect(aria2.terminationStatus == 0)
        let got = try FilePaths.readAll(dir + "/aria2/payload.bin", limit: 8 << 20)
        #expect(got == payload)
        // aria2c reported completion (and then stopped): a download counted (transmission may add one).
        #expect((server.service.snapshot().swarms.first { $0.infoHash == hash }?.downloaded ?? 0) >= 1)

        // 3. Reverse roles: aria2c seeds the copy it fetched (until killed: ratio 0 = no limit),
        //    and a libtorrent leecher fetches from it.
        Self.stop(processes[0])
        let aria2Seed = try Self.spawn(Self.aria2, aria2Args + ["--listen-port=\(Self.freePort())", "--seed-time=10",
                                                                "--seed-ratio=0.0", "--check-integrity=true",
                                                                "--dir=\(dir)/aria2", dir + "/payload.torrent"],
                                       log: dir + "/aria2-seed.log")
        processes.append(aria2Seed)
        try await waitFor("aria2c's seeding announce", seconds: 15) {
            // aria2 peer ids start with "A2-".
            server.service.snapshot().swarms.first { $0.infoHash == hash }?.peers
                .contains { $0.isSeeder && $0.peer.peerID?.starts(with: "A2-".utf8) == true } == true
        }
        let ltPeer = try Self.spawn(Self.python, [script, "peer", dir + "/payload.torrent", dir + "/lt", "\(Self.freePort())"],
                                    log: dir + "/lt-peer.log")
        processes.append(ltPeer)
        try await waitFor("the libtorrent leecher to finish", seconds: 25) { !ltPeer.isRunning }
        #expect(ltPeer.terminationStatus == 0)
        #expect(try FilePaths.readAll(dir + "/lt/payload.bin", limit: 8 << 20) == payload)
        if withTransmission {
            try await waitFor("transmission-cli to finish", seconds: 15) {
                (try? FilePaths.readAll(dir + "/tr/payload.bin", limit: 8 << 20)) == payload
            }
        }
    }
}

/// The `starling tracker` command itself: logs, SIGTERM, state saved, exit 0.
@Suite("starling tracker command", .serialized, .tags(.endToEnd))
struct TrackerCommandTests {
    /// `.build/debug/starling`, found from this source file's path (the package root is three levels up).
    static var binary: String {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        return root.appendingPathComponent(".build/debug/starling").path
    }
    static var binaryPresent: Bool {
        let present = FileManager.default.isExecutableFile(atPath: binary)
        if !present { print("skipping starling tracker CLI test: build \(binary) first (swift build)") }
        return present
    }

    @Test(.enabled(if: binaryPresent, "the starling binary is built"), .timeLimit(.minutes(1)))
    func runsUntilSIGTERMAndSavesState() async throws {
        let dir = try TrackerTestSupport.tempDir("cli")
        defer { TrackerTestSupport.removeTree(dir) }
        let log = dir + "/tracker.log"
        let state = dir + "/tracker.state"
        let p = try TrackerInteropTests.spawn(Self.binary, ["tracker", "--listen", "127.0.0.1:0", "--state", state], log: log)
        defer { TrackerInteropTests.stop(p) }
        // The log names the bound port.
        var port: Int?
        for _ in 0..<100 where port == nil {
            try await Task.sleep(nanoseconds: 100_000_000)
            let text = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
            if let r = text.range(of: "listening on 127.0.0.1:") {
                port = Int(text[r.upperBound...].prefix { $0.isNumber })
            }
        }
        let bound = try #require(port)
        let hash = InfoHash(bytes: [UInt8](repeating: 0x5A, count: 20))!
        let client = HTTPTrackerClient(group: TrackerTestSupport.group)
        _ = try await client.announce(url: "http://127.0.0.1:\(bound)/announce", request: TrackerTestSupport.request(hash, 1, left: 0))

        // promtool, when installed, must accept the exposition.
        let metrics = try await TrackerTestSupport.rawExchange(port: bound, chunks: [Array("GET /metrics HTTP/1.0\r\n\r\n".utf8)])
        let text = String(decoding: metrics.bytes, as: UTF8.self)
        let body = text.components(separatedBy: "\r\n\r\n").dropFirst().joined(separator: "\r\n\r\n")
        #expect(body.contains("starling_build_info"))
        if FileManager.default.isExecutableFile(atPath: "/usr/bin/promtool") {
            try body.write(toFile: dir + "/metrics.txt", atomically: true, encoding: .utf8)
            let check = Process()
            check.executableURL = URL(fileURLWithPath: "/bin/sh")
            check.arguments = ["-c", "/usr/bin/promtool check metrics < '\(dir)/metrics.txt' > '\(dir)/promtool.log' 2>&1"]
            try check.run()
            check.waitUntilExit()
            let out = (try? String(contentsOfFile: dir + "/promtool.log", encoding: .utf8)) ?? ""
            #expect(check.terminationStatus == 0, "promtool check metrics: \(out)")
        } else {
            print("skipping promtool check: /usr/bin/promtool is not installed")
        }

        p.terminate() // SIGTERM
        let deadline = Date().addingTimeInterval(10)
        while p.isRunning && Date() < deadline { try await Task.sleep(nanoseconds: 50_000_000) }
        #expect(!p.isRunning)
        #expect(p.terminationStatus == 0)
        let text2 = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
        #expect(text2.contains("received SIGTERM"))
        #expect(text2.contains("state saved to \(state): 1 swarms, 1 peers"))
        let saved = try TrackerStateFile.load(from: state)
        #expect(saved?.peerCount == 1)
    }
}
