import BitTorrent
import NIOCore
import NIOHTTP1
import NIOPosix
import Values

/// Why a tracker could not be asked.
public struct TrackerClientError: Error, Sendable, Equatable, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// An `http://` tracker URL split into what a GET needs.
public struct TrackerURL: Sendable, Equatable {
    public var host: String
    public var port: Int
    /// Path plus any query the URL already carries, e.g. `/announce?passkey=x`.
    public var pathAndQuery: String

    public init(_ url: String) throws(TrackerClientError) {
        let parsed: URLAddress
        do throws(URLAddress.ParseError) {
            parsed = try URLAddress(parsing: url)
        } catch {
            throw TrackerClientError("\(url): \(error)")
        }
        guard parsed.scheme == .http else { throw TrackerClientError("\(url): only http:// tracker URLs are supported") }
        guard parsed.userInfo == nil else { throw TrackerClientError("\(url): missing or unsupported host") }
        host = parsed.host
        port = parsed.port
        pathAndQuery = parsed.pathAndQuery
    }

    /// The same URL with `query` appended (after `?` or `&`).
    func target(adding query: String) -> String {
        guard !query.isEmpty else { return pathAndQuery }
        return pathAndQuery + (pathAndQuery.contains("?") ? "&" : "?") + query
    }

    /// The scrape URL by the BEP 48 convention: the last path component `announce...` becomes `scrape...`.
    func scrapeURL() throws(TrackerClientError) -> TrackerURL {
        let q = pathAndQuery.firstIndex(of: "?") ?? pathAndQuery.endIndex
        let path = pathAndQuery[..<q]
        let lastSlash = path.lastIndex(of: "/") ?? path.startIndex
        let last = path[path.index(after: lastSlash)...]
        if last.hasPrefix("scrape") { return self }
        guard last.hasPrefix("announce") else {
            throw TrackerClientError("tracker \(host): path \(path) does not end in 'announce', so it has no scrape URL")
        }
        var copy = self
        copy.pathAndQuery = String(path[...lastSlash]) + "scrape" + last.dropFirst("announce".count) + pathAndQuery[q...]
        return copy
    }
}

/// Announces to and scrapes HTTP trackers (BEP 3, BEP 48), over NIO.
///
/// One short connection per request (as most clients do), a hard timeout and a bounded
/// response body; every failure is a `TrackerClientError` or a `TrackerError` with a clear text.
public final class HTTPTrackerClient: Sendable {
    private let group: any EventLoopGroup
    public let timeout: TimeAmount
    public let maxResponseSize: Int
    public let userAgent: String
    /// Source address of requests: a peer announces from the address it serves on, so the
    /// tracker (which takes the connection's source address) hands out the right one.
    public let localAddress: SocketAddress?

    public init(group: any EventLoopGroup, timeout: TimeAmount = .seconds(10),
                maxResponseSize: Int = AnnounceResponse.maxResponseSize, userAgent: String = "starling",
                localAddress: SocketAddress? = nil) {
        self.group = group
        self.localAddress = localAddress
        self.timeout = timeout
        self.maxResponseSize = maxResponseSize
        self.userAgent = userAgent
    }

    public func announce(url: String, request: AnnounceRequest) async throws -> AnnounceResponse {
        let u = try TrackerURL(url)
        let body = try await get(u, target: u.target(adding: request.queryString()))
        return try AnnounceResponse.decode(body)
    }

    /// Scrapes `infoHashes` (all swarms when empty) at the scrape URL derived from an announce URL.
    public func scrape(url: String, infoHashes: [InfoHash]) async throws -> ScrapeResponse {
        let u = try TrackerURL(url).scrapeURL()
        let body = try await get(u, target: u.target(adding: ScrapeRequest(infoHashes: infoHashes).queryString()))
        return try ScrapeResponse.decode(body)
    }

    /// GETs `target` and returns the body. A non-200 answer whose body is a bencoded
    /// `failure reason` throws that reason; other non-200 answers throw the status.
    func get(_ url: TrackerURL, target: String) async throws -> [UInt8] {
        let (status, body) = try await fetch(url, target: target)
        if status != 200 {
            if let reason = AnnounceResponse.failureReason(in: body) { throw TrackerError.failure(reason) }
            throw TrackerClientError("\(url.host):\(url.port) answered HTTP \(status)")
        }
        return body
    }

    /// One plain HTTP/1.1 request (also used by `starling ctl` and `starling status`):
    /// returns the status code and the body, bounded by `maxResponseSize`.
    public func fetch(_ url: TrackerURL, target: String, method: String = "GET",
                      headers: [(String, String)] = []) async throws -> (status: Int, body: [UInt8]) {
        let promise = group.next().makePromise(of: (HTTPResponseStatus, [UInt8]).self)
        let maxSize = maxResponseSize
        var bootstrap = ClientBootstrap(group: group)
            .connectTimeout(timeout)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHTTPClientHandlers()
                    try channel.pipeline.syncOperations.addHandler(ResponseCollector(promise: promise, maxSize: maxSize))
                }
            }
        if let local = localAddress { bootstrap = bootstrap.bind(to: local) }
        let channel: any Channel
        do {
            channel = try await bootstrap.connect(host: url.host, port: url.port).get()
        } catch {
            promise.fail(error)
            throw TrackerClientError("cannot connect to \(url.host):\(url.port): \(error)")
        }
        let timeout = channel.eventLoop.scheduleTask(in: self.timeout) {
            promise.fail(TrackerClientError("\(url.host):\(url.port) did not answer within \(self.timeout.nanoseconds / 1_000_000_000) s"))
            channel.close(promise: nil)
        }
        var head = HTTPRequestHead(version: .http1_1, method: HTTPMethod(rawValue: method), uri: target)
        let hostHeader = url.host.contains(":") ? "[\(url.host)]" : url.host
        head.headers.add(name: "Host", value: url.port == 80 ? hostHeader : "\(hostHeader):\(url.port)")
        head.headers.add(name: "User-Agent", value: userAgent)
        head.headers.add(name: "Accept-Encoding", value: "identity")
        head.headers.add(name: "Connection", value: "close")
        if method != "GET" { head.headers.add(name: "Content-Length", value: "0") }
        for (name, value) in headers { head.headers.add(name: name, value: value) }
        channel.write(HTTPClientRequestPart.head(head), promise: nil)
        channel.writeAndFlush(HTTPClientRequestPart.end(nil), promise: nil)
        defer {
            timeout.cancel()
            channel.close(promise: nil)
        }
        let (status, body) = try await promise.futureResult.get()
        return (Int(status.code), body)
    }
}

/// Collects one response, failing once the body exceeds `maxSize` (a hostile or broken
/// tracker cannot make the client buffer without bound).
private final class ResponseCollector: ChannelInboundHandler {
    typealias InboundIn = HTTPClientResponsePart
    private let promise: EventLoopPromise<(HTTPResponseStatus, [UInt8])>
    private let maxSize: Int
    private var status: HTTPResponseStatus?
    private var body: [UInt8] = []

    init(promise: EventLoopPromise<(HTTPResponseStatus, [UInt8])>, maxSize: Int) {
        self.promise = promise
        self.maxSize = maxSize
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            status = head.status
        case .body(var buffer):
            guard body.count + buffer.readableBytes <= maxSize else {
                promise.fail(TrackerClientError("tracker response is larger than \(maxSize) bytes"))
                context.close(promise: nil)
                return
            }
            body += buffer.readBytes(length: buffer.readableBytes) ?? []
        case .end:
            promise.succeed((status ?? .ok, body))
            context.close(promise: nil)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        promise.fail(TrackerClientError("tracker closed the connection before a complete response"))
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        promise.fail(TrackerClientError("tracker response is malformed: \(error)"))
        context.close(promise: nil)
    }
}
