// tracker-bench: announces per second against an HTTP tracker.
//
//   tracker-bench --url http://127.0.0.1:6969/announce [--peers 10000] [--torrents 100]
//                 [--duration 10] [--concurrency 64] [--keepalive] [--fill-only] [--print-hashes]
//
// Every peer has a distinct peer id and, within its torrent, a distinct port (trackers such as
// opentracker key peers by address and port, and every request here comes from 127.0.0.1).
// First every peer announces once (event=started) so the swarms are full, then the timed phase
// sends regular announces round-robin over the peers from --concurrency connections.
// Output is one line of JSON.
import BitTorrent
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import Values
#if canImport(Glibc)
import Glibc
#endif

struct Options {
    var host = "127.0.0.1"
    var port = 6969
    var path = "/announce"
    var peers = 10_000
    var torrents = 100
    var duration = 10.0
    var concurrency = 64
    var keepAlive = false
    var fillOnly = false
    var printHashes = false
    var threads = 1
}

func usage(_ why: String) -> Never {
    print("tracker-bench: \(why)")
    exit(2)
}

func int(_ s: String, _ name: String) -> Int {
    guard let n = Int(s) else { usage("\(name): not a whole number") }
    return n
}

func fixed2(_ x: Double) -> String {
    let cents = Int((x * 100).rounded())
    let frac = cents % 100
    return "\(cents / 100).\(frac < 10 ? "0" : "")\(frac)"
}

func parseOptions() -> Options {
    var o = Options()
    var args = CommandLine.arguments.dropFirst()
    func value(_ name: String) -> String {
        guard let v = args.popFirst() else { usage("\(name) needs a value") }
        return v
    }
    while let a = args.popFirst() {
        switch a {
        case "--url":
            let u = value(a)
            guard u.hasPrefix("http://") else { usage("--url must be http://HOST:PORT/PATH") }
            let rest = u.dropFirst(7)
            let slash = rest.firstIndex(of: "/") ?? rest.endIndex
            let auth = rest[..<slash]
            o.path = slash == rest.endIndex ? "/announce" : String(rest[slash...])
            guard let colon = auth.lastIndex(of: ":"), let p = Int(auth[auth.index(after: colon)...]) else {
                usage("--url needs an explicit port")
            }
            o.host = String(auth[..<colon])
            o.port = p
        case "--peers": o.peers = int(value(a), a)
        case "--torrents": o.torrents = int(value(a), a)
        case "--duration": o.duration = Double(int(value(a), a))
        case "--concurrency": o.concurrency = int(value(a), a)
        case "--threads": o.threads = int(value(a), a)
        case "--keepalive": o.keepAlive = true
        case "--fill-only": o.fillOnly = true
        case "--print-hashes": o.printHashes = true
        default: usage("unknown option \(a)")
        }
    }
    guard o.peers >= 1, o.torrents >= 1, o.concurrency >= 1 else { usage("counts must be positive") }
    return o
}

/// Deterministic info-hash of torrent `t`, so a whitelist can be written beforehand.
func infoHash(_ t: Int) -> [UInt8] {
    SHA1Hasher.hash(Array("starling-bench-torrent-\(t)".utf8)).bytes
}

func requestBytes(_ o: Options, peer i: Int, started: Bool) -> [UInt8] {
    let torrent = i % o.torrents
    var id = Array("-SB0001-".utf8)
    id += Array(String(i).utf8)
    while id.count < 20 { id.append(UInt8(ascii: "x")) }
    let port = 1024 + i / o.torrents
    let left = i % 4 == 0 ? 0 : 1_000_000  // a quarter seeders
    var q = "info_hash=\(PercentEncoding.encode(infoHash(torrent)))&peer_id=\(PercentEncoding.encode(id))"
    q += "&port=\(port)&uploaded=0&downloaded=0&left=\(left)&compact=1&numwant=50"
    if started { q += "&event=started" }
    let conn = o.keepAlive ? "" : "Connection: close\r\n"
    return Array("GET \(o.path)?\(q) HTTP/1.1\r\nHost: \(o.host):\(o.port)\r\nUser-Agent: tracker-bench\r\n\(conn)\r\n".utf8)
}

/// Shared between the event loop threads through a lock.
final class Stats: Sendable {
    struct Counts {
        var ok = 0, failures = 0, errors = 0, next = 0
        /// Requests lost because the server closed a kept-alive connection (opentracker closes
        /// after every answer): not errors, but after the first one workers stop reusing connections.
        var drops = 0
        var firstFailure: String?
    }
    let total: Int
    private let counts = NIOLockedValueBox(Counts())
    init(total: Int) { self.total = total }
    func locked<R: Sendable>(_ body: (inout Counts) -> R) -> R { counts.withLockedValue { body(&$0) } }
}

/// Drives one connection slot: send, read one response, then the next request (same connection
/// when keep-alive holds, a new one otherwise) until `stop` says so.
// @unchecked: a channel handler, used on its channel's event loop only.
final class Worker: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer
    let requests: [[UInt8]]
    let stats: Stats
    let keepAlive: Bool
    let shouldStop: @Sendable () -> Bool
    let reconnect: @Sendable () -> Void
    var buffer: [UInt8] = []
    var expected: Int?
    var serverCloses = false
    var inFlight = false
    var answered = 0

    init(requests: [[UInt8]], stats: Stats, keepAlive: Bool, shouldStop: @escaping @Sendable () -> Bool,
         reconnect: @escaping @Sendable () -> Void) {
        self.requests = requests
        self.stats = stats
        self.keepAlive = keepAlive
        self.shouldStop = shouldStop
        self.reconnect = reconnect
    }

    func channelActive(context: ChannelHandlerContext) {
        sendNext(context: context)
    }

    func sendNext(context: ChannelHandlerContext) {
        guard !shouldStop() else { context.close(promise: nil); return }
        let i = stats.locked { s -> Int in
            defer { s.next += 1 }
            return s.next % requests.count
        }
        buffer.removeAll(keepingCapacity: true)
        expected = nil
        serverCloses = false
        inFlight = true
        context.writeAndFlush(wrapOutboundOut(context.channel.allocator.buffer(bytes: requests[i])), promise: nil)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var b = unwrapInboundIn(data)
        buffer += b.readBytes(length: b.readableBytes) ?? []
        if expected == nil, let end = headEnd() {
            // Byte-level: the generator must stay cheaper than the trackers it measures.
            let head = buffer[..<end]
            serverCloses = find(head, "Connection: close") || find(head, "connection: close") || buffer.starts(with: "HTTP/1.0".utf8)
            if let at = firstIndex(head, "ontent-Length:") ?? firstIndex(head, "ontent-length:") {
                var i = at + 14
                while i < end, buffer[i] == 32 { i += 1 }
                var n = 0
                while i < end, buffer[i] >= 48, buffer[i] <= 57 { n = n * 10 + Int(buffer[i] - 48); i += 1 }
                expected = end + n
            }
        }
        if let e = expected, buffer.count >= e { complete(context: context) }
    }

    func firstIndex(_ hay: ArraySlice<UInt8>, _ needle: StaticString) -> Int? {
        needle.withUTF8Buffer { n -> Int? in
            guard hay.count >= n.count else { return nil }
            var i = hay.startIndex
            while i + n.count <= hay.endIndex {
                if hay[i] == n[0] {
                    var j = 1
                    while j < n.count, hay[i + j] == n[j] { j += 1 }
                    if j == n.count { return i }
                }
                i += 1
            }
            return nil
        }
    }

    func find(_ hay: ArraySlice<UInt8>, _ needle: StaticString) -> Bool { firstIndex(hay, needle) != nil }

    func headEnd() -> Int? {
        guard buffer.count >= 4 else { return nil }
        for i in 0...(buffer.count - 4) where buffer[i] == 13 && buffer[i + 1] == 10 && buffer[i + 2] == 13 && buffer[i + 3] == 10 {
            return i + 4
        }
        return nil
    }

    func complete(context: ChannelHandlerContext) {
        guard inFlight else { return }
        inFlight = false
        let good = buffer.count > 12 && buffer[9] == 50 && buffer[10] == 48 && buffer[11] == 48  // "HTTP/1.x 200"
            && !(headEnd().map { buffer[$0...].starts(with: "d14:failure reason".utf8) } ?? true)
        stats.locked { s in
            if good { s.ok += 1 } else {
                s.failures += 1
                if s.firstFailure == nil { s.firstFailure = String(decoding: buffer.prefix(300), as: UTF8.self) }
            }
        }
        answered += 1
        if keepAlive && !serverCloses && stats.locked({ $0.drops }) == 0 {
            sendNext(context: context)
        } else {
            context.close(promise: nil)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        if inFlight {
            // No Content-Length: the body ends at EOF.
            if expected == nil, headEnd() != nil { complete(context: context) } else {
                inFlight = false
                let dropped = buffer.isEmpty && answered > 0
                stats.locked { if dropped { $0.drops += 1 } else { $0.errors += 1 } }
            }
        }
        if !shouldStop() { reconnect() }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}

func now() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}

/// Runs `concurrency` connection slots over `requests` until `limit` requests completed or `seconds` passed.
func run(_ o: Options, group: any EventLoopGroup, requests: [[UInt8]], limit: Int?, seconds: Double) -> (Stats.Counts, Double) {
    let stats = Stats(total: requests.count)
    let deadline = now() + seconds
    let stopFlag = Stats(total: 0) // reused for its lock; `next` = 1 means stop
    let shouldStop: @Sendable () -> Bool = {
        if stopFlag.locked({ $0.next }) == 1 { return true }
        if let limit, stats.locked({ $0.next }) >= limit { return true }
        return now() >= deadline
    }
    @Sendable func connect() {
        let bootstrap = ClientBootstrap(group: group)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .channelInitializer { ch in
                ch.eventLoop.makeCompletedFuture {
                    try ch.pipeline.syncOperations.addHandler(
                        Worker(requests: requests, stats: stats, keepAlive: o.keepAlive, shouldStop: shouldStop,
                               reconnect: { connect() }))
                }
            }
        bootstrap.connect(host: o.host, port: o.port).whenComplete { result in
            switch result {
            case .success(let ch):
                ch.closeFuture.whenComplete { _ in }
            case .failure:
                stats.locked { $0.errors += 1 }
                if !shouldStop() { connect() }
            }
        }
    }
    let start = now()
    for _ in 0..<o.concurrency { connect() }
    // Poll until the phase ends and in-flight requests have drained.
    while true {
        usleep(20_000)
        let s = stats.locked { ($0.next, $0.ok + $0.failures + $0.errors) }
        if let limit, s.1 >= limit { break }
        if limit == nil, now() >= deadline { break }
        if stats.locked({ $0.errors }) > 1000 && s.1 == stats.locked({ $0.errors }) { break } // tracker down
    }
    let elapsed = now() - start
    stopFlag.locked { $0.next = 1 }
    usleep(300_000)
    return (stats.locked { $0 }, elapsed)
}

let o = parseOptions()
if o.printHashes {
    for t in 0..<o.torrents { print(Hex.encode(infoHash(t))) }
    exit(0)
}
let group = MultiThreadedEventLoopGroup(numberOfThreads: o.threads)
var fillOptions = o
fillOptions.concurrency = min(o.concurrency, 32)
// The fill is untimed and the same for every tracker: one connection per announce.
fillOptions.keepAlive = false
let fillRequests = (0..<o.peers).map { requestBytes(fillOptions, peer: $0, started: true) }
let (fill, fillTime) = run(fillOptions, group: group, requests: fillRequests, limit: o.peers, seconds: 600)
var line = "{\"url\":\"http://\(o.host):\(o.port)\(o.path)\",\"peers\":\(o.peers),\"torrents\":\(o.torrents),"
line += "\"keepalive\":\(o.keepAlive),\"fill_ok\":\(fill.ok),\"fill_seconds\":\(fixed2(fillTime))"
if !o.fillOnly {
    let timed = (0..<o.peers).map { requestBytes(o, peer: $0, started: false) }
    let (s, elapsed) = run(o, group: group, requests: timed, limit: nil, seconds: o.duration)
    let rate = Double(s.ok) / elapsed
    line += ",\"concurrency\":\(o.concurrency),\"seconds\":\(fixed2(elapsed)),\"ok\":\(s.ok),"
    line += "\"failures\":\(s.failures),\"errors\":\(s.errors),\"keepalive_drops\":\(s.drops),\"announces_per_second\":\(Int(rate))"
    if let f = s.firstFailure ?? fill.firstFailure {
        line += ",\"first_failure\":\"\(f.replacingOccurrences("\"", "'").replacingOccurrences("\r\n", " | "))\""
    }
} else if let f = fill.firstFailure {
    line += ",\"first_failure\":\"\(f.replacingOccurrences("\"", "'").replacingOccurrences("\r\n", " | "))\""
}
print(line + "}")
try? group.syncShutdownGracefully()

extension String {
    func replacingOccurrences(_ a: String, _ b: String) -> String { split(separator: a, omittingEmptySubsequences: false).joined(separator: b) }
}
