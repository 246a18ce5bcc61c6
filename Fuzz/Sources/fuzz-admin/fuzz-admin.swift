import BitTorrent
import FuzzSupport
import Logging
import NIOCore
import NIOEmbedded
@testable import StarlingNode
import Values

/// An engine that is never started (no sockets): the routes only read its state and caps.
let loop = EmbeddedEventLoop()
let engine = try! PeerEngine(config: EngineConfig(ip: "127.0.0.1"), loop: loop,
                             logger: Logger(label: "fuzz", factory: { _ in SwiftLogNoOpLogHandler() }))
let token = "fuzz-admin-token"
let listener = NodeHTTPServer.Listener(IPEndpoint(ip: .loopbackIPv4, port: 9461), admin: true, token: token)
var actions: [AdminAction] = []

/// The admin API as a node serves it: the request head decoder, then the routes. Admin
/// requests carry their arguments in the query (the decoder refuses bodies). Never traps; an
/// action is taken only with the bearer token, and an added torrent is an absolute path.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    var decoder = HTTPRequestDecoder(maxHeadSize: 8192)
    var buffer = ByteBuffer(bytes: UnsafeBufferPointer(start: data, count: size))
    while let request = try? decoder.decode(buffer: &buffer) {
        actions.removeAll()
        let response = NodeRoutes.respond(request, source: engine, listener: listener,
                                          logger: engine.logger, onAdminAction: { actions.append($0) })
        require((200...599).contains(response.status), "status \(response.status)")
        if !actions.isEmpty {
            require(request.authorization == "Bearer \(token)", "admin action without the token")
            require(response.status == 202, "action taken with status \(response.status)")
        }
        for case .add(let torrent, _, _) in actions {
            require(torrent.hasPrefix("/"), "relative torrent path \(torrent)")
        }
        if response.status == 200, request.path == "/rate", request.authorization != "Bearer \(token)" {
            fatalError("rate changed without the token")
        }
    }
    return 0
}
