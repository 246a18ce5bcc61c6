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
    /// moving min(want, allowed) each tick; returns the bytes moved per 100 ms tick.
    static func run(_ limiter: inout SlewLimiter, from start: UInt64 = 0, seconds: Int,
                    bytesLeft: ((Int64) -> Int64?)? = nil, want: (Double) -> Double) -> [Int64] {
        var moved: [Int64] = []
        var total: Int64 = 0
        var recent = RecentRate(now: start)
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
        // Unlimited demand: 60 s at 62.5 KB/s per second reaches about 3.75 MB/s, no more.
        let last = Double(moved.suffix(10).reduce(0, +))
        #expect(last > 3_300_000 && last < 3_900_000, "\(last)")
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
        var moved = Self.run(&l, seconds: 60) { _ in 100_000_000 }
        #expect(abs(l.allowed - 2_000_000) < 1)
        l.setCap(500_000)
        moved += Self.run(&l, from: 60 * Self.second, seconds: 60) { _ in 100_000_000 }
        #expect(abs(l.allowed - 500_000) < 1)
        #expect(Self.worstStep(moved, window: 100) <= 625_000 * 1.02)
        // 1.5 MB/s down at 62.5 KB/s per second takes 24 s.
        let at80 = Double(moved[795..<805].reduce(0, +))
        #expect(at80 > 600_000 && at80 < 1_000_000, "\(at80)")
    }

    @Test func taperEndsAtTheFloorInTheTimeItReturns() {
        var l = SlewLimiter(maxChange: Self.change, cap: 1_250_000, now: 0)
        _ = Self.run(&l, seconds: 60) { _ in 100_000_000 }
        let wait = l.beginTaper(now: 60 * Self.second)
        // From 1.25 MB/s to the 62.5 KB/s floor at 62.5 KB/s per second: 19 s.
        #expect(wait > 18 * Self.second && wait < 20 * Self.second, "\(wait)")
        let moved = Self.run(&l, from: 60 * Self.second, seconds: 20) { _ in 100_000_000 }
        #expect(l.allowed == l.floor && l.taperRemaining(now: 80 * Self.second) == 0)
        #expect(Self.worstStep(moved + [Int64](repeating: 0, count: 100), window: 100) <= 625_000 * 1.05)
    }
}
