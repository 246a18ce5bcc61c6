import BitTorrent
import NIOCore

/// The thin channel handler of a peer connection: exchanges handshakes, then hands every
/// decoded message to the torrent session. Protocol violations close the connection with
/// a logged, counted reason.
final class PeerWireHandler: ChannelInboundHandler {
    typealias InboundIn = PeerWireFrame

    private let engine: PeerEngine
    /// For outbound connections, the torrent we dialled for.
    private let dialledFor: InfoHash?
    private var session: TorrentSession?
    private var link: PeerLink?
    private var handshakeTimeout: Scheduled<Void>?

    init(engine: PeerEngine, dialledFor: InfoHash?) {
        self.engine = engine
        self.dialledFor = dialledFor
    }

    func channelActive(context: ChannelHandlerContext) {
        if let hash = dialledFor { sendHandshake(context: context, infoHash: hash) }
        let channel = context.channel
        handshakeTimeout = context.eventLoop.scheduleTask(in: engine.config.handshakeTimeout) {
            channel.close(promise: nil)
        }
        context.fireChannelActive()
    }

    private func sendHandshake(context: ChannelHandlerContext, infoHash: InfoHash) {
        let hs = Handshake(infoHash: infoHash, peerID: engine.config.peerID, fast: true)
        var buffer = context.channel.allocator.buffer(capacity: Handshake.length)
        hs.write(into: &buffer)
        context.writeAndFlush(NIOAny(buffer), promise: nil)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .handshake(let hs):
            handshakeTimeout?.cancel()
            handshakeTimeout = nil
            if let expected = dialledFor, hs.infoHash != expected {
                engine.logger.info("closing connection: peer answered for another torrent")
                context.close(promise: nil)
                return
            }
            let remote = context.channel.remoteAddress.flatMap(PeerAddress.init) ?? PeerAddress(host: "?", port: 0)
            guard let session = engine.session(for: hs, remote: remote) else {
                context.close(promise: nil)
                return
            }
            // Answered also when the rules refuse the peer (a duplicate, say): the dialler then
            // sees who we are and stops dialling an address it is linked to.
            if dialledFor == nil { sendHandshake(context: context, infoHash: hs.infoHash) }
            guard let link = session.admit(hs, channel: context.channel, outbound: dialledFor != nil, remote: remote) else {
                context.close(promise: nil)
                return
            }
            self.session = session
            self.link = link
        case .message(let m):
            guard let session, let link else {
                context.close(promise: nil)
                return
            }
            session.handle(m, from: link)
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        if let session, let link { session.readBatchEnded(link) }
        context.fireChannelReadComplete()
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if let session, let link { session.writabilityChanged(link) }
        context.fireChannelWritabilityChanged()
    }

    func channelInactive(context: ChannelHandlerContext) {
        handshakeTimeout?.cancel()
        if let session, let link {
            engine.linkClosed(listenAddress: session.closed(link), session: session)
        }
        context.fireChannelInactive()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let idle = event as? IdleStateHandler.IdleStateEvent {
            switch idle {
            case .write:
                var b = context.channel.allocator.buffer(capacity: 4)
                PeerMessage.keepAlive.write(into: &b)
                context.writeAndFlush(NIOAny(b), promise: nil)
            case .read, .all:
                context.close(promise: nil)
            }
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        if let session, let link, error is PeerWireError {
            session.drop(link, reason: "\(error)")
        } else if session != nil {
            // A reset or a timeout is the network's doing, not a protocol violation.
            engine.logger.debug("connection error", metadata: ["error": "\(error)"])
            context.close(promise: nil)
        } else {
            engine.logger.debug("closing connection before handshake", metadata: ["error": "\(error)"])
            context.close(promise: nil)
        }
    }
}
