import NIOCore
import Prometheus
import Swarm

/// The host-wide caps: one token bucket per direction shared by every connection and every
/// torrent of the process. Connections that find a bucket empty queue up and are released
/// in arrival order as tokens refill, which shares the cap fairly among them.
///
/// Confined to one event loop (the engine runs every connection on it).
public final class HostRateLimiter: @unchecked Sendable {
    public enum Direction: String, Sendable { case up, down }

    let loop: EventLoop
    private var buckets: [Direction: TokenBucket]
    private var waiters: [Direction: [() -> Void]] = [.up: [], .down: []]
    private var wakeScheduled: [Direction: Bool] = [.up: false, .down: false]
    private var throttledSince: [Direction: NIODeadline] = [:]
    private let metrics: RateLimitMetrics

    /// Ethernet + IPv4 + TCP headers with timestamps per full-size segment: the cap applies to
    /// what the interface counts, not only to payload.
    static let segmentPayload = 1448
    static let segmentOverhead = 66

    public init(loop: EventLoop, upRate: Int64, downRate: Int64) {
        self.loop = loop
        let now = UInt64(loop.now.uptimeNanoseconds)
        buckets = [.up: TokenBucket(rate: upRate, now: now), .down: TokenBucket(rate: downRate, now: now)]
        metrics = RateLimitMetrics()
        metrics.setCaps(up: upRate, down: downRate)
    }

    /// The loop's clock (virtual on an EmbeddedEventLoop, so tests can drive refills).
    private func now() -> UInt64 { UInt64(loop.now.uptimeNanoseconds) }

    /// Bytes on the wire for `payload` bytes of TCP payload.
    static func wireBytes(_ payload: Int) -> Int {
        payload + (payload + segmentPayload - 1) / segmentPayload * segmentOverhead
    }

    public func rate(_ d: Direction) -> Int64 { buckets[d]!.rate }

    /// Most payload bytes released together to one connection: 20 ms at the cap, at most
    /// 64 KiB. A batch can leave the bucket that much in debt, so it stays small next to the
    /// cap and a 1-second window still carries barely more than the cap.
    func batchBytes(_ d: Direction) -> Int {
        let rate = buckets[d]!.rate
        return rate == 0 ? Self.maxBatchBytes : Int(min(Int64(Self.maxBatchBytes), rate / 50))
    }

    static let maxBatchBytes = 64 * 1024

    /// Changes the caps while transfers run; a lowered cap takes hold at once.
    public func setRates(up: Int64, down: Int64) {
        loop.execute {
            let now = self.now()
            self.buckets[.up]!.setRate(up, now: now)
            self.buckets[.down]!.setRate(down, now: now)
            self.metrics.setCaps(up: up, down: down)
            self.wake(.up)
            self.wake(.down)
        }
    }

    /// Charges `payload` bytes to the direction. Runs `proceed` at once when the balance is
    /// positive, otherwise when tokens have refilled (in FIFO order with other waiters).
    func acquire(_ d: Direction, payload: Int, _ proceed: @escaping () -> Void) {
        if tryAcquire(d, payload: payload) {
            proceed()
        } else {
            wait(d, payload: payload, proceed)
        }
    }

    /// Charges `payload` bytes when tokens are there now (and nobody waits before us); false
    /// means the caller must `wait`. The common, unthrottled path allocates nothing.
    func tryAcquire(_ d: Direction, payload: Int) -> Bool {
        loop.preconditionInEventLoop()
        if buckets[d]!.isUnlimited {
            metrics.count(d, bytes: payload)
            return true
        }
        if waiters[d]!.isEmpty, buckets[d]!.takeWhole(Self.wireBytes(payload), now: self.now()) {
            metrics.count(d, bytes: payload)
            return true
        }
        return false
    }

    /// Queues `proceed` until tokens for `payload` bytes have refilled, in FIFO order.
    func wait(_ d: Direction, payload: Int, _ proceed: @escaping () -> Void) {
        metrics.count(d, bytes: payload)
        let cost = Self.wireBytes(payload)
        if throttledSince[d] == nil { throttledSince[d] = loop.now }
        waiters[d]!.append { [unowned self] in
            _ = self.buckets[d]!.takeWhole(cost, now: self.now())
            proceed()
        }
        scheduleWake(d)
    }

    private func scheduleWake(_ d: Direction) {
        guard !wakeScheduled[d]! else { return }
        wakeScheduled[d] = true
        let delay = max(buckets[d]!.delayUntilAvailable(now: self.now()), 1_000_000)
        loop.scheduleTask(in: .nanoseconds(Int64(min(delay, 100_000_000)))) {
            self.wakeScheduled[d] = false
            self.wake(d)
        }
    }

    private func wake(_ d: Direction) {
        while !waiters[d]!.isEmpty {
            let now = self.now()
            var b = buckets[d]!
            b.refill(now: now)
            buckets[d] = b
            guard b.isUnlimited || b.tokens > 0 else {
                scheduleWake(d)
                return
            }
            let next = waiters[d]!.removeFirst()
            next()
        }
        if let since = throttledSince[d] {
            metrics.addThrottled(d, seconds: Double((loop.now - since).nanoseconds) / 1e9)
            throttledSince[d] = nil
        }
    }
}

/// Metric families of the rate limiter.
struct RateLimitMetrics {
    private let caps: [HostRateLimiter.Direction: Prometheus.Gauge]
    private let bytes: [HostRateLimiter.Direction: Prometheus.Counter]
    private let throttled: [HostRateLimiter.Direction: Prometheus.Counter]

    init() {
        var caps: [HostRateLimiter.Direction: Prometheus.Gauge] = [:]
        var bytes: [HostRateLimiter.Direction: Prometheus.Counter] = [:]
        var throttled: [HostRateLimiter.Direction: Prometheus.Counter] = [:]
        for d in [HostRateLimiter.Direction.up, .down] {
            caps[d] = StarlingMetrics.gauge("rate_cap_bytes_per_second", "Configured host-wide rate cap per direction; 0 = unlimited.", [("direction", d.rawValue)])
            bytes[d] = StarlingMetrics.counter("wire_bytes_total", "Peer-wire bytes sent (up) and received (down) by the host, all torrents.", [("direction", d.rawValue)])
            throttled[d] = StarlingMetrics.counter("rate_throttled_seconds_total", "Seconds during which transfers waited for rate-cap tokens.", [("direction", d.rawValue)])
        }
        self.caps = caps
        self.bytes = bytes
        self.throttled = throttled
    }

    func setCaps(up: Int64, down: Int64) {
        caps[.up]!.set(to: Double(up))
        caps[.down]!.set(to: Double(down))
    }

    func count(_ d: HostRateLimiter.Direction, bytes n: Int) { bytes[d]!.increment(by: Int64(n)) }
    func addThrottled(_ d: HostRateLimiter.Direction, seconds: Double) { throttled[d]!.increment(by: seconds) }
}
