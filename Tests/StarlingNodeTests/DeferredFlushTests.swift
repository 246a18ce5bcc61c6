import NIOCore
import NIOEmbedded
@testable import StarlingNode
import Testing

// The EmbeddedEventLoop's clock drives every test; an EmbeddedChannel hands out only what
// was flushed.

@Suite("Haves wait for a shared flush")
struct DeferredFlushTests {
    private func written(_ channel: EmbeddedChannel) throws -> [UInt8] {
        var bytes: [UInt8] = []
        while let b = try channel.readOutbound(as: ByteBuffer.self) { bytes += b.readableBytesView }
        return bytes
    }

    @Test("what waits goes out together once the delay has passed, not before")
    func flushedAfterTheDelay() throws {
        let loop = EmbeddedEventLoop()
        let a = EmbeddedChannel(loop: loop), b = EmbeddedChannel(loop: loop)
        let deferred = DeferredFlush(loop: loop, delay: .milliseconds(100))
        a.write(ByteBuffer(bytes: [1]), promise: nil)
        deferred.add(a)
        loop.advanceTime(by: .milliseconds(60))
        a.write(ByteBuffer(bytes: [2]), promise: nil)
        deferred.add(a)
        b.write(ByteBuffer(bytes: [3]), promise: nil)
        deferred.add(b)
        loop.advanceTime(by: .milliseconds(39))
        #expect(try written(a).isEmpty)
        #expect(try written(b).isEmpty)
        // One flush for all, timed from the first message that waited.
        loop.advanceTime(by: .milliseconds(1))
        #expect(try written(a) == [1, 2])
        #expect(try written(b) == [3])
        // The next message waits a whole delay again.
        a.write(ByteBuffer(bytes: [4]), promise: nil)
        deferred.add(a)
        loop.advanceTime(by: .milliseconds(99))
        #expect(try written(a).isEmpty)
        loop.advanceTime(by: .milliseconds(1))
        #expect(try written(a) == [4])
    }

    @Test("a flush of the connection for other bytes takes the waiting ones along, in order")
    func otherFlushCarriesThem() throws {
        let loop = EmbeddedEventLoop()
        let a = EmbeddedChannel(loop: loop)
        let deferred = DeferredFlush(loop: loop, delay: .milliseconds(100))
        a.write(ByteBuffer(bytes: [1]), promise: nil)
        deferred.add(a)
        a.writeAndFlush(ByteBuffer(bytes: [2]), promise: nil)
        #expect(try written(a) == [1, 2])
        loop.advanceTime(by: .milliseconds(100))
        #expect(try written(a).isEmpty)
    }

    @Test("a connection closed while its bytes wait is passed over")
    func closedConnection() throws {
        let loop = EmbeddedEventLoop()
        let a = EmbeddedChannel(loop: loop), b = EmbeddedChannel(loop: loop)
        let deferred = DeferredFlush(loop: loop, delay: .milliseconds(100))
        a.write(ByteBuffer(bytes: [1]), promise: nil)
        deferred.add(a)
        b.write(ByteBuffer(bytes: [2]), promise: nil)
        deferred.add(b)
        a.close(promise: nil)
        loop.run()
        #expect(try written(b).isEmpty)
        loop.advanceTime(by: .milliseconds(100))
        #expect(try written(b) == [2])
    }
}
