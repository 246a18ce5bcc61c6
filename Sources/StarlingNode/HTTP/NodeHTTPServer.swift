import BitTorrent
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import NodeConfig
import ServiceLifecycle
import Storage
import Values

/// What the node's HTTP endpoints read and change: the peer engine, or on a tracker-only
/// node nothing but the version. Its members are used on `eventLoop` only, where the HTTP
/// server runs.
public protocol NodeStatusSource: AnyObject, Sendable {
    var eventLoop: any EventLoop { get }
    /// On `eventLoop`.
    func status() -> NodeStatus
    /// The host's shaper, when the node moves peer-wire bytes.
    var rateLimiter: HostRateLimiter? { get }
}

/// The status of a node that serves no torrents (a tracker only).
public final class TrackerOnlyStatus: NodeStatusSource {
    public let eventLoop: any EventLoop
    public init(eventLoop: any EventLoop) { self.eventLoop = eventLoop }
    public func status() -> NodeStatus {
        NodeStatus(version: EngineConfig.version, uptimeSeconds: Double(eventLoop.now.uptimeNanoseconds) / 1e9,
                   ip: "", port: 0, rateCaps: .init(up: 0, down: 0), torrents: [])
    }
    public var rateLimiter: HostRateLimiter? { nil }
}

/// The HTTP face of a node (or a `seed`/`peer` process): `/metrics`, `/healthz` and
/// `/status` on every listener; admin actions only on a listener made with `admin: true`,
/// and only with the bearer token when one is configured. A `Service`: it binds its
/// listeners when run and closes them on graceful shutdown.
public final class NodeHTTPServer: Service, Sendable {
    public struct Listener: Sendable {
        public var endpoint: IPEndpoint
        public var admin: Bool
        public var token: String?
        public init(_ endpoint: IPEndpoint, admin: Bool, token: String? = nil) {
            self.endpoint = endpoint
            self.admin = admin
            self.token = token
        }
    }

    let source: any NodeStatusSource
    let listeners: [Listener]
    let logger: Logger
    /// Receives add/remove-torrent actions (a node); nil where the process serves one torrent.
    let onAdminAction: (@Sendable (AdminAction) -> Void)?
    private let channels = NIOLockedValueBox<[any Channel]>([])

    public init(source: any NodeStatusSource, listeners: [Listener], logger: Logger,
                onAdminAction: (@Sendable (AdminAction) -> Void)? = nil) {
        self.source = source
        self.listeners = listeners
        self.logger = logger
        self.onAdminAction = onAdminAction
    }

    public func run() async throws {
        do {
            for l in listeners { try await listen(l) }
        } catch {
            await close()
            throw error
        }
        try? await gracefulShutdown()
        await close()
    }

    /// Binds one listener; returns the bound address.
    @discardableResult
    public func listen(_ listener: Listener) async throws -> SocketAddress {
        let source = self.source
        let logger = self.logger
        let onAdminAction = self.onAdminAction
        let channel: any Channel
        do {
            channel = try await ServerBootstrap(group: source.eventLoop)
                .serverChannelOption(.backlog, value: 64)
                .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
                .childChannelInitializer { ch in
                    ch.eventLoop.makeCompletedFuture {
                        let sync = ch.pipeline.syncOperations
                        try sync.addHandler(IdleStateHandler(readTimeout: .seconds(30)))
                        try sync.addHandler(ByteToMessageHandler(HTTPRequestDecoder(maxHeadSize: 8192)))
                        try sync.addHandler(HTTPRequestHandler(requestTimeout: .seconds(30)) { request, _ in
                            NodeRoutes.respond(request, source: source, listener: listener, logger: logger,
                                               onAdminAction: onAdminAction)
                        })
                    }
                }
                .bind(host: listener.endpoint.host, port: Int(listener.endpoint.port)).get()
        } catch {
            throw SettingError(listener.admin ? .adminListen : .metricsListen, "cannot listen for HTTP on \(listener.endpoint): \(error)")
        }
        channels.withLockedValue { $0.append(channel) }
        let bound = IPEndpoint(ip: listener.endpoint.ip, port: UInt16(channel.localAddress?.port ?? Int(listener.endpoint.port)))
        logger.info(listener.admin ? "admin and metrics listening" : "metrics listening", metadata: ["address": "\(bound)"])
        return channel.localAddress!
    }

    /// Closes every listener.
    public func close() async {
        for c in channels.withLockedValue({ l in defer { l = [] }; return l }) { try? await c.close() }
    }
}

/// The routes, as a pure function of the request and the node's state.
enum NodeRoutes {
    static func respond(_ request: HTTPRequest, source: any NodeStatusSource, listener: NodeHTTPServer.Listener,
                        logger: Logger, onAdminAction: (@Sendable (AdminAction) -> Void)? = nil) -> HTTPResponse {
        let query = try? QueryParameters(parsing: request.query)
        func param(_ key: String) -> String? { query?.values(key).first.map { String(decoding: $0, as: UTF8.self) } }
        /// nil when the caller may use admin actions, else the refusal.
        func refuseAdmin() -> HTTPResponse? {
            guard listener.admin else { return json(404, #"{"error":"admin actions are on the admin listener"}"#) }
            if let token = listener.token, request.authorization != "Bearer \(token)" {
                return json(401, #"{"error":"missing or wrong bearer token"}"#)
            }
            return nil
        }
        switch (request.method, String(request.path)) {
        case ("GET", "/metrics"):
            return HTTPResponse(status: 200, contentType: "text/plain; version=0.0.4; charset=utf-8",
                                       body: StarlingMetrics.exposition())
        case ("GET", "/healthz"):
            return HTTPResponse(status: 200, body: Array("ok\n".utf8))
        case ("GET", "/status"):
            return HTTPResponse(status: 200, contentType: "application/json", body: source.status().json())
        case ("POST", "/rate"), ("PUT", "/rate"):
            if let refusal = refuseAdmin() { return refusal }
            guard let limiter = source.rateLimiter else {
                return json(501, #"{"error":"this node moves no peer-wire bytes: it has no rate caps"}"#)
            }
            func rate(_ key: String, current: Int64) -> Int64?? {
                guard let raw = query?.values(key).first else { return .some(current) }
                return .some(Units.parseRate(String(decoding: raw, as: UTF8.self)))
            }
            guard let up = rate("up", current: limiter.rate(.up)) ?? nil,
                  let down = rate("down", current: limiter.rate(.down)) ?? nil else {
                return json(400, #"{"error":"up and down must be rates such as 40mbit, 5MB or 0"}"#)
            }
            if let text = param("max_change") {
                let change = MaxChange(parsing: text)
                guard text == "off" || change != nil else {
                    return json(400, #"{"error":"max_change must be RATE/INTERVAL, e.g. 5mbit/60s, or off"}"#)
                }
                limiter.setMaxChange(change)
                logger.info("slew limit changed", metadata: ["max_change": "\(text)"])
            }
            limiter.setRates(up: up, down: down)
            logger.info("rate caps changed", metadata: ["up": "\(Units.formatRate(Double(up)))", "down": "\(Units.formatRate(Double(down)))"])
            let change = param("max_change").map { #","max_change":"\#($0)""# } ?? ""
            return json(200, #"{"up":\#(up),"down":\#(down)\#(change)}"#)
        case ("POST", "/torrents"), ("DELETE", "/torrents"):
            if let refusal = refuseAdmin() { return refusal }
            guard let onAdminAction else {
                return json(501, #"{"error":"this process serves one torrent; add and remove torrents on a starling node"}"#)
            }
            if request.method == "POST" {
                guard let torrent = param("torrent"), torrent.hasPrefix("/") else {
                    return json(400, #"{"error":"torrent= must be the absolute path of a .torrent on the node"}"#)
                }
                // Answer the operator now; the node's read refuses it again should it change meanwhile.
                guard FilePaths.isRegularFile(torrent) else {
                    return json(400, "{\"error\":" + JSONText.quote("\(torrent) is missing or not a regular file") + "}")
                }
                let mode = param("mode") ?? "fetch"
                guard mode == "fetch" || mode == "seed" else { return json(400, #"{"error":"mode= is fetch or seed"}"#) }
                onAdminAction(.add(torrent: torrent, path: param("path"), seed: mode == "seed"))
            } else {
                guard let hex = param("info_hash"), let hash = InfoHash(hex: hex) else {
                    return json(400, #"{"error":"info_hash= must be 40 hex digits"}"#)
                }
                onAdminAction(.remove(hash))
            }
            return json(202, #"{"accepted":true,"see":"/status"}"#)
        case (_, "/metrics"), (_, "/healthz"), (_, "/status"), (_, "/rate"), (_, "/torrents"):
            return json(405, #"{"error":"method not allowed"}"#)
        default:
            return json(404, #"{"error":"not found"}"#)
        }
    }

    static func json(_ status: Int, _ text: String) -> HTTPResponse {
        HTTPResponse(status: status, contentType: "application/json", body: Array(text.utf8))
    }
}

/// What an operator asks a node to do through its admin endpoint.
public enum AdminAction: Sendable {
    case add(torrent: String, path: String?, seed: Bool)
    case remove(InfoHash)
}
