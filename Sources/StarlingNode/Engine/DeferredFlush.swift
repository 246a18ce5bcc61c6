import NIOCore

/// Flushes connections a little later, all at once: what was written to a connection added
/// here goes out with that connection's next flush or after `delay`, whichever comes first.
/// For messages that may wait (a `have`), so that several share a packet.
// @unchecked: confined to `loop`, as the session that owns it; only its scheduled flush
// captures it, and that runs on the loop.
final class DeferredFlush: @unchecked Sendable {
    private let loop: EventLoop
    private let delay: TimeAmount
    private var waiting: [Channel] = []
    private var scheduled: Scheduled<Void>?

    init(loop: EventLoop, delay: TimeAmount) {
        self.loop = loop
        self.delay = delay
    }

    /// On the loop, after writing to `channel` without flushing.
    func add(_ channel: Channel) {
        if !waiting.contains(where: { $0 === channel }) { waiting.append(channel) }
        guard scheduled == nil else { return }
        scheduled = loop.scheduleTask(in: delay) { self.flush() }
    }

    private func flush() {
        scheduled = nil
        let channels = waiting
        waiting.removeAll(keepingCapacity: true)
        for channel in channels { channel.flush() }
    }
}
