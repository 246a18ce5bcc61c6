import BitTorrent
import Testing
@testable import Swarm
import Values

@Suite("Slew limiter")
struct SlewLimiterTests {
    static let second: UInt64 = 1_000_000_000
    static let tick: UInt64 = 100_000_000
    /// 5 Mbit/s per 10 s: a slope of 62,500 bytes/s per second.
    static let change = MaxChange(rate: 625_000, interval: 10 * second)

    /// Drives a direction whose demand is `want(t)` bytes/s (t in seconds) for `seconds`,
    /// moving min(want, allowed) each tick; returns the bytes moved per 100 ms tick. `meter`
    /// carries the measured rate from an earlier run of the same direction.
    static func run(_ limiter: inout SlewLimiter, from start: UInt64 = 0, seconds: Int, meter: RecentRate? = nil,
                    bytesLeft: ((Int64) -> Int64?)? = nil, want: (Double) -> Double) -> [Int64] {
        var recent = meter ?? RecentRate(now: start)
        return run(&limiter, from: start, seconds: seconds, meter: &recent, bytesLeft: bytesLeft, want: want)
    }

    static func run(_ limiter: inout SlewLimiter, from start: UInt64 = 0, seconds: Int, meter recent: inout RecentRate,
                    bytesLeft: ((Int64) -> Int64?)? = nil, want: (Double) -> Double) -> [Int64] {
        var moved: [Int64] = []
        var total: Int64 = 0
        for k in 0..<(seconds * 10) {
            let now = start + UInt64(k) * tick
            let demand = want(Double(now) / 1e9)
            recent.advance(to: now)
            let allowed = limiter.tick(now: now, measured: recent.rate, bytesLeft: bytesLeft?(total),
                                       saturated: demand >= limiter.allowed)
            // A real link uses 90 % of what the bucket allows when saturated.
            let rate = demand >= allowed ? allowed * 0.9 : demand
            let bytes = Int64(rate / 10)
            recent.record(Int(bytes), now: now)
            total += bytes
            moved.append(bytes)
        }
        return moved
    }

    /// The largest difference between the average rates of two adjacent windows of
    /// `window` ticks, over every phase.
    static func worstStep(_ moved: [Int64], window: Int) -> Double {
        guard moved.count >= 2 * window else { return 0 }
        var worst = 0.0
        for i in 0...(moved.count - 2 * window) {
            let a = moved[i..<(i + window)].reduce(0, +)
            let b = moved[(i + window)..<(i + 2 * window)].reduce(0, +)
            worst = max(worst, Double(abs(a - b)) / (Double(window) / 10))
        }
        return worst
    }

    @Test func parsesRateOverInterval() {
        #expect(MaxChange(parsing: "5mbit/60s") == MaxChange(rate: 625_000, interval: 60 * Self.second))
        #expect(MaxChange(parsing: "1MB/500ms") == MaxChange(rate: 1_000_000, interval: 500_000_000))
        #expect(MaxChange(parsing: "5mbit/1m")?.interval == 60 * Self.second)
        for bad in ["0/60s", "5mbit", "5mbit/0s", "-5mbit/60s", "5mbit/", "/60s", "5mbit/60x", "5mbit/60s/2", "fast/60s"] {
            #expect(MaxChange(parsing: bad) == nil, "\(bad)")
        }
        #expect(Units.parseDuration("1.5m") == 90 * Self.second)
        #expect(Units.parseDuration("-1s") == nil && Units.parseDuration("s") == nil)
    }

    @Test func rampsUpAtTheSlopeFromAFloor() {
        var l = SlewLimiter(maxChange: Self.change, cap: 0, now: 0)
        #expect(l.allowed == l.floor)
        let moved = Self.run(&l, seconds: 60) { _ in 100_000_000 }
        // Unlimited demand: 60 s of ramp at the slope (less its headroom) and no more; the
        // modelled link carries 90 % of that.
        #expect(l.slope == 62_500 * SlewLimiter.headroom)
        let reached = l.floor + l.slope * 60, last = Double(moved.suffix(10).reduce(0, +))
        #expect(last > 0.85 * reached && last < reached, "\(last) of \(reached)")
        #expect(Self.worstStep(moved, window: 100) <= 625_000 * 1.02)
    }

    @Test func unusedAllowanceIsNotTakenAtOnce() {
        var l = SlewLimiter(maxChange: Self.change, cap: 0, now: 0)
        // Full demand for 40 s, none for 20 s, then full again: the return ramps from the floor.
        let moved = Self.run(&l, seconds: 90) { t in (40..<60).contains(t) ? 0 : 100_000_000 }
        let secondAfterReturn = Double(moved[600..<610].reduce(0, +))
        #expect(secondAfterReturn < 2 * l.floor)
        // The demand itself stops abruptly at 40 s, which no limiter can hide; past that, the
        // rate only rises at the slope.
        #expect(Self.worstStep(Array(moved[550...]), window: 100) <= 625_000 * 1.02)
    }

    @Test func aDownloadRampsDownToItsLastByte() {
        var l = SlewLimiter(maxChange: Self.change, cap: 0, now: 0)
        let size: Int64 = 40_000_000
        let moved = Self.run(&l, seconds: 120, bytesLeft: { size - $0 }) { _ in 100_000_000 }
        let total = moved.reduce(0, +)
        #expect(total >= size, "the whole download arrives: \(total)")
        // 40 MB under a 62.5 KB/s² slope needs 2 * sqrt(F / slope) = 50.6 s from and to zero;
        // starting and ending at the floor (one second of slope) saves about a second at each end.
        var sum: Int64 = 0
        let done = moved.indices.first { sum += moved[$0]; return sum >= size } ?? moved.count
        #expect(Double(done) / 10 > 48 && Double(done) / 10 < 60, "\(Double(done) / 10) s")
        // Its last second carries little, and no two adjacent 10-s windows differ by more than the limit.
        #expect(Double(moved[max(0, done - 10)..<done].reduce(0, +)) < 300_000)
        #expect(Self.worstStep(Array(moved[..<done]) + [Int64](repeating: 0, count: 200), window: 100) <= 625_000 * 1.05)
    }

    @Test func aLoweredCapIsApproachedAtTheSlope() {
        var l = SlewLimiter(maxChange: Self.change, cap: 2_000_000, now: 0)
        var meter = RecentRate(now: 0)
        var moved = Self.run(&l, seconds: 60, meter: &meter) { _ in 100_000_000 }
        #expect(abs(l.allowed - 2_000_000) < 1)
        l.setCap(500_000)
        moved += Self.run(&l, from: 60 * Self.second, seconds: 60, meter: &meter) { _ in 100_000_000 }
        #expect(abs(l.allowed - 500_000) < 1)
        #expect(Self.worstStep(moved, window: 100) <= 625_000 * 1.02)
        // 1.5 MB/s down at the slope takes 1.5 MB/s / slope (27 s): at 80 s it is 20 s along.
        let at80 = Double(moved[795..<805].reduce(0, +)), allowedAt80 = 2_000_000 - 20 * l.slope
        #expect(at80 > 0.85 * allowedAt80 && at80 < 1.01 * allowedAt80, "\(at80) of \(allowedAt80)")
    }

    @Test func taperEndsAtTheFloorInTheTimeItReturns() {
        var l = SlewLimiter(maxChange: Self.change, cap: 1_250_000, now: 0)
        var meter = RecentRate(now: 0)
        _ = Self.run(&l, seconds: 60, meter: &meter) { _ in 100_000_000 }
        let wait = l.beginTaper(now: 60 * Self.second)
        // From 1.25 MB/s to the 62.5 KB/s floor at the slope (less its headroom): 24 s.
        let expected = (1_250_000 - l.floor) / l.slope
        #expect(abs(Double(wait) / 1e9 - expected) < 0.01, "\(wait)")
        let seconds = Int(expected.rounded(.up)) + 1
        let moved = Self.run(&l, from: 60 * Self.second, seconds: seconds, meter: &meter) { _ in 100_000_000 }
        #expect(l.allowed == l.floor && l.taperRemaining(now: UInt64(60 + seconds) * Self.second) == 0)
        #expect(Self.worstStep(moved + [Int64](repeating: 0, count: 100), window: 100) <= 625_000 * 1.05)
    }
    /// An uploader of a swarm of `peers + 1` hosts that all move what it moves: its share of
    /// what the peers lack falls by what it sends.
    @Test func anUploadComesDownOnItsShareOfTheSwarmAtHalfTheSlope() {
        var l = SlewLimiter(maxChange: Self.change, cap: 0, now: 0, descent: SlewLimiter.uploadDescent)
        let share: Int64 = 40_000_000
        let moved = Self.run(&l, seconds: 150, bytesLeft: { share - $0 }) { _ in 100_000_000 }
        var sum: Int64 = 0
        let done = moved.indices.first { sum += moved[$0]; return sum >= share } ?? moved.count
        #expect(done < moved.count, "the share is sent within 150 s")
        // Per second, after the peak: the fall stays within half the slope (and its rounding).
        let perSecond = stride(from: 0, to: done - 10, by: 10).map { Double(moved[$0..<($0 + 10)].reduce(0, +)) }
        let peak = perSecond.indices.max { perSecond[$0] < perSecond[$1] }!
        let falls = zip(perSecond[peak...], perSecond[(peak + 1)...]).map { $0 - $1 }
        #expect(falls.allSatisfy { $0 <= SlewLimiter.uploadDescent * l.slope * 1.05 }, "\(falls.max() ?? 0)")
        #expect(falls.reduce(0, +) > 0.8 * perSecond[peak], "it comes down from its peak, not off a cliff")
        // Climbing at s and coming down at s / 2 takes sqrt(6 F / s) (a triangle of area F), and
        // ends at the floor.
        let ideal = (6 * Double(share) / l.slope).squareRoot()
        #expect(Double(done) / 10 > 0.95 * ideal && Double(done) / 10 < 1.2 * ideal, "\(Double(done) / 10) s, ideal \(ideal)")
        #expect(Double(moved[max(0, done - 10)..<done].reduce(0, +)) < 3 * l.floor)
    }
}
