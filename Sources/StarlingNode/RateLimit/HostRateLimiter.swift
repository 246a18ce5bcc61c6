import BitTorrent
import Logging
import NIOCore
import Prometheus
import Swarm
import Values

/// The host-wide caps: one token bucket per direction shared by every connection and every
/// torrent of the process. Connections that find a bucket empty queue up and are released
/// in arrival order as tokens refill, which shares the cap fairly among them. With a
/// `MaxChange`, each bucket runs at the rate a `SlewLimiter` allows, recomputed every 100 ms,
/// so the host's rate never steps (see docs/monitoring.md).
///
/// Confined to one event loop (the engine runs every connection on it).
// @unchecked: every mutable member is touched on `loop` only; public methods hop there.
public final class HostRateLimiter: @unchecked Sendable {
    public enum Direction: String, Sendable { case up, down }

    let loop: EventLoop
    private var buckets: [Direction: TokenBucket]
    private var waiters: [Direction: [() -> Void]] = [.up: [], .down: []]
    private var wakeScheduled: [Direction: Bool] = [.up: false, .down: false]
    private var throttledSince: [Direction: NIODeadline] = [:]
    private let metrics: RateLimitMetrics
    /// The configured caps (0 = none); with a slew limit the buckets run below them.
    private var caps: [Direction: Int64]
    private var slews: [Direction: SlewLimiter] = [:]
    private var recent: [Direction: RecentRate]
    private var slewTask: RepeatedTask?
    /// When transfers last waited for tokens, per direction.
    private var lastThrottled: [Direction: UInt64] = [:]
    /// Bytes the host still has to receive (its incomplete torrents), for the ramp down at the
    /// end of a download; read on the loop at each tick.
    var bytesLeft: (() -> Int64)?
    /// The host's share of what its peers still lack (every torrent), for the upload's ramp down.
    var uploadLeft: (() -> Int64)?
    /// Told on the loop whether a slew limit is now on (set, changed or lifted).
    var slewLimitChanged: ((Bool) -> Void)?

    static let slewTick: TimeAmount = .milliseconds(100)

    /// Ethernet + IPv4 + TCP headers with timestamps per full-size segment: the cap applies to
    /// what the interface counts, not only to payload.
    static let segmentPayload = 1448
    static let segmentOverhead = 66

    public init(loop: EventLoop, upRate: Int64, downRate: Int64, maxChange: MaxChange? = nil) {
        self.loop = loop
        let now = UInt64(loop.now.uptimeNanoseconds)
        buckets = [.up: TokenBucket(rate: upRate, now: now), .down: TokenBucket(rate: downRate, now: now)]
        caps = [.up: upRate, .down: downRate]
        recent = [.up: RecentRate(now: now), .down: RecentRate(now: now)]
        metrics = RateLimitMetrics()
        metrics.setCaps(up: upRate, down: downRate)
        if let maxChange {
            loop.execute { self.applyMaxChange(maxChange) }
        } else {
            metrics.setAllowed(up: Double(upRate), down: Double(downRate))
        }
    }

    /// The loop's clock (virtual on an EmbeddedEventLoop, so tests can drive refills).
    private func now() -> UInt64 { UInt64(loop.now.uptimeNanoseconds) }

    /// Bytes on the wire for `payload` bytes of TCP payload.
    static func wireBytes(_ payload: Int) -> Int {
        payload + (payload + segmentPayload - 1) / segmentPayload * segmentOverhead
    }

    /// The configured cap (0 = none).
    public func rate(_ d: Direction) -> Int64 { caps[d]! }

    /// The slew limit in force, if any.
    public var maxChange: MaxChange? { slews[.up]?.maxChange }

    /// Most payload bytes released together to one connection: 20 ms at the cap, at most
    /// 64 KiB. A batch can leave the bucket that much in debt, so it stays small next to the
    /// cap and a 1-second window still carries barely more than the cap.
    func batchBytes(_ d: Direction) -> Int {
        let rate = buckets[d]!.rate
        return rate == 0 ? Self.maxBatchBytes : Int(min(Int64(Self.maxBatchBytes), rate / 50))
    }

    static let maxBatchBytes = 64 * 1024

    /// Changes the caps while transfers run; a lowered cap takes hold at once.
    /// Under a slew limit a lowered cap is approached at the slope.
    public func setRates(up: Int64, down: Int64) {
        loop.execute {
            let now = self.now()
            self.caps = [.up: up, .down: down]
            self.metrics.setCaps(up: up, down: down)
            if self.slews.isEmpty {
                self.buckets[.up]!.setRate(up, now: now)
                self.buckets[.down]!.setRate(down, now: now)
                self.metrics.setAllowed(up: Double(up), down: Double(down))
                self.wake(.up)
                self.wake(.down)
            } else {
                self.slews[.up]!.setCap(up)
                self.slews[.down]!.setCap(down)
            }
        }
    }

    /// Stops the slew tick and forgets the owner's callbacks. The loop outlives the engine:
    /// a tick after the engine was gone read it through a dangling reference and aborted the
    /// process (a peer under `--max-change` exiting once complete).
    public func stop() {
        loop.preconditionInEventLoop()
        slewTask?.cancel()
        slewTask = nil
        bytesLeft = nil
        uploadLeft = nil
        slewLimitChanged = nil
    }

    /// Turns the slew limit on, changes it, or (nil) turns it off: the caps then apply as
    /// they are, at once.
    public func setMaxChange(_ change: MaxChange?) {
        loop.execute { self.applyMaxChange(change) }
    }

    private func applyMaxChange(_ change: MaxChange?) {
        loop.preconditionInEventLoop()
        slewLimitChanged?(change != nil)
        let now = self.now()
        guard let change else {
            slewTask?.cancel()
            slewTask = nil
            slews = [:]
            for d in [Direction.up, .down] { buckets[d]!.setRate(caps[d]!, now: now); wake(d) }
            metrics.setAllowed(up: Double(caps[.up]!), down: Double(caps[.down]!))
            return
        }
        for d in [Direction.up, .down] {
            if slews[d] != nil {
                slews[d]!.maxChange = change
            } else {
                recent[d]!.advance(to: now)
                slews[d] = SlewLimiter(maxChange: change, cap: caps[d]!, now: now, startingAt: recent[d]!.rate,
                                       descent: d == .up ? SlewLimiter.uploadDescent : 1)
            }
        }
        if slewTask == nil {
            slewTask = loop.scheduleRepeatedTask(initialDelay: .zero, delay: Self.slewTick) { [weak self] _ in self?.slewTick() }
        }
    }

    private func slewTick() {
        let now = self.now()
        for d in [Direction.up, .down] where slews[d] != nil {
            let saturated = lastThrottled[d].map { now < $0 + 1_000_000_000 } ?? false
            recent[d]!.advance(to: now)
            let allowed = slews[d]!.tick(now: now, measured: recent[d]!.rate, bytesLeft: d == .down ? bytesLeft?() : uploadLeft?(),
                                         saturated: saturated)
            buckets[d]!.setRate(Int64(allowed.rounded(.up)), now: now)
            wake(d)
        }
        metrics.setAllowed(up: slews[.up]?.allowed ?? 0, down: slews[.down]?.allowed ?? 0)
    }

    /// Under a slew limit, tapers (`taper()`) and says so in the log; returns at once without.
    public func taperBeforeExit(logger: Logger) async {
        guard let change = try? await loop.submit({ self.maxChange }).get() else { return }
        let started = ContinuousClock.now
        logger.notice("tapering the rate before exit", metadata: ["max_change": "\(change)"])
        _ = try? await taper().get()
        logger.info("tapered", metadata: ["seconds": "\(Units.format1(Double((ContinuousClock.now - started).components.seconds)))"])
    }

    /// Under a slew limit, slows both directions to the floor at the slope and completes
    /// when they are there (at most the highest allowed rate over the slope); at once without.
    public func taper() -> EventLoopFuture<TimeAmount> {
        loop.submit {
            let now = self.now()
            var wait: UInt64 = 0
            for d in [Direction.up, .down] where self.slews[d] != nil {
                wait = max(wait, self.slews[d]!.beginTaper(now: now))
            }
            return TimeAmount.nanoseconds(Int64(min(wait, UInt64(Int64.max))))
        }.flatMap { wait in
            self.loop.scheduleTask(in: wait) { wait }.futureResult
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
            count(d, payload: payload)
            return true
        }
        if waiters[d]!.isEmpty, buckets[d]!.takeWhole(Self.wireBytes(payload), now: self.now()) {
            count(d, payload: payload)
            return true
        }
        return false
    }

    private func count(_ d: Direction, payload: Int) {
        metrics.count(d, bytes: payload)
        recent[d]!.record(Self.wireBytes(payload), now: self.now())
    }

    /// Queues `proceed` until tokens for `payload` bytes have refilled, in FIFO order.
    func wait(_ d: Direction, payload: Int, _ proceed: @escaping () -> Void) {
        count(d, payload: payload)
        lastThrottled[d] = self.now()
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
    private let allowed: [HostRateLimiter.Direction: Prometheus.Gauge]

    init() {
        var allowed: [HostRateLimiter.Direction: Prometheus.Gauge] = [:]
        var caps: [HostRateLimiter.Direction: Prometheus.Gauge] = [:]
        var bytes: [HostRateLimiter.Direction: Prometheus.Counter] = [:]
        var throttled: [HostRateLimiter.Direction: Prometheus.Counter] = [:]
        for d in [HostRateLimiter.Direction.up, .down] {
            caps[d] = StarlingMetrics.gauge("rate_cap_bytes_per_second", "Configured host-wide rate cap per direction; 0 = unlimited.", [("direction", d.rawValue)])
            bytes[d] = StarlingMetrics.counter("wire_bytes_total", "Peer-wire bytes sent (up) and received (down) by the host, all torrents.", [("direction", d.rawValue)])
            throttled[d] = StarlingMetrics.counter("rate_throttled_seconds_total", "Seconds during which transfers waited for rate-cap tokens.", [("direction", d.rawValue)])
            allowed[d] = StarlingMetrics.gauge("rate_allowed_bytes_per_second", "Rate the host may use now per direction: the cap, or under a slew limit (--max-change) the point of its ramp; 0 = unlimited.", [("direction", d.rawValue)])
        }
        self.allowed = allowed
        self.caps = caps
        self.bytes = bytes
        self.throttled = throttled
    }

    func setCaps(up: Int64, down: Int64) {
        caps[.up]!.set(to: Double(up))
        caps[.down]!.set(to: Double(down))
    }

    func setAllowed(up: Double, down: Double) {
        allowed[.up]!.set(to: up)
        allowed[.down]!.set(to: down)
    }

    func count(_ d: HostRateLimiter.Direction, bytes n: Int) { bytes[d]!.increment(by: Int64(n)) }
    func addThrottled(_ d: HostRateLimiter.Direction, seconds: Double) { throttled[d]!.increment(by: seconds) }
}
