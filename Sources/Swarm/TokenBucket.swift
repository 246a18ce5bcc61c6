/// A token bucket over an injected clock: the arithmetic behind host-wide rate caps.
///
/// Tokens are bytes. The bucket refills at `rate` bytes per second up to `burst`. Kraken's
/// limiter allows a second of burst; here the burst is 40 ms of tokens, because a network
/// monitor with 1-second resolution must never see more than the cap (rate + burst in any
/// second stays within 5 % of the cap). A rate of 0 means unlimited.
/// Time is in nanoseconds from any fixed origin; the caller passes `now`.
public struct TokenBucket: Sendable {
    public private(set) var rate: Int64
    public private(set) var burst: Int64
    /// May go negative: a grant larger than the balance is a debt repaid by later refills.
    public private(set) var tokens: Int64
    private var last: UInt64

    public init(rate: Int64, burst: Int64? = nil, now: UInt64) {
        self.rate = max(0, rate)
        self.burst = Self.defaultBurst(rate: self.rate, requested: burst)
        tokens = self.burst
        last = now
    }

    public var isUnlimited: Bool { rate == 0 }

    /// 40 ms of tokens unless asked otherwise, and never less than 32 KiB (a block with
    /// headers), so a single message can always pass.
    static func defaultBurst(rate: Int64, requested: Int64?) -> Int64 {
        max(requested ?? rate / 25, 32 * 1024)
    }

    /// Adds the tokens earned since the last call.
    public mutating func refill(now: UInt64) {
        guard now > last else { return }
        let elapsed = now - last
        if rate == 0 {
            tokens = burst
            last = now
            return
        }
        // rate * elapsed / 1e9 in 128-bit arithmetic, so neither huge rates nor long gaps overflow.
        let product = UInt64(rate).multipliedFullWidth(by: elapsed)
        // burst - tokens in 0..<2^64 (tokens <= burst always): exact as UInt64 even for a debt near Int64.min.
        let room = UInt64(bitPattern: burst &- tokens)
        guard product.high < 1_000_000_000 else {
            tokens = burst
            last = now
            return
        }
        let earned = UInt64(1_000_000_000).dividingFullWidth(product).quotient
        if earned >= room {
            tokens = burst
            last = now
        } else {
            // tokens + earned < burst, so the wrapping add is exact.
            tokens = tokens &+ Int64(bitPattern: earned)
            // Advance the clock only by the time those whole tokens took, so slow rates keep fractions.
            let used = UInt64(rate).dividingFullWidth(UInt64(1_000_000_000).multipliedFullWidth(by: earned)).quotient
            last += min(used, elapsed)
        }
    }

    /// Takes up to `want` tokens now; returns how many were granted (0 when empty).
    public mutating func take(upTo want: Int, now: UInt64) -> Int {
        refill(now: now)
        if rate == 0 { return want }
        guard tokens > 0 else { return 0 }
        let granted = Int(min(Int64(want), tokens))
        tokens -= Int64(granted)
        return granted
    }

    /// Takes `amount` tokens even if that leaves a debt (for frames that cannot be split).
    /// Returns false, taking nothing, when the balance is not positive.
    public mutating func takeWhole(_ amount: Int, now: UInt64) -> Bool {
        refill(now: now)
        if rate == 0 { return true }
        guard tokens > 0 else { return false }
        tokens -= Int64(amount)
        return true
    }

    /// Nanoseconds from `now` until the balance is positive again (0 if it already is).
    /// Time already elapsed since the last refill counts; UInt64.max when it is beyond reach.
    public func delayUntilAvailable(now: UInt64) -> UInt64 {
        var b = self
        b.refill(now: now)
        if b.rate == 0 || b.tokens > 0 { return 0 }
        // Positive once rate * (t - last) / 1e9 >= 1 - tokens, i.e. t - last >= ceil((1 - tokens) * 1e9 / rate).
        let needed = UInt64(1 - b.tokens)
        let product = needed.multipliedFullWidth(by: 1_000_000_000)
        let rate = UInt64(b.rate)
        guard product.high < rate else { return .max }
        let (q, r) = rate.dividingFullWidth(product)
        let (total, overflow) = q.addingReportingOverflow(r == 0 ? 0 : 1)
        if overflow { return .max }
        let waited = now > b.last ? now - b.last : 0
        return total > waited ? total - waited : 0
    }

    /// Changes the rate in place; the balance is clamped to the new burst so a lowered cap
    /// takes hold at once.
    public mutating func setRate(_ newRate: Int64, burst newBurst: Int64? = nil, now: UInt64) {
        refill(now: now)
        rate = max(0, newRate)
        burst = Self.defaultBurst(rate: rate, requested: newBurst)
        tokens = min(tokens, burst)
        last = now
    }
}
