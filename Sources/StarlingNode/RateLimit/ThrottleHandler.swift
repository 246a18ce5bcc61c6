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
    /// Buffers received whose tokens the limiter has not granted yet.
    private var unpaidReads = 0
    private var queued: [(ByteBuffer, EventLoopPromise<Void>?)] = []
    private var flushPending = false
    private var writeBlocked = false
    /// Set once the handler leaves the pipeline: callbacks still queued in the limiter must
    /// not touch the context any more.
    private var removed = false

    init(limiter: HostRateLimiter) { self.limiter = limiter }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let buffer = unwrapInboundIn(data)
        if unpaidReads == 0, limiter.tryAcquire(.down, payload: buffer.readableBytes) {
            context.fireChannelRead(data)
            return
        }
        readAllowed = false
        unpaidReads += 1
        let loopBound = NIOLoopBound(context, eventLoop: context.eventLoop)
        limiter.wait(.down, payload: buffer.readableBytes) { [weak self] in
            guard let self, !self.removed else { return }
            // One socket read event delivers several buffers: read again only once all are paid.
            self.unpaidReads -= 1
            guard self.unpaidReads == 0 else { return }
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
        let buffer = unwrapOutboundIn(data)
        if queued.isEmpty, !writeBlocked, limiter.tryAcquire(.up, payload: buffer.readableBytes) {
            context.write(data, promise: promise)
            return
        }
        // Held until the flush, so the writes of one flush are paid for, and go out, together.
        queued.append((buffer, promise))
    }

    func flush(context: ChannelHandlerContext) {
        // Flush what has already passed; what still waits is flushed when it is released.
        if writeBlocked || !queued.isEmpty { flushPending = true }
        if !writeBlocked, !queued.isEmpty { drain(context: context) }
        context.flush()
    }

    private func drain(context: ChannelHandlerContext) {
        while !queued.isEmpty, !writeBlocked {
            // Release what waits as one batch: one syscall and one train of segments instead of
            // one per block (per-packet work in the kernel, not the bucket, is what a cap cost
            // in CPU).
            let limit = limiter.batchBytes(.up)
            var count = 0
            var bytes = 0
            while count < queued.count, count == 0 || bytes + queued[count].0.readableBytes <= limit {
                bytes += queued[count].0.readableBytes
                count += 1
            }
            let batch = Array(queued.prefix(count))
            queued.removeFirst(count)
            writeBlocked = true
            var granted = false
            let loopBound = NIOLoopBound(context, eventLoop: context.eventLoop)
            limiter.acquire(.up, payload: bytes) { [weak self] in
                // The connection may have closed while this write waited for tokens.
                guard let self, !self.removed else {
                    for (_, promise) in batch { promise?.fail(ChannelError.ioOnClosedChannel) }
                    return
                }
                let ctx = loopBound.value
                for (buffer, promise) in batch { ctx.write(self.wrapOutboundOut(buffer), promise: promise) }
                self.writeBlocked = false
                if granted {
                    // Released later by the limiter: continue here.
                    self.drain(context: ctx)
                }
            }
            granted = true
        }
        if flushPending {
            // Flush each released write at once: holding it until the whole queue drains
            // would delay bytes already paid for.
            if queued.isEmpty && !writeBlocked { flushPending = false }
            context.flush()
        }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        removed = true
        for (_, p) in queued { p?.fail(ChannelError.ioOnClosedChannel) }
        queued.removeAll()
    }
}
