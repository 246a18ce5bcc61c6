/// Bytes over time with a smoothed rate, for choking and pipeline sizing. Time is injected
/// nanoseconds: the meter never reads a clock.
public struct RateMeter: Sendable {
    public private(set) var total: Int64 = 0
    private var windowBytes: Int64 = 0
    private var windowStart: UInt64
    /// Bytes per second, half the last window and half the rate before it.
    public private(set) var rate: Double = 0

    public init(now: UInt64) { windowStart = now }

    public mutating func add(_ n: Int, now: UInt64) {
        total += Int64(n)
        windowBytes += Int64(n)
        roll(now: now)
    }

    /// Folds the current window into the smoothed rate once a second has passed.
    public mutating func roll(now: UInt64) {
        guard now >= windowStart + 1_000_000_000 else { return }
        let instant = Double(windowBytes) / (Double(now - windowStart) / 1e9)
        rate = rate == 0 ? instant : rate * 0.5 + instant * 0.5
        windowBytes = 0
        windowStart = now
    }
}
