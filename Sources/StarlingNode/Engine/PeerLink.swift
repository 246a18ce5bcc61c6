import BitTorrent
import NIOCore

/// What a torrent session knows about one connected peer. Lives on the engine's loop.
final class PeerLink: @unchecked Sendable {  // confined to the engine loop
    let id: Int
    let channel: Channel
    let outbound: Bool
    let remote: PeerAddress
    var peerID: [UInt8] = []
    var fast = false

    var amChoking = true
    var amInterested = false
    var peerChoking = true
    var peerInterested = false
    var bitfield: Bitfield

    /// Our requests in flight to this peer.
    var outstanding: Set<BlockRequest> = []
    /// Blocks arrived in this read batch: refill the pipeline when the batch ends.
    var needsRequests = false
    /// Their requests waiting to be served, and how many piece messages are written but not yet sent.
    var incoming: [BlockRequest] = []
    var uploadsInFlight = 0
    var allowedFast: Set<Int> = []
    /// Pieces this seed refused lately (it wants us to fetch them from another peer).
    var refused: [Int: NIODeadline] = [:]
    /// Pieces assigned to this peer (we are a distinct-first seed) and not yet sent in full.
    var suggestedByUs: Set<Int> = []
    /// Pieces this peer suggested to us, oldest first; `suggests` once it has sent any.
    var suggestedToUs: [Int] = []
    var suggests = false

    var downloaded = RateMeter()
    var uploaded = RateMeter()
    var lastBlockAt: NIODeadline
    var connectedAt: NIODeadline
    var snubbed = false
    /// Last time (loop uptime, ns) a block moved either way: connection turnover evicts the idle.
    var lastUsefulAt: UInt64 = 0
    /// The protocol violation we closed the connection for, logged and counted when it detaches.
    var closeReason: String?
    /// Messages and bytes queued while the connection was not writable (the peer is not
    /// reading): past `maxUnreadMessages` or `maxUnreadBytes` the connection is closed.
    private var unreadMessages = 0
    private var unreadBytes = 0
    /// Address a peer listens on, once known (the remote address for outbound links).
    var listenAddress: PeerAddress?

    init(id: Int, channel: Channel, outbound: Bool, remote: PeerAddress, pieceCount: Int) {
        self.id = id
        self.channel = channel
        self.outbound = outbound
        self.remote = remote
        bitfield = Bitfield(count: pieceCount)
        lastBlockAt = .now()
        connectedAt = .now()
        if outbound { listenAddress = remote }
    }

    /// The peer reads again: its queue drained below the low-water mark.
    func becameWritable() {
        unreadMessages = 0
        unreadBytes = 0
    }

    var isSeed: Bool { bitfield.isComplete }
    /// A Starling seed that suggests pieces hands each peer its own: ask it for nothing else.
    /// (Other clients' suggestions are hints about their cache, not assignments.)
    var assignsPieces: Bool { suggests && isSeed && peerID.starts(with: EngineConfig.peerIDPrefix) }

    /// Most messages and bytes queued for a peer that stopped reading. Piece data waits for
    /// writability (`TorrentSession.serve`), but rejects, haves, chokes and suggests answer
    /// what the peer sends: without a bound, a peer that sends requests and never reads grew
    /// a seed by 860 MiB. A reading peer drains its queue within a round trip; a slow one
    /// gets at most a few hundred haves and rejects in that time.
    static let maxUnreadMessages = 4096
    static let maxUnreadBytes = 1 << 20

    func send(_ message: PeerMessage, flush: Bool = true) {
        if !channel.isWritable {
            guard closeReason == nil else { return }
            unreadMessages += 1
            unreadBytes += message.wireLength
            if unreadMessages > Self.maxUnreadMessages || unreadBytes > Self.maxUnreadBytes {
                closeReason = "peer does not read: \(unreadMessages) messages (\(unreadBytes) bytes) queued"
                channel.close(promise: nil)
                return
            }
        }
        var buffer = channel.allocator.buffer(capacity: message.wireLength)
        message.write(into: &buffer)
        if flush {
            channel.writeAndFlush(buffer, promise: nil)
        } else {
            channel.write(buffer, promise: nil)
        }
    }
}

/// A peer's IP and port, comparable and printable.
public struct PeerAddress: Sendable, Hashable, CustomStringConvertible {
    public var host: String
    public var port: Int

    public init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    /// Parses `IP:PORT`, `[IPv6]:PORT`.
    public init?(_ text: String, defaultPort: Int? = nil) {
        if text.hasPrefix("["), let close = text.firstIndex(of: "]") {
            host = String(text[text.index(after: text.startIndex)..<close])
            let rest = text[text.index(after: close)...]
            if rest.isEmpty, let d = defaultPort { port = d; return }
            guard rest.hasPrefix(":"), let p = Int(rest.dropFirst()), (1...65535).contains(p) else { return nil }
            port = p
            return
        }
        let parts = text.split(separator: ":", omittingEmptySubsequences: false)
        if parts.count == 1, let d = defaultPort, !text.isEmpty {
            host = text
            port = d
            return
        }
        guard parts.count == 2, !parts[0].isEmpty, let p = Int(parts[1]), (1...65535).contains(p) else { return nil }
        host = String(parts[0])
        port = p
    }

    public init?(_ address: SocketAddress) {
        guard let ip = address.ipAddress, let port = address.port else { return nil }
        host = ip
        self.port = port
    }

    public var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }
}

/// Bytes over time with a smoothed rate, for choking and pipeline sizing.
struct RateMeter {
    private(set) var total: Int64 = 0
    private var windowBytes: Int64 = 0
    private var windowStart = NIODeadline.now()
    private(set) var rate: Double = 0

    mutating func add(_ n: Int) {
        total += Int64(n)
        windowBytes += Int64(n)
        roll()
    }

    /// Folds the current window into the smoothed rate once a second has passed.
    mutating func roll() {
        let now = NIODeadline.now()
        let elapsed = Double((now - windowStart).nanoseconds) / 1e9
        guard elapsed >= 1 else { return }
        let instant = Double(windowBytes) / elapsed
        rate = rate == 0 ? instant : rate * 0.5 + instant * 0.5
        windowBytes = 0
        windowStart = now
    }
}
