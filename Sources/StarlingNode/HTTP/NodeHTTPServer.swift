import BitTorrent
import Logging
import NIOCore
import NIOPosix
import Storage

/// The HTTP face of a node (or a `seed`/`peer` process): `/metrics`, `/healthz` and
/// `/status` on every listener; admin actions only on a listener made with `admin: true`,
/// and only with the bearer token when one is configured.
///
/// It runs on the engine's event loop, so answers read engine state directly.
public final class NodeHTTPServer: Sendable {
    public struct Listener: Sendable {
        public var host: String
        public var port: Int
        public var admin: Bool
        public var token: String?
        public init(host: String, port: Int, admin: Bool, token: String? = nil) {
            self.host = host
            self.port = port
            self.admin = admin
            self.token = token
        }
    }

    let engine: PeerEngine
    let logger: Logger
    /// Receives add/remove-torrent actions (a node); nil where the process serves one torrent.
    let onAdminAction: (@Sendable (AdminAction) -> Void)?
    private let channels = LockedBox<[Channel]>([])

    public init(engine: PeerEngine, logger: Logger, onAdminAction: (@Sendable (AdminAction) -> Void)? = nil) {
        self.engine = engine
        self.logger = logger
        self.onAdminAction = onAdminAction
    }

    /// Binds one listener; returns the bound address.
    @discardableResult
    public func listen(_ listener: Listener) async throws -> SocketAddress {
        let engine = self.engine
        let logger = self.logger
        let onAdminAction = self.onAdminAction
        let channel: Channel
        do {
            channel = try await ServerBootstrap(group: engine.loop)
                .serverChannelOption(.backlog, value: 64)
                .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
                .childChannelInitializer { ch in
                    ch.eventLoop.makeCompletedFuture {
                        let sync = ch.pipeline.syncOperations
                        try sync.addHandler(IdleStateHandler(readTimeout: .seconds(30)))
                        try sync.addHandler(ByteToMessageHandler(TrackerRequestDecoder(maxHeadSize: 8192)))
                        try sync.addHandler(HTTPRequestHandler(requestTimeout: .seconds(30)) { request, _ in
                            NodeRoutes.respond(request, engine: engine, listener: listener, logger: logger,
                                               onAdminAction: onAdminAction)
                        })
                    }
                }
                .bind(host: listener.host, port: listener.port).get()
        } catch {
            throw CLIVisibleError("cannot listen for HTTP on \(PeerAddress(host: listener.host, port: listener.port)): \(error)")
        }
        channels.withLock { $0.append(channel) }
        logger.info(listener.admin ? "admin and metrics listening" : "metrics listening",
                    metadata: ["address": "\(PeerAddress(host: listener.host, port: channel.localAddress?.port ?? listener.port))"])
        return channel.localAddress!
    }

    public func shutdown() async {
        for c in channels.withLock({ $0 }) { try? await c.close() }
    }
}

/// The routes, as a pure function of the request and the engine's state.
enum NodeRoutes {
    static func respond(_ request: TrackerHTTPRequest, engine: PeerEngine, listener: NodeHTTPServer.Listener,
                        logger: Logger, onAdminAction: (@Sendable (AdminAction) -> Void)? = nil) -> TrackerHTTPResponse {
        let query = try? QueryParameters(parsing: request.query)
        func param(_ key: String) -> String? { query?.values(key).first.map { String(decoding: $0, as: UTF8.self) } }
        /// nil when the caller may use admin actions, else the refusal.
        func refuseAdmin() -> TrackerHTTPResponse? {
            guard listener.admin else { return json(404, #"{"error":"admin actions are on the admin listener"}"#) }
            if let token = listener.token, request.authorization != "Bearer \(token)" {
                return json(401, #"{"error":"missing or wrong bearer token"}"#)
            }
            return nil
        }
        switch (request.method, String(request.path)) {
        case ("GET", "/metrics"):
            return TrackerHTTPResponse(status: 200, contentType: "text/plain; version=0.0.4; charset=utf-8",
                                       body: StarlingMetrics.exposition())
        case ("GET", "/healthz"):
            return TrackerHTTPResponse(status: 200, body: Array("ok\n".utf8))
        case ("GET", "/status"):
            return json(200, engine.statusJSON())
        case ("POST", "/rate"), ("PUT", "/rate"):
            if let refusal = refuseAdmin() { return refusal }
            func rate(_ key: String, current: Int64) -> Int64?? {
                guard let raw = query?.values(key).first else { return .some(current) }
                return .some(Units.parseRate(String(decoding: raw, as: UTF8.self)))
            }
            guard let up = rate("up", current: engine.limiter.rate(.up)) ?? nil,
                  let down = rate("down", current: engine.limiter.rate(.down)) ?? nil else {
                return json(400, #"{"error":"up and down must be rates such as 40mbit, 5MB or 0"}"#)
            }
            if let text = param("max_change") {
                let change = MaxChange(parsing: text)
                guard text == "off" || change != nil else {
                    return json(400, #"{"error":"max_change must be RATE/INTERVAL, e.g. 5mbit/60s, or off"}"#)
                }
                engine.limiter.setMaxChange(change)
                logger.info("slew limit changed", metadata: ["max_change": "\(text)"])
            }
            engine.limiter.setRates(up: up, down: down)
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

    static func json(_ status: Int, _ text: String) -> TrackerHTTPResponse {
        TrackerHTTPResponse(status: status, contentType: "application/json", body: Array(text.utf8))
    }
}

/// What an operator asks a node to do through its admin endpoint.
public enum AdminAction: Sendable {
    case add(torrent: String, path: String?, seed: Bool)
    case remove(InfoHash)
}
