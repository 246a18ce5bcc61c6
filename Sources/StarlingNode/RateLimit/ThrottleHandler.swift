import NIOCore

/// Paces one connection against the host-wide buckets, at the wire level so protocol
/// overhead counts: reads are held back (so TCP back-pressure slows the sender) and writes
/// are queued while the bucket of their direction is empty.
final class ThrottleHandler: ChannelDuplexHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let limiter: HostRateLimiter
    private var readAllowed = true
    private var readPending = false
    private var queued: [(ByteBuffer, EventLoopPromise<Void>?)] = []
    private var flushPending = false
    private var writeBlocked = false

    init(limiter: HostRateLimiter) { self.limiter = limiter }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let buffer = unwrapInboundIn(data)
        readAllowed = false
        let loopBound = NIOLoopBound(context, eventLoop: context.eventLoop)
        limiter.acquire(.down, payload: buffer.readableBytes) { [weak self] in
            guard let self else { return }
            self.readAllowed = true
            if self.readPending {
                self.readPending = false
                loopBound.value.read()
            }
        }
        context.fireChannelRead(data)
    }

    func read(context: ChannelHandlerContext) {
        if readAllowed { context.read() } else { readPending = true }
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        queued.append((unwrapOutboundIn(data), promise))
        if !writeBlocked { drain(context: context) }
    }

    func flush(context: ChannelHandlerContext) {
        if writeBlocked || !queued.isEmpty { flushPending = true } else { context.flush() }
    }

    private func drain(context: ChannelHandlerContext) {
        while !queued.isEmpty, !writeBlocked {
            let (buffer, promise) = queued.removeFirst()
            writeBlocked = true
            var granted = false
            let loopBound = NIOLoopBound(context, eventLoop: context.eventLoop)
            limiter.acquire(.up, payload: buffer.readableBytes) { [weak self] in
                guard let self else { return }
                let ctx = loopBound.value
                ctx.write(self.wrapOutboundOut(buffer), promise: promise)
                self.writeBlocked = false
                if granted {
                    // Released later by the limiter: continue here.
                    self.drain(context: ctx)
                }
            }
            granted = true
            if writeBlocked { return }
        }
        if queued.isEmpty && flushPending {
            flushPending = false
            context.flush()
        } else if !queued.isEmpty {
            context.flush()
        }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        for (_, p) in queued { p?.fail(ChannelError.ioOnClosedChannel) }
        queued.removeAll()
    }
}
