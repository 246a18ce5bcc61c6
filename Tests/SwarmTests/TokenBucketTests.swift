import Swarm
import Testing

fileprivate let ns: UInt64 = 1
fileprivate let ms: UInt64 = 1_000_000
fileprivate let sec: UInt64 = 1_000_000_000

@Suite("Token bucket")
struct TokenBucketTests {
    @Test("starts full, refills at its rate, and never grants more than it has")
    func refillAtRate() {
        let t0: UInt64 = 1000 * sec
        var b = TokenBucket(rate: 100_000, burst: 100_000, now: t0)
        #expect(b.tokens == 100_000)
        #expect(b.take(upTo: 60_000, now: t0) == 60_000)
        #expect(b.take(upTo: 60_000, now: t0) == 40_000)
        #expect(b.take(upTo: 1, now: t0) == 0)
        #expect(b.take(upTo: 1_000_000, now: t0 + 250 * ms) == 25_000)
        #expect(b.take(upTo: 1_000_000, now: t0 + 250 * ms) == 0)
        // 10 µs earns 1 byte at 100 kB/s: many tiny steps add up without losing fractions
        var got = 0
        var t = t0 + 250 * ms
        for _ in 0..<1000 { t += 3 * 1000 * ns; got += b.take(upTo: 1_000_000, now: t) }
        #expect(got == 300)   // 3 ms at 100 kB/s
    }

    @Test("the burst is one second of tokens, at least 32 KiB; idle time never exceeds it")
    func burstCap() {
        var b = TokenBucket(rate: 5_000_000, now: 0)
        #expect(b.burst == 200_000)
        _ = b.take(upTo: Int.max, now: 0)
        #expect(b.take(upTo: Int.max, now: 3600 * sec) == 200_000)
        let slow = TokenBucket(rate: 1000, now: 0)
        #expect(slow.burst == 32 * 1024)
        let custom = TokenBucket(rate: 1000, burst: 100_000, now: 0)
        #expect(custom.burst == 100_000)
        #expect(TokenBucket(rate: 1000, burst: 10, now: 0).burst == 32 * 1024)
    }

    @Test("takeWhole runs into debt; delayUntilAvailable says exactly when it is repaid")
    func debt() {
        let t0: UInt64 = 7 * sec
        var b = TokenBucket(rate: 100_000, burst: 100_000, now: t0)
        #expect(b.takeWhole(150_000, now: t0) == true)
        #expect(b.tokens == -50_000)
        #expect(b.takeWhole(1, now: t0) == false)
        #expect(b.tokens == -50_000, "a refused takeWhole must take nothing")
        #expect(b.take(upTo: 10, now: t0) == 0)
        // 50 001 tokens at 100 kB/s: 0.50001 s
        #expect(b.delayUntilAvailable(now: t0) == 500_010_000)
        // time already waited counts
        #expect(b.delayUntilAvailable(now: t0 + 200 * ms) == 300_010_000)
        var early = b
        #expect(early.takeWhole(1, now: t0 + 500_010_000 - 1) == false)
        #expect(b.takeWhole(1, now: t0 + 500_010_000) == true)
        #expect(b.tokens == 0)
        #expect(b.delayUntilAvailable(now: t0 + 500_010_000) == 10_000)
    }

    @Test("delayUntilAvailable is 0 with a positive balance or no cap")
    func noDelay() {
        var b = TokenBucket(rate: 1000, now: 0)
        #expect(b.delayUntilAvailable(now: 0) == 0)
        _ = b.takeWhole(1 << 20, now: 0)
        #expect(b.delayUntilAvailable(now: 0) > 0)
        b.setRate(0, now: 0)
        #expect(b.delayUntilAvailable(now: 0) == 0)
        #expect(b.takeWhole(1, now: 0) == true)
    }

    @Test("a lowered rate takes hold at once: the balance is clamped and refills at the new rate")
    func lowerMidStream() {
        var b = TokenBucket(rate: 10_000_000, now: 0)
        #expect(b.burst == 400_000)   // 40 ms of tokens
        #expect(b.take(upTo: 4_000_000, now: 0) == 400_000)
        b.setRate(1_000_000, now: 100 * ms)
        #expect(b.rate == 1_000_000)
        #expect(b.burst == 40_000)
        #expect(b.tokens == 40_000, "the balance is clamped to the new burst at once")
        #expect(b.take(upTo: Int.max, now: 100 * ms) == 40_000)
        #expect(b.take(upTo: Int.max, now: 120 * ms) == 20_000)
        // raised again: no windfall, just the faster refill
        b.setRate(8_000_000, now: 120 * ms)
        #expect(b.tokens == 0)
        #expect(b.take(upTo: Int.max, now: 125 * ms) == 40_000)
    }

    @Test("Int64.max/2 bytes per second: no overflow in refill, take or debt")
    func veryHighRate() {
        let rate = Int64.max / 2
        var b = TokenBucket(rate: rate, burst: rate, now: 0)
        #expect(b.burst == rate)
        #expect(b.take(upTo: Int.max, now: 0) == Int(rate))
        // 1 ns earns 4.6e9 tokens
        #expect(b.take(upTo: Int.max, now: 1) == Int(rate / 1_000_000_000))
        #expect(b.take(upTo: Int.max, now: UInt64.max) == Int(rate))
        var c = TokenBucket(rate: rate, burst: rate, now: 0)
        #expect(c.takeWhole(Int.max, now: 0) == true)
        #expect(c.tokens == rate - Int64.max)
        #expect(c.delayUntilAvailable(now: 0) > 0)
        #expect(c.delayUntilAvailable(now: 0) <= sec + 1)   // 2^62 + 1 tokens at 2^62 - 1 per second
        #expect(c.take(upTo: Int.max, now: 10 * sec) == Int(rate))
    }

    @Test("a huge requested burst with a huge debt does not overflow")
    func hugeBurst() {
        var b = TokenBucket(rate: 1, burst: Int64.max, now: 0)
        #expect(b.takeWhole(Int.max - 1, now: 0) == true)
        #expect(b.tokens == 1)
        #expect(b.takeWhole(Int.max, now: 0) == true)
        #expect(b.tokens == 1 - Int64.max)
        b.refill(now: 10 * sec)
        #expect(b.tokens == 11 - Int64.max)
        b.refill(now: UInt64.max)
        #expect(b.tokens < 0)
        _ = b.delayUntilAvailable(now: UInt64.max)
    }

    @Test("long idle gaps and a clock that steps back are harmless", arguments: [UInt64(0), 1, 1 << 40, UInt64.max / 2])
    func longIdle(start: UInt64) {
        var b = TokenBucket(rate: 3_000_000, now: start)
        _ = b.take(upTo: Int.max, now: start)
        #expect(b.take(upTo: Int.max, now: UInt64.max) == Int(b.burst))
        #expect(b.take(upTo: Int.max, now: start) == 0, "an earlier time earns nothing")
        #expect(b.take(upTo: Int.max, now: UInt64.max) == 0)
    }

    @Test("rate 0 is unlimited, and negative rates mean unlimited too")
    func unlimited() {
        var b = TokenBucket(rate: 0, now: 0)
        #expect(b.isUnlimited)
        #expect(b.take(upTo: 1 << 40, now: 0) == 1 << 40)
        #expect(b.take(upTo: 1 << 40, now: 0) == 1 << 40)
        for _ in 0..<10 { #expect(b.takeWhole(Int.max, now: 0) == true) }
        #expect(b.delayUntilAvailable(now: 0) == 0)
        #expect(TokenBucket(rate: -5, now: 0).isUnlimited)
        // from unlimited to a cap: at most one burst passes before the cap applies
        b.setRate(1_000_000, now: 5 * sec)
        #expect(b.take(upTo: Int.max, now: 5 * sec) <= 1_000_000)
        #expect(b.take(upTo: Int.max, now: 5 * sec) == 0)
    }

    /// Most tokens a greedy sender gets in any one-second window, sampling every millisecond
    /// for `seconds` from a full (idle) bucket.
    static func peakOneSecondWindow(_ bucket: inout TokenBucket, from t0: UInt64, seconds: Int) -> Int {
        var grants: [Int] = []
        for k in 0..<(seconds * 1000) { grants.append(bucket.take(upTo: Int.max, now: t0 + UInt64(k) * ms)) }
        var window = grants.prefix(1000).reduce(0, +)
        var peak = window
        for k in 1000..<grants.count {
            window += grants[k] - grants[k - 1000]
            peak = max(peak, window)
        }
        return peak
    }

    @Test("a greedy sender gets at most rate + burst in any one-second window")
    func oneSecondWindowBound() {
        var b = TokenBucket(rate: 1_000_000, now: 0)
        let peak = Self.peakOneSecondWindow(&b, from: 0, seconds: 3)
        #expect(peak <= 1_000_000 + Int(b.burst))
        #expect(peak >= 1_000_000)
    }

    @Test("issue 5 wants any one-second window within 5 % of the cap, even after an idle spell")
    func oneSecondWindowWithinCap() {
        // Issue 5's acceptance (peak 1-s window <= 21 mbit/s under a 20 mbit cap) is why the
        // burst is 40 ms of tokens rather than Kraken's one second.
        var b = TokenBucket(rate: 1_000_000, now: 0)
        let peak = Self.peakOneSecondWindow(&b, from: 0, seconds: 3)
        #expect(Double(peak) <= 1.05 * 1_000_000, "peak one-second window \(peak) bytes at a 1 MB/s cap")
    }
}
