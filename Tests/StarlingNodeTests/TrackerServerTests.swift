import Bencode
import BitTorrent
import NIOCore
import NIOPosix
import Storage
import Swarm
import Testing
@testable import StarlingNode
import Values
#if canImport(Glibc)
import Glibc
#endif

/// Shared test plumbing: a client event loop, temp folders, raw HTTP exchanges.
enum TrackerTestSupport {
    static let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)

    static func tempDir(_ tag: String) throws -> String {
        var template = Array("/tmp/starling-\(tag)-XXXXXX".utf8CString)
        guard let p = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else {
            throw StorageError("mkdtemp failed")
        }
        return String(cString: p)
    }

    static func removeTree(_ path: String) {
        guard path.hasPrefix("/tmp/starling-") else { return }
        if let files = try? DirectoryWalker.files(under: path) { for f in files { unlink(f.fullPath) } }
        // Folders bottom-up: longest paths first.
        var dirs: [String] = []
        func collect(_ d: String) {
            dirs.append(d)
            guard let h = opendir(d) else { return }
            defer { closedir(h) }
            while let e = readdir(h) {
                let name = withUnsafeBytes(of: e.pointee.d_name) { String(cString: $0.bindMemory(to: CChar.self).baseAddress!) }
                if name != ".", name != "..", FilePaths.isDirectory(d + "/" + name) { collect(d + "/" + name) }
            }
        }
        collect(path)
        for d in dirs.sorted(by: { $0.count > $1.count }) { rmdir(d) }
    }

    static func startServer(_ configure: (inout TrackerConfiguration) -> Void = { _ in }) async throws -> TrackerServer {
        var config = TrackerConfiguration(host: "127.0.0.1", port: 0, threads: 1)
        configure(&config)
        let server = TrackerServer(configuration: config)
        try await server.start()
        return server
    }

    static func url(_ server: TrackerServer) -> String { "http://127.0.0.1:\(server.port ?? 0)/announce" }

    static func peerID(_ n: Int) -> [UInt8] {
        var b = Array("-TS0001-".utf8) + Array(String(n).utf8)
        while b.count < 20 { b.append(UInt8(ascii: "0")) }
        return b
    }

    static func request(_ hash: InfoHash, _ n: Int, left: Int64, event: AnnounceEvent? = nil, compact: Bool = true,
                        ip: String? = nil) -> AnnounceRequest {
        AnnounceRequest(infoHash: hash, peerID: peerID(n), port: UInt16(7000 + n), left: left, event: event,
                        compact: compact, ip: ip)
    }

    /// Writes `bytes` on a fresh connection and returns everything read until the server closes
    /// (or `timeout` passes) and how long that took.
    static func rawExchange(port: Int, chunks: [[UInt8]], gap: TimeAmount = .zero,
                            timeout: TimeAmount = .seconds(5)) async throws -> (bytes: [UInt8], closed: Bool) {
        let promise = group.next().makePromise(of: Void.self)
        let collector = Collector(promise: promise)
        let channel = try await ClientBootstrap(group: group)
            .channelInitializer { ch in ch.eventLoop.makeCompletedFuture { try ch.pipeline.syncOperations.addHandler(collector) } }
            .connect(host: "127.0.0.1", port: port).get()
        for (i, c) in chunks.enumerated() {
            if i > 0, gap > .zero { try await Task.sleep(nanoseconds: UInt64(gap.nanoseconds)) }
            try? await channel.writeAndFlush(channel.allocator.buffer(bytes: c)).get()
        }
        let timer = channel.eventLoop.scheduleTask(in: timeout) { promise.succeed() }
        try await promise.futureResult.get()
        timer.cancel()
        let closed = !channel.isActive
        try? await channel.close().get()
        return try await channel.eventLoop.submit { (collector.bytes, closed) }.get()
    }

    final class Collector: ChannelInboundHandler, @unchecked Sendable {
        typealias InboundIn = ByteBuffer
        let promise: EventLoopPromise<Void>
        var bytes: [UInt8] = []
        init(promise: EventLoopPromise<Void>) { self.promise = promise }
        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            var b = unwrapInboundIn(data)
            bytes += b.readBytes(length: b.readableBytes) ?? []
        }
        func channelInactive(context: ChannelHandlerContext) { promise.succeed() }
        func errorCaught(context: ChannelHandlerContext, error: any Error) { context.close(promise: nil) }
    }

    /// A minimal valid single-file .torrent whose info-hash differs by `name`.
    static func torrentBytes(name: String) -> [UInt8] {
        BencodeValue.dict([
            ("announce", .string("http://127.0.0.1:1/announce")),
            ("info", .dict([("length", .integer(5)), ("name", .string(name)), ("piece length", .integer(16384)),
                            ("pieces", .bytes([UInt8](repeating: 1, count: 20)))])),
        ]).encoded()
    }
}

@Suite("Tracker server", .serialized)
struct TrackerServerTests {
    typealias S = TrackerTestSupport
    static let hash = InfoHash(bytes: [UInt8](repeating: 0xAB, count: 20))!

    @Test func announceAndScrapeThroughTheClient() async throws {
        let server = try await S.startServer()
        defer { Task { try? await server.shutdown() } }
        let client = HTTPTrackerClient(group: S.group)
        let first = try await client.announce(url: S.url(server), request: S.request(Self.hash, 1, left: 0, event: .started))
        #expect(first.peers.isEmpty && first.complete == 1 && first.incomplete == 0)
        #expect(first.interval >= 15 && first.interval <= 18 && first.minInterval == 7)
        let second = try await client.announce(url: S.url(server), request: S.request(Self.hash, 2, left: 100, event: .started))
        #expect(second.peers == [TrackerPeer(host: "127.0.0.1", port: 7001)])
        // The dictionary model hands out no peer ids (they would let anyone claim another's entry).
        let dict = try await client.announce(url: S.url(server), request: S.request(Self.hash, 2, left: 100, compact: false))
        #expect(dict.peers == [TrackerPeer(host: "127.0.0.1", port: 7001)])
        // The seeder is told about the leecher only.
        let seeder = try await client.announce(url: S.url(server), request: S.request(Self.hash, 1, left: 0))
        #expect(seeder.peers == [TrackerPeer(host: "127.0.0.1", port: 7002)])
        _ = try await client.announce(url: S.url(server), request: S.request(Self.hash, 2, left: 0, event: .completed))

        let other = InfoHash(bytes: [UInt8](repeating: 0x01, count: 20))!
        let scrape = try await client.scrape(url: S.url(server), infoHashes: [Self.hash, other])
        #expect(scrape.files[Self.hash] == ScrapeStats(complete: 2, incomplete: 0, downloaded: 1, left: 0))
        #expect(scrape.files[other] == ScrapeStats(complete: 0, incomplete: 0, downloaded: 0, left: 0))
        let all = try await client.scrape(url: S.url(server), infoHashes: [])
        #expect(all.files.keys.contains(Self.hash))

        _ = try await client.announce(url: S.url(server), request: S.request(Self.hash, 2, left: 0, event: .stopped))
        #expect(server.service.counts.peers == 1)
    }

    @Test func metricsAndHealth() async throws {
        let server = try await S.startServer()
        defer { Task { try? await server.shutdown() } }
        let client = HTTPTrackerClient(group: S.group)
        _ = try await client.announce(url: S.url(server), request: S.request(Self.hash, 1, left: 0))
        let port = try #require(server.port)
        let metrics = try await S.rawExchange(port: port, chunks: [Array("GET /metrics HTTP/1.0\r\n\r\n".utf8)])
        let text = String(decoding: metrics.bytes, as: UTF8.self)
        #expect(text.hasPrefix("HTTP/1.1 200 OK"))
        #expect(text.contains("starling_tracker_announces_total{result=\"ok\"}"))
        #expect(text.contains("starling_tracker_seeders{torrent=\"abababab\"} 1"))
        #expect(text.contains("starling_tracker_request_duration_seconds_bucket"))
        let health = try await S.rawExchange(port: port, chunks: [Array("GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n".utf8)])
        #expect(String(decoding: health.bytes, as: UTF8.self).hasSuffix("\r\n\r\nok\n"))
    }

    @Test(arguments: [
        ("GET /announce?info_hash=%zz&port=1 HTTP/1.1\r\n\r\n", "400 Bad Request", "bad percent-encoding"),
        ("GET /announce?info_hash=abc&peer_id=01234567890123456789&port=1&left=0 HTTP/1.1\r\n\r\n", "400", "info_hash must be 20 bytes"),
        ("GET /announce?info_hash=\(PercentEncoding.encode([UInt8](repeating: 1, count: 20)))&peer_id=01234567890123456789&left=0 HTTP/1.1\r\n\r\n",
         "400", "missing port"),
        ("\u{01}\u{02}garbage\r\n\r\n", "400", "malformed request line"),
        ("GET /announce HTTP/9.9\r\n\r\n", "505", "unsupported HTTP version"),
        ("POST /announce HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello", "400", "request bodies are not accepted"),
        ("GET /nothing-here HTTP/1.1\r\n\r\n", "404", "not found"),
        ("GET /announce?" + String(repeating: "a", count: 10_000) + " HTTP/1.1\r\n\r\n", "431", "larger than 8192"),
    ])
    func malformedRequestsGetAnErrorNotACrash(_ raw: String, _ status: String, _ reason: String) async throws {
        let server = try await S.startServer { $0.idleTimeout = 2 }
        defer { Task { try? await server.shutdown() } }
        let port = try #require(server.port)
        let r = try await S.rawExchange(port: port, chunks: [Array(raw.utf8)], timeout: .seconds(10))
        let text = String(decoding: r.bytes, as: UTF8.self)
        #expect(text.hasPrefix("HTTP/1.1 \(status)"), "got: \(text.prefix(200))")
        #expect(text.contains(reason), "got: \(text.prefix(300))")
        // Still serving.
        let health = try await S.rawExchange(port: port, chunks: [Array("GET /healthz HTTP/1.0\r\n\r\n".utf8)])
        #expect(String(decoding: health.bytes, as: UTF8.self).hasSuffix("ok\n"))
    }

    @Test func keepAliveAndPipelining() async throws {
        let server = try await S.startServer()
        defer { Task { try? await server.shutdown() } }
        let port = try #require(server.port)
        let q = S.request(Self.hash, 1, left: 0).queryString()
        let req = "GET /announce?\(q) HTTP/1.1\r\nHost: x\r\n\r\n"
        let r = try await S.rawExchange(port: port, chunks: [Array((req + req + "GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n").utf8)])
        let text = String(decoding: r.bytes, as: UTF8.self)
        #expect(text.components("HTTP/1.1 200 OK") == 3)
        #expect(r.closed)
    }

    @Test func slowClientsAreCutOff() async throws {
        let server = try await S.startServer { $0.idleTimeout = 1 }
        defer { Task { try? await server.shutdown() } }
        let port = try #require(server.port)
        let clock = ContinuousClock()
        // Idle after a partial head.
        let started = clock.now
        let idle = try await S.rawExchange(port: port, chunks: [Array("GET /annou".utf8)], timeout: .seconds(5))
        #expect(idle.closed && idle.bytes.isEmpty)
        #expect(started.duration(to: clock.now) < .seconds(3))
        // Slowloris: a byte every 300 ms keeps a read-idle timer happy, but not the request deadline.
        let trickle = "GET /healthz HTTP/1.1\r\nX: y\r\n\r\n".utf8.map { [$0] }
        let t0 = clock.now
        let slow = try await S.rawExchange(port: port, chunks: trickle, gap: .milliseconds(300), timeout: .seconds(15))
        #expect(slow.closed)
        #expect(!String(decoding: slow.bytes, as: UTF8.self).contains("ok"))
        #expect(t0.duration(to: clock.now) < .seconds(12))
        #expect(server.connectionCount == 0)
    }

    @Test func clientThatNeverReadsIsDropped() async throws {
        let server = try await S.startServer()
        defer { Task { try? await server.shutdown() } }
        let port = try #require(server.port)
        // Pipelines thousands of /metrics requests and never reads: answers pile up server-side.
        let channel = try await ClientBootstrap(group: S.group).channelOption(.autoRead, value: false)
            .connect(host: "127.0.0.1", port: port).get()
        let one = Array("GET /metrics HTTP/1.1\r\n\r\n".utf8)
        for _ in 0..<40 {
            try? await channel.writeAndFlush(channel.allocator.buffer(bytes: Array([[UInt8]](repeating: one, count: 100).joined()))).get()
        }
        var dropped = false
        for _ in 0..<100 where !dropped {
            try await Task.sleep(nanoseconds: 100_000_000)
            dropped = server.connectionCount == 0
        }
        #expect(dropped, "the server holds at most about 64 KiB of unread answers per connection, then closes")
        try? await channel.close()
    }

    @Test func connectionCapClosesExtraConnections() async throws {
        let server = try await S.startServer { $0.maxConnections = 1; $0.idleTimeout = 3 }
        defer { Task { try? await server.shutdown() } }
        let port = try #require(server.port)
        async let holder = S.rawExchange(port: port, chunks: [Array("GET /".utf8)], timeout: .seconds(2))
        try await Task.sleep(nanoseconds: 300_000_000)
        let refused = try await S.rawExchange(port: port, chunks: [Array("GET /healthz HTTP/1.0\r\n\r\n".utf8)], timeout: .seconds(2))
        #expect(refused.closed && refused.bytes.isEmpty)
        _ = try await holder
    }

    @Test func ipParameterOnlyFromTrustedNetworks() async throws {
        let client = HTTPTrackerClient(group: S.group)
        for trusted in [false, true] {
            let server = try await S.startServer { if trusted { $0.trustedNetworks = [try! CIDR(parsing: "127.0.0.0/8")] } }
            _ = try await client.announce(url: S.url(server), request: S.request(Self.hash, 1, left: 0, ip: "10.9.8.7"))
            let r = try await client.announce(url: S.url(server), request: S.request(Self.hash, 2, left: 5))
            #expect(r.peers.map(\.host) == [trusted ? "10.9.8.7" : "127.0.0.1"])
            try await server.shutdown()
        }
    }

    @Test func restartWithStateKeepsPeers() async throws {
        let dir = try S.tempDir("state")
        defer { S.removeTree(dir) }
        let state = dir + "/tracker.state"
        let client = HTTPTrackerClient(group: S.group)
        let a = try await S.startServer { $0.stateFile = state }
        _ = try await client.announce(url: S.url(a), request: S.request(Self.hash, 1, left: 0, event: .started))
        _ = try await client.announce(url: S.url(a), request: S.request(Self.hash, 2, left: 10, event: .started))
        _ = try await client.announce(url: S.url(a), request: S.request(Self.hash, 2, left: 0, event: .completed))
        try await a.shutdown()
        #expect(FilePaths.exists(state))

        let b = try await S.startServer { $0.stateFile = state }
        #expect(b.service.counts == (1, 2))
        let r = try await client.announce(url: S.url(b), request: S.request(Self.hash, 3, left: 10, event: .started))
        #expect(Set(r.peers.map(\.port)) == [7001, 7002])
        let scrape = try await client.scrape(url: S.url(b), infoHashes: [Self.hash])
        #expect(scrape.files[Self.hash] == ScrapeStats(complete: 2, incomplete: 1, downloaded: 1, left: 10))
        // Shut down (and save) before the folder is removed.
        try await b.shutdown()
    }

    @Test func corruptStateFileFailsStartWithAClearError() async throws {
        let dir = try S.tempDir("badstate")
        defer { S.removeTree(dir) }
        let state = dir + "/tracker.state"
        try FilePaths.writeAtomically(Array("d7:versioni1e6:swarmsld9:info_hash3:abceee".utf8), to: state)
        let server = TrackerServer(configuration: TrackerConfiguration(host: "127.0.0.1", port: 0, stateFile: state, threads: 1))
        await #expect(throws: (any Error).self) { try await server.start() }
        try? await server.shutdown()
    }

    @Test func allowDirServesOnlyListedTorrentsAndIsReRead() async throws {
        let dir = try S.tempDir("allow")
        defer { S.removeTree(dir) }
        let first = S.torrentBytes(name: "one.bin"), second = S.torrentBytes(name: "two.bin")
        try FilePaths.writeAtomically(first, to: dir + "/one.torrent")
        try FilePaths.writeAtomically(Array("not a torrent".utf8), to: dir + "/broken.torrent")
        let h1 = try Metainfo(bytes: first).infoHash, h2 = try Metainfo(bytes: second).infoHash
        let server = try await S.startServer { $0.allowDir = dir; $0.allowDirPollInterval = 1 }
        defer { Task { try? await server.shutdown() } }
        let client = HTTPTrackerClient(group: S.group)
        _ = try await client.announce(url: S.url(server), request: S.request(h1, 1, left: 0))
        await #expect(throws: TrackerError.failure("unregistered torrent: \(h2.hex) is not served by this tracker")) {
            _ = try await client.announce(url: S.url(server), request: S.request(h2, 1, left: 0))
        }
        try FilePaths.writeAtomically(second, to: dir + "/two.torrent")
        var accepted = false
        for _ in 0..<40 where !accepted {
            try await Task.sleep(nanoseconds: 250_000_000)
            accepted = (try? await client.announce(url: S.url(server), request: S.request(h2, 1, left: 0))) != nil
        }
        #expect(accepted, "a .torrent added to --allow-dir is served within a few seconds")
        // Scrapes only report allowed torrents.
        let scrape = try await client.scrape(url: S.url(server), infoHashes: [h1, Self.hash])
        #expect(scrape.files.keys.sorted { $0.hex < $1.hex } == [h1])
    }

    @Test func clientReportsUnreachableAndNonHTTPTrackers() async throws {
        let client = HTTPTrackerClient(group: S.group, timeout: .seconds(2))
        let req = S.request(Self.hash, 1, left: 0)
        await #expect(throws: TrackerClientError.self) { _ = try await client.announce(url: "udp://127.0.0.1:1/announce", request: req) }
        await #expect(throws: TrackerClientError.self) { _ = try await client.announce(url: "http://127.0.0.1:1/announce", request: req) }
        // A server that accepts and never answers: the client times out.
        let silent = try await ServerBootstrap(group: S.group).bind(host: "127.0.0.1", port: 0).get()
        let clock = ContinuousClock()
        let t0 = clock.now
        await #expect(throws: TrackerClientError.self) {
            _ = try await client.announce(url: "http://127.0.0.1:\(silent.localAddress?.port ?? 0)/announce", request: req)
        }
        #expect(t0.duration(to: clock.now) < .seconds(5))
        try await silent.close()
    }

    @Test func trackerURLs() throws {
        let u = try TrackerURL("http://[::1]:6969/announce?passkey=abc")
        #expect(u.host == "::1" && u.port == 6969 && u.pathAndQuery == "/announce?passkey=abc")
        #expect(u.target(adding: "x=1") == "/announce?passkey=abc&x=1")
        #expect(try u.scrapeURL().pathAndQuery == "/scrape?passkey=abc")
        #expect(try TrackerURL("http://tracker.example/x/announce.php").scrapeURL().pathAndQuery == "/x/scrape.php")
        #expect(try TrackerURL("http://h").port == 80)
        #expect(throws: TrackerClientError.self) { try TrackerURL("http://h/a").scrapeURL() }
        #expect(throws: TrackerClientError.self) { try TrackerURL("https://h/announce") }
        #expect(throws: TrackerClientError.self) { try TrackerURL("http://h:99999/announce") }
    }

    /// A stranger who knows a peer's id (a dictionary answer used to leak it) can neither stop
    /// it nor move it to its own port; a trusted proxy still announces for the peers behind it.
    @Test func peerIDHijackIsRefusedAndTrustedProxiesKeepTheirMeaning() throws {
        let proxy = try CIDR(parsing: "192.168.0.0/24")
        let service = TrackerService(configuration: TrackerConfiguration(host: "127.0.0.1", port: 0, trustedNetworks: [proxy]))
        func announce(_ request: AnnounceRequest, from address: String) -> HTTPResponse {
            service.handle(HTTPRequest(method: "GET", target: "/announce?" + request.queryString(), keepAlive: true),
                           remote: IPAddress(address), now: 1000)
        }
        func seenBy(_ n: Int) throws -> (peers: [TrackerPeer], body: [UInt8]) {
            let r = announce(S.request(Self.hash, n, left: 10, compact: false), from: "10.0.0.\(n)")
            return (try AnnounceResponse.decode(r.body).peers.filter { $0.port != UInt16(7000 + n) }, r.body)
        }
        #expect(announce(S.request(Self.hash, 1, left: 0), from: "10.0.0.1").status == 200)
        let victimID = S.peerID(1)
        let stop = AnnounceRequest(infoHash: Self.hash, peerID: victimID, port: 7001, left: 0, event: .stopped)
        #expect(announce(stop, from: "10.0.0.66").status == 200)
        let move = AnnounceRequest(infoHash: Self.hash, peerID: victimID, port: 9999, left: 0)
        #expect(announce(move, from: "10.0.0.66").status == 200)

        let (peers, body) = try seenBy(2)
        #expect(Set(peers) == [TrackerPeer(host: "10.0.0.1", port: 7001), TrackerPeer(host: "10.0.0.66", port: 9999)])
        #expect(!String(decoding: body, as: UTF8.self).contains("peer id"), "a dictionary answer hands out peer ids")

        // The proxy speaks for 10.0.0.1 (ip=), so it may stop that peer.
        let viaProxy = AnnounceRequest(infoHash: Self.hash, peerID: victimID, port: 7001, left: 0, event: .stopped, ip: "10.0.0.1")
        #expect(announce(viaProxy, from: "192.168.0.1").status == 200)
        #expect(try seenBy(2).peers == [TrackerPeer(host: "10.0.0.66", port: 9999)])
    }

    /// 100,000 swarms: a full scrape reads every one under the registry's lock, so a flood of
    /// them starved announces. Within the cache window the body is built once.
    @Test func fullScrapesWithinTheCacheWindowBuildTheBodyOnce() throws {
        let service = TrackerService(configuration: TrackerConfiguration(host: "127.0.0.1", port: 0, fullScrapeCacheSeconds: 5))
        service.restore(Self.swarms(100_000), now: 1000)
        #expect(service.counts.swarms == 100_000)
        let scrape = HTTPRequest(method: "GET", target: "/scrape", keepAlive: true)
        let me = IPAddress("10.0.0.1")
        let first = service.handle(scrape, remote: me, now: 1000)
        #expect(try ScrapeResponse.decode(first.body).files.count == TrackerService.maxFullScrape)
        for t in Int64(1000)...1004 {
            for _ in 0..<20 { #expect(service.handle(scrape, remote: me, now: t).body == first.body) }
            // Announces go on meanwhile; they do not rebuild the body.
            #expect(service.handle(HTTPRequest(method: "GET", target: "/announce?" + S.request(Self.hash, Int(t), left: 5).queryString(),
                                                      keepAlive: true), remote: me, now: t).status == 200)
        }
        #expect(service.fullScrapeBuilds == 1)
        _ = service.handle(scrape, remote: me, now: 1005)
        #expect(service.fullScrapeBuilds == 2)
        // A clock stepped back is not a reason to serve an answer from the future.
        _ = service.handle(scrape, remote: me, now: 990)
        #expect(service.fullScrapeBuilds == 3)
    }

    /// A dangling symlink or a symlink loop in --allow-dir used to fail the whole read (and the
    /// tracker's start); now each is a problem reported beside the torrents that were read.
    @Test func allowDirSkipsBrokenLinksAndLoops() throws {
        let dir = try S.tempDir("allow-links")
        defer { S.removeTree(dir) }
        let good = S.torrentBytes(name: "good.bin")
        try FilePaths.makeDirectories(dir + "/sub")
        try FilePaths.writeAtomically(good, to: dir + "/sub/good.torrent")
        #expect(symlink(dir + "/missing", dir + "/a-dangling.torrent") == 0)
        #expect(symlink(dir, dir + "/sub/loop") == 0)
        let list = try AllowList.load(folder: dir)
        #expect(list.infoHashes == [try Metainfo(bytes: good).infoHash])
        #expect(list.problems.contains { $0.contains("a-dangling.torrent") }, "\(list.problems)")
        #expect(list.problems.contains { $0.contains("sub/loop") }, "\(list.problems)")
        #expect(try AllowList.currentSignature(folder: dir) == list.signature)
    }

    /// A torrent dropped from --allow-dir leaves the full scrape at once, cache or not.
    @Test func allowListReloadDropsTheCachedFullScrape() throws {
        let dir = try S.tempDir("allow-cache")
        defer { S.removeTree(dir) }
        let first = S.torrentBytes(name: "one.bin"), second = S.torrentBytes(name: "two.bin")
        try FilePaths.writeAtomically(first, to: dir + "/one.torrent")
        try FilePaths.writeAtomically(second, to: dir + "/two.torrent")
        let h1 = try Metainfo(bytes: first).infoHash, h2 = try Metainfo(bytes: second).infoHash
        let service = TrackerService(configuration: TrackerConfiguration(host: "127.0.0.1", port: 0, allowDir: dir))
        #expect(try service.refreshAllowList())
        let me = IPAddress("10.0.0.1")
        for h in [h1, h2] {
            let q = S.request(h, 1, left: 0).queryString()
            #expect(service.handle(HTTPRequest(method: "GET", target: "/announce?" + q, keepAlive: true), remote: me, now: 1000).status == 200)
        }
        let scrape = HTTPRequest(method: "GET", target: "/scrape", keepAlive: true)
        #expect(Set(try ScrapeResponse.decode(service.handle(scrape, remote: me, now: 1000).body).files.keys) == [h1, h2])
        FilePaths.remove(dir + "/two.torrent")
        #expect(try service.refreshAllowList())
        #expect(Set(try ScrapeResponse.decode(service.handle(scrape, remote: me, now: 1000).body).files.keys) == [h1])
    }

    /// `count` swarms of one seeder each (distinct info-hashes).
    static func swarms(_ count: Int) -> TrackerSnapshot {
        TrackerSnapshot(swarms: (0..<count).map { t in
            var bytes = [UInt8](repeating: 0, count: 20)
            for i in 0..<4 { bytes[i] = UInt8(truncatingIfNeeded: t >> (8 * i)) }
            let peer = TrackerPeer(ip: IPAddress(bytes: [10, 1, UInt8(t >> 8 & 0xff), UInt8(t & 0xff)])!, port: 6881, peerID: S.peerID(t))
            return TrackerSnapshot.Swarm(infoHash: InfoHash(bytes: bytes)!, downloaded: 0,
                                         peers: [TrackerSnapshot.Peer(peer: peer, isSeeder: true, lastSeen: 1000)])
        })
    }

    /// The routes without a socket: `TrackerService` is what the NIO handler calls.
    @Test func fullScrapeIsBoundedAndServiceWorksWithoutSockets() throws {
        let service = TrackerService(configuration: TrackerConfiguration(host: "127.0.0.1", port: 0))
        let me = IPAddress("10.0.0.1")
        for t in 0...TrackerService.maxFullScrape {
            var bytes = [UInt8](repeating: 0, count: 20)
            bytes[0] = UInt8(t & 0xff)
            bytes[1] = UInt8(t >> 8)
            let q = S.request(InfoHash(bytes: bytes)!, 1, left: 0).queryString()
            let r = service.handle(HTTPRequest(method: "GET", target: "/announce?" + q, keepAlive: true), remote: me)
            #expect(r.status == 200)
        }
        #expect(service.counts == (TrackerService.maxFullScrape + 1, TrackerService.maxFullScrape + 1))
        let all = service.handle(HTTPRequest(method: "GET", target: "/scrape", keepAlive: true), remote: me)
        #expect(try ScrapeResponse.decode(all.body).files.count == TrackerService.maxFullScrape)
        // No source address (e.g. a unix socket) and no trusted ip=: refused, not guessed.
        let anon = service.handle(HTTPRequest(method: "GET", target: "/announce?" + S.request(Self.hash, 1, left: 0).queryString(),
                                                     keepAlive: true), remote: nil)
        #expect(anon.status == 400)
        #expect(service.handle(HTTPRequest(method: "DELETE", target: "/announce", keepAlive: true), remote: me).status == 405)
    }

    @Test func requestHeadParser() throws {
        let r = try HTTPRequestDecoder.parseHead(Array("GET /a?b=c HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n".utf8))
        #expect(r == HTTPRequest(method: "GET", target: "/a?b=c", keepAlive: true))
        #expect(r.path == "/a" && r.query == "b=c")
        let close = try HTTPRequestDecoder.parseHead(Array("GET / HTTP/1.1\nConnection: close\n\n".utf8))
        #expect(!close.keepAlive)
        #expect(throws: HTTPRequestError.self) { try HTTPRequestDecoder.parseHead(Array("GET http://x/ HTTP/1.1\r\n\r\n".utf8)) }
    }
}

extension String {
    /// How many times `needle` occurs (no Foundation).
    func components(_ needle: String) -> Int { split(separator: needle, omittingEmptySubsequences: false).count - 1 }
}
