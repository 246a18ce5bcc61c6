import BitTorrent
import Logging
import NIOCore
import Swarm

/// One peer connection as the shell sees it: the channel and its id in the torrent's rules
/// (`TorrentState.peers`). Lives on the engine's loop.
// @unchecked: created, read and changed on the engine's loop only.
final class PeerLink: @unchecked Sendable {
    let id: Int
    let channel: Channel
    let remote: PeerAddress
    /// Why we closed the connection, logged and counted when it detaches: a violation found
    /// by the shell (the peer does not read) or by the rules.
    var closeReason: String?
    /// Messages and bytes queued while the connection was not writable (the peer is not
    /// reading): past `maxUnreadMessages` or `maxUnreadBytes` the connection is closed.
    private var unreadMessages = 0
    private var unreadBytes = 0

    init(id: Int, channel: Channel, remote: PeerAddress) {
        self.id = id
        self.channel = channel
        self.remote = remote
    }

    /// The peer reads again: its queue drained below the low-water mark.
    func becameWritable() {
        unreadMessages = 0
        unreadBytes = 0
    }

    /// Most messages and bytes queued for a peer that stopped reading. Piece data waits for
    /// writability (`TorrentState` serves only writable peers), but rejects, haves, chokes and
    /// suggests answer what the peer sends: without a bound, a peer that sends requests and
    /// never reads grew a seed without limit. A reading peer drains its queue within a round
    /// trip; a slow one gets at most a few hundred haves and rejects in that time.
    static let maxUnreadMessages = 4096
    static let maxUnreadBytes = 1 << 20

    /// Writes without flushing (the session flushes once per batch of actions).
    func send(_ message: PeerMessage) {
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
        channel.write(buffer, promise: nil)
    }
}

extension TorrentState.Message {
    /// The rules' view of a decoded message; nil for what they ignore (keep-alive, port,
    /// extended, unknown ids).
    init?(_ m: PeerMessage) {
        switch m {
        case .keepAlive, .port, .extended, .unknown: return nil
        case .choke: self = .choke
        case .unchoke: self = .unchoke
        case .interested: self = .interested
        case .notInterested: self = .notInterested
        case .have(let p): self = .have(piece: p)
        case .bitfield(let b): self = .bitfield(b)
        case .request(let r): self = .request(r)
        case .piece(let index, let begin, let data): self = .piece(BlockRequest(piece: index, begin: begin, length: data.readableBytes))
        case .cancel(let r): self = .cancel(r)
        case .suggest(let p): self = .suggest(piece: p)
        case .haveAll: self = .haveAll
        case .haveNone: self = .haveNone
        case .reject(let r): self = .reject(r)
        case .allowedFast(let p): self = .allowedFast(piece: p)
        }
    }
}

extension PeerMessage {
    /// A message of the rules on the wire. Blocks go out by `serve`, never as a `.piece` here.
    init(_ m: TorrentState.Message) {
        switch m {
        case .choke: self = .choke
        case .unchoke: self = .unchoke
        case .interested: self = .interested
        case .notInterested: self = .notInterested
        case .have(let p): self = .have(piece: p)
        case .bitfield(let b): self = .bitfield(b)
        case .request(let r): self = .request(r)
        case .piece(let r): preconditionFailure("block \(r) must be served, not sent as a message")
        case .cancel(let r): self = .cancel(r)
        case .suggest(let p): self = .suggest(piece: p)
        case .haveAll: self = .haveAll
        case .haveNone: self = .haveNone
        case .reject(let r): self = .reject(r)
        case .allowedFast(let p): self = .allowedFast(piece: p)
        }
    }
}

extension Logger.Level {
    init(_ level: TorrentState.LogLevel) {
        switch level {
        case .debug: self = .debug
        case .info: self = .info
        case .warning: self = .warning
        case .error: self = .error
        }
    }
}
