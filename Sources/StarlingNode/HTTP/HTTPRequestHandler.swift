import BitTorrent
import NIOCore
import Values

/// Frames the answers of a synchronous `respond` function (the tracker, the node's
/// metrics, status and admin endpoints) as HTTP/1.1 on one connection; keep-alive and
/// pipelining work because requests are answered in order.
final class HTTPRequestHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPRequest
    typealias OutboundOut = ByteBuffer
    typealias Respond = (HTTPRequest, IPAddress?) -> HTTPResponse

    private let respond: Respond
    private let requestTimeout: TimeAmount
    private var remote: IPAddress?
    private var deadline: Scheduled<Void>?
    /// When the current request window started: the connection opened or the last answer went out.
    private var windowStart = NIODeadline.now()
    private var closing = false

    init(requestTimeout: TimeAmount, respond: @escaping Respond) {
        self.respond = respond
        self.requestTimeout = requestTimeout
    }

    func channelActive(context: ChannelHandlerContext) {
        remote = context.channel.remoteAddress.flatMap(IPAddress.init(socketAddress:))
        armDeadline(context: context)
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        deadline?.cancel()
        context.fireChannelInactive()
    }

    /// A whole request must arrive within the timeout: a client trickling bytes (slowloris)
    /// keeps the idle handler happy but not this. One timer per connection, re-armed lazily
    /// when it fires, rather than a cancel and re-schedule per request.
    private func armDeadline(context: ChannelHandlerContext) {
        let loopBound = NIOLoopBound(self, eventLoop: context.eventLoop)
        let ctx = NIOLoopBound(context, eventLoop: context.eventLoop)
        deadline = context.eventLoop.scheduleTask(deadline: windowStart + requestTimeout) {
            let handler = loopBound.value
            if NIODeadline.now() >= handler.windowStart + handler.requestTimeout {
                ctx.value.close(promise: nil)
            } else {
                handler.armDeadline(context: ctx.value)
            }
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !closing else { return }
        let request = unwrapInboundIn(data)
        let response = respond(request, remote)
        var buffer = context.channel.allocator.buffer(capacity: response.body.count + 128)
        response.write(into: &buffer, keepAlive: request.keepAlive, includeBody: request.method != "HEAD")
        if request.keepAlive {
            context.write(wrapOutboundOut(buffer), promise: nil)
            windowStart = .now()
            if !context.channel.isWritable {
                context.flush()
                // Still over the high watermark (64 KiB) after handing it to the kernel: the
                // client pipelines requests but does not read the answers. Drop it rather than
                // buffer without bound; no tracker client pipelines that deep.
                if !context.channel.isWritable {
                    closing = true
                    context.close(promise: nil)
                }
            }
        } else {
            closing = true
            let channel = context.channel
            context.writeAndFlush(wrapOutboundOut(buffer)).whenComplete { _ in channel.close(promise: nil) }
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        context.flush()
        context.fireChannelReadComplete()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        guard !closing else { return }
        closing = true
        if let e = error as? HTTPRequestError {
            // Bad or oversized request: answer in bencode too, so a BitTorrent client shows the reason.
            let response = HTTPResponse(status: e.status, body: AnnounceResponse.failure(e.reason))
            var buffer = context.channel.allocator.buffer(capacity: response.body.count + 128)
            response.write(into: &buffer, keepAlive: false)
            let channel = context.channel
            context.writeAndFlush(wrapOutboundOut(buffer)).whenComplete { _ in channel.close(promise: nil) }
        } else {
            context.close(promise: nil)
        }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is IdleStateHandler.IdleStateEvent {
            context.close(promise: nil)
        } else {
            context.fireUserInboundEventTriggered(event)
        }
    }
}
