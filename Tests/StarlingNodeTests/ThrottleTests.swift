import NIOCore
import NIOEmbedded
@testable import StarlingNode
import Swarm
import Testing
import Values

// Every test drives the EmbeddedEventLoop's clock: no wall-clock timing.

/// Records the `read` calls that reach it (it sits between the head and the throttle).
fileprivate final class ReadCounter: ChannelOutboundHandler {
    typealias OutboundIn = ByteBuffer
    var reads = 0
    func read(context: ChannelHandlerContext) {
        reads += 1
        context.read()
    }
}

/// A mutable cell for future callbacks (everything runs on the one embedded loop).
fileprivate final class Cell<T>: @unchecked Sendable {
    var value: T
    init(_ value: T) { self.value = value }
}

fileprivate func payload(_ n: Int) -> ByteBuffer { ByteBuffer(repeating: 0x5A, count: n) }

fileprivate func ms(_ n: Int64) -> TimeAmount { .milliseconds(n) }

/// Wire time, in nanoseconds at `rate`, until a debt of `debt` bytes is repaid.
fileprivate func repaidAfter(debt: Int, rate: Int) -> Int64 { Int64(debt + 1) * 1_000_000_000 / Int64(rate) }

/// Drains the flushed outbound buffers; returns their byte count.
fileprivate func drainOutbound(_ channel: EmbeddedChannel) throws -> (count: Int, bytes: Int) {
    var count = 0, bytes = 0
    while let b = try channel.readOutbound(as: ByteBuffer.self) {
        count += 1
        bytes += b.readableBytes
    }
    return (count, bytes)
}

@Suite("Host rate limiter and throttle handler")
struct ThrottleTests {
    /// The tokens a fresh bucket starts with at `rate`.
    static func burst(_ rate: Int) -> Int { Int(TokenBucket(rate: Int64(rate), now: 0).burst) }

    /// A channel behind a throttle, on its own embedded loop, with uploads capped at `up` bytes/s.
    static func throttled(up: Int) -> (EmbeddedEventLoop, HostRateLimiter, EmbeddedChannel) {
        let loop = EmbeddedEventLoop()
        let limiter = HostRateLimiter(loop: loop, upRate: Int64(up), downRate: 0)
        return (loop, limiter, EmbeddedChannel(handler: ThrottleHandler(limiter: limiter), loop: loop))
    }

    @Test("a write is held while the up bucket is in debt and released once it refills")
    func heldThenReleased() throws {
        let rate = 100_000
        let (loop, _, channel) = Self.throttled(up: rate)
        defer { _ = try? channel.finish() }

        // The bucket starts with its burst of tokens; a large frame passes whole, into debt.
        let burst = Self.burst(rate)
        let big = 150_000
        let bigDone = channel.writeAndFlush(payload(big))
        let small = channel.writeAndFlush(payload(1000))
        loop.run()
        #expect(try drainOutbound(channel) == (1, big))
        let smallDone = Cell(false)
        small.whenSuccess { smallDone.value = true }
        let bigOK = Cell(false)
        bigDone.whenSuccess { bigOK.value = true }
        #expect(bigOK.value)

        let debt = HostRateLimiter.wireBytes(big) - burst
        let due = repaidAfter(debt: debt, rate: rate)
        loop.advanceTime(by: .nanoseconds(due - 2_000_000))
        #expect(try channel.readOutbound(as: ByteBuffer.self) == nil, "released before the debt was repaid")
        #expect(!smallDone.value)
        loop.advanceTime(by: ms(4))
        #expect(try drainOutbound(channel) == (1, 1000), "not released after the refill")
        #expect(smallDone.value)
    }

    @Test("3 MB under a 1 MB/s cap takes about 2 s of loop time, and never runs ahead of the cap")
    func threeMegabytes() throws {
        let rate = 1_000_000
        let (loop, limiter, channel) = Self.throttled(up: rate)
        defer { _ = try? channel.finish() }

        let frame = 13 + 16_384   // one piece message
        let frames = 3_000_000 / frame + 1
        var promises: [EventLoopFuture<Void>] = []
        for _ in 0..<frames { promises.append(channel.write(payload(frame))) }
        channel.flush()
        loop.run()
        let start = loop.now
        var sent = try drainOutbound(channel).bytes
        let burst = Self.burst(rate)
        #expect(sent > 0 && sent <= burst + 2 * frame, "the first burst should be about the bucket's burst")
        let maxWire = HostRateLimiter.wireBytes(frame)
        var steps = 0
        while sent < frames * frame, steps < 1000 {
            loop.advanceTime(by: ms(10))
            steps += 1
            sent += try drainOutbound(channel).bytes
            let elapsed = Double((loop.now - start).nanoseconds) / 1e9
            // payload released so far stays within burst + rate * elapsed (+ one batch in debt)
            let batch = HostRateLimiter.wireBytes(max(frame, limiter.batchBytes(.up)))
            let allowed = Double(burst) + Double(rate) * elapsed + Double(max(maxWire, batch))
            #expect(Double(HostRateLimiter.wireBytes(frame)) * Double(sent / frame) <= allowed,
                    "ran ahead of the cap at \(elapsed) s")
        }
        #expect(sent == frames * frame)
        let took = Double((loop.now - start).nanoseconds) / 1e9
        let ideal = Double(HostRateLimiter.wireBytes(frame) * frames - burst) / Double(rate)
        #expect(took >= ideal - 0.05, "3 MB at 1 MB/s with a \(burst) byte burst took only \(took) s")
        #expect(took < ideal + 0.3, "3 MB at 1 MB/s took \(took) s: the limiter is too slow")
        let done = Cell(0)
        for p in promises { p.whenSuccess { done.value += 1 } }
        #expect(done.value == frames)
    }

    @Test("setRates: a lowered cap holds the very next write")
    func loweredCap() throws {
        let (loop, limiter, channel) = Self.throttled(up: 10_000_000)
        defer { _ = try? channel.finish() }
        // At 10 MB/s, 150 kB + 150 kB pass at once.
        channel.writeAndFlush(payload(150_000), promise: nil)
        channel.writeAndFlush(payload(150_000), promise: nil)
        loop.run()
        #expect(try drainOutbound(channel).count == 2)

        limiter.setRates(up: 100_000, down: 0)
        loop.run()
        #expect(limiter.rate(.up) == 100_000)
        // The balance is clamped to the new burst (100 kB): one frame passes into debt, the next waits.
        channel.writeAndFlush(payload(150_000), promise: nil)
        channel.writeAndFlush(payload(1000), promise: nil)
        loop.run()
        #expect(try drainOutbound(channel) == (1, 150_000))
        loop.advanceTime(by: ms(200))
        #expect(try channel.readOutbound(as: ByteBuffer.self) == nil, "the old, higher rate still applies")

        // Lifting the cap releases what waits at once.
        limiter.setRates(up: 0, down: 0)
        loop.run()
        #expect(try drainOutbound(channel) == (1, 1000))
    }

    @Test("writes before a flush are held in order and all flushed once released")
    func orderAndFlush() throws {
        let (loop, _, channel) = Self.throttled(up: 100_000)
        defer { _ = try? channel.finish() }
        channel.writeAndFlush(payload(150_000), promise: nil)
        loop.run()
        _ = try drainOutbound(channel)
        for i in 0..<5 { channel.write(ByteBuffer(bytes: [UInt8(i)]), promise: nil) }
        channel.flush()
        loop.run()
        #expect(try channel.readOutbound(as: ByteBuffer.self) == nil)
        loop.advanceTime(by: .seconds(2))
        var got: [UInt8] = []
        while let b = try channel.readOutbound(as: ByteBuffer.self) { got += Array(b.readableBytesView) }
        #expect(got == [0, 1, 2, 3, 4])
    }

    @Test("blocks that waited go out together, up to 20 ms of the cap per release")
    func waitingWritesBatched() throws {
        let rate = 4_000_000
        let (loop, limiter, channel) = Self.throttled(up: rate)
        defer { _ = try? channel.finish() }
        let big = 300_000
        channel.writeAndFlush(payload(big), promise: nil)   // passes, into debt
        let block = 16 * 1024
        for _ in 0..<6 { channel.write(payload(block), promise: nil) }
        channel.flush()
        loop.run()
        #expect(try drainOutbound(channel) == (1, big))

        // Once the debt is repaid, one release sends a whole batch, not one block: one syscall
        // and one train of segments (releasing block by block cost a capped swarm ~40 % CPU).
        let due = repaidAfter(debt: HostRateLimiter.wireBytes(big) - Self.burst(rate), rate: rate)
        loop.advanceTime(by: .nanoseconds(due + 1_000_000))
        let batch = limiter.batchBytes(.up) / block
        #expect(batch == 4)
        #expect(try drainOutbound(channel) == (batch, batch * block))
        // The rest waits for the tokens of the batch just sent.
        loop.advanceTime(by: ms(10))
        #expect(try channel.readOutbound(as: ByteBuffer.self) == nil, "the cap was not charged for the batch")
        loop.advanceTime(by: ms(100))
        #expect(try drainOutbound(channel) == (6 - batch, (6 - batch) * block))
        // A small cap releases one block at a time: its debt stays small next to the cap.
        #expect(HostRateLimiter(loop: loop, upRate: 125_000, downRate: 0).batchBytes(.up) < block)
    }

    @Test("a write that passes is flushed even while a later write waits for tokens")
    func passedWriteIsFlushed() throws {
        let (loop, _, channel) = Self.throttled(up: 100_000)
        defer { _ = try? channel.finish() }
        channel.write(payload(150_000), promise: nil)   // passes, into debt
        channel.write(payload(10), promise: nil)        // waits
        channel.flush()
        loop.run()
        #expect(try drainOutbound(channel) == (1, 150_000), "the first write was held back by the second")
    }

    @Test("under a slew limit, stop() ends the tick and drops the owner's callbacks; a released limiter's tick does nothing")
    func slewTickStops() throws {
        let loop = EmbeddedEventLoop()
        let limiter = HostRateLimiter(loop: loop, upRate: 1_000_000, downRate: 1_000_000,
                                      maxChange: MaxChange(rate: 625_000, interval: 10_000_000_000))
        var asked = 0
        limiter.uploadLeft = { asked += 1; return 1 << 20 }
        loop.run()
        loop.advanceTime(by: .milliseconds(250))
        #expect(asked > 0, "the slew tick reads what is left to upload")
        limiter.stop()
        let before = asked
        loop.advanceTime(by: .seconds(1))
        #expect(asked == before, "a stopped limiter still ticked")
        #expect(limiter.uploadLeft == nil && limiter.bytesLeft == nil)

        // Released without stop(), as when an engine goes away: its tick must not touch it.
        weak var released: HostRateLimiter?
        do {
            let other = HostRateLimiter(loop: loop, upRate: 1_000_000, downRate: 0,
                                        maxChange: MaxChange(rate: 625_000, interval: 10_000_000_000))
            released = other
            loop.run()
        }
        #expect(released == nil)
        loop.advanceTime(by: .seconds(1))
    }

    @Test("reads stop while the down bucket is in debt, and resume after the refill")
    func readsPaced() throws {
        let loop = EmbeddedEventLoop()
        let rate = 100_000
        let limiter = HostRateLimiter(loop: loop, upRate: 0, downRate: Int64(rate))
        let counter = ReadCounter()
        let channel = EmbeddedChannel(handlers: [counter, ThrottleHandler(limiter: limiter)], loop: loop)
        defer { _ = try? channel.finish() }
        // the first frame passes into debt; the second finds the bucket empty and stops reading
        try channel.writeInbound(payload(150_000))
        try channel.writeInbound(payload(1000))
        #expect(try channel.readInbound(as: ByteBuffer.self)?.readableBytes == 150_000)
        #expect(try channel.readInbound(as: ByteBuffer.self)?.readableBytes == 1000)
        let before = counter.reads
        channel.read()
        #expect(counter.reads == before, "read allowed while the bucket is in debt")
        let due = repaidAfter(debt: HostRateLimiter.wireBytes(150_000) - Self.burst(rate), rate: rate)
        loop.advanceTime(by: .nanoseconds(due - 2_000_000))
        #expect(counter.reads == before)
        loop.advanceTime(by: ms(4))
        #expect(counter.reads == before + 1, "the held read was not resumed")
        channel.read()
        #expect(counter.reads == before + 2)
    }

    @Test("after a read event of several buffers, reading resumes only once every buffer is paid for")
    func readsWaitForEveryBuffer() throws {
        let loop = EmbeddedEventLoop()
        let rate = 100_000
        let limiter = HostRateLimiter(loop: loop, upRate: 0, downRate: Int64(rate))
        let counter = ReadCounter()
        let channel = EmbeddedChannel(handlers: [counter, ThrottleHandler(limiter: limiter)], loop: loop)
        defer { _ = try? channel.finish() }
        // NIO reads up to maxMessagesPerRead buffers per event before asking to read again.
        try channel.writeInbound(payload(150_000))     // passes, into debt
        for _ in 0..<3 { try channel.writeInbound(payload(20_000)) }   // three charges wait
        channel.read()
        let firstPaid = repaidAfter(debt: HostRateLimiter.wireBytes(150_000) - Self.burst(rate), rate: rate)
        loop.advanceTime(by: .nanoseconds(firstPaid + 2_000_000))
        #expect(counter.reads == 0, "reading resumed with two buffers still unpaid")
        loop.advanceTime(by: .seconds(1))
        #expect(counter.reads == 1)
    }

    @Test("connections that share a capped bucket get equal shares")
    func fairShare() throws {
        let loop = EmbeddedEventLoop()
        let limiter = HostRateLimiter(loop: loop, upRate: 1_000_000, downRate: 0)
        let a = EmbeddedChannel(handler: ThrottleHandler(limiter: limiter), loop: loop)
        let b = EmbeddedChannel(handler: ThrottleHandler(limiter: limiter), loop: loop)
        defer {
            _ = try? a.finish()
            _ = try? b.finish()
        }
        let frame = 13 + 16_384
        // a queues first and queues more: it must not starve b
        for _ in 0..<200 { a.write(payload(frame), promise: nil) }
        a.flush()
        for _ in 0..<100 { b.write(payload(frame), promise: nil) }
        b.flush()
        loop.run()
        _ = try drainOutbound(a)
        _ = try drainOutbound(b)
        var sentA = 0, sentB = 0
        for _ in 0..<150 {
            loop.advanceTime(by: ms(10))
            sentA += try drainOutbound(a).count
            sentB += try drainOutbound(b).count
        }
        #expect(sentA + sentB > 70, "about 1.5 s at 1 MB/s was expected to pass")
        #expect(abs(sentA - sentB) <= 2, "a sent \(sentA) frames, b \(sentB)")
    }

    @Test("closing a connection with a write waiting for tokens fails that write, never leaks it")
    func closeWhileHeld() throws {
        let (loop, limiter, channel) = Self.throttled(up: 100_000)
        channel.writeAndFlush(payload(150_000), promise: nil)
        let waiting = channel.writeAndFlush(payload(10))
        let queued = channel.writeAndFlush(payload(20))
        loop.run()
        let failures = Cell(0)
        waiting.whenFailure { _ in failures.value += 1 }
        queued.whenFailure { _ in failures.value += 1 }
        // close, not finish(): finish() would cancel every task of the shared loop, the limiter's too
        channel.close(promise: nil)
        loop.run()
        #expect(failures.value == 1, "the queued write was not failed on close")
        loop.advanceTime(by: .seconds(2))
        #expect(failures.value == 2)
        // the limiter still serves other connections afterwards
        let other = EmbeddedChannel(handler: ThrottleHandler(limiter: limiter), loop: loop)
        defer { _ = try? other.finish() }
        other.writeAndFlush(payload(10), promise: nil)
        loop.run()
        #expect(try drainOutbound(other) == (1, 10))
    }
}
