/// The most a host's rate may change from one interval to the next: `rate` bytes per second
/// between the averages of any two consecutive `interval`s (`--max-change 5mbit/60s`).
public struct MaxChange: Sendable, Hashable, CustomStringConvertible {
    /// Bytes per second.
    public var rate: Int64
    /// Nanoseconds.
    public var interval: UInt64

    public init(rate: Int64, interval: UInt64) {
        self.rate = rate
        self.interval = interval
    }

    /// `RATE/INTERVAL`, e.g. `5mbit/60s`: a positive rate (Units.parseRate) and a positive
    /// duration (Units.parseDuration). Nil for anything else.
    public init?(parsing text: String) {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2, let rate = Units.parseRate(String(parts[0])), rate > 0,
              let interval = Units.parseDuration(String(parts[1])), interval > 0 else { return nil }
        self.init(rate: rate, interval: interval)
    }

    /// Bytes per second per second: a rate whose slope stays within this changes by at most
    /// `rate` between the averages of two consecutive intervals, whatever their phase (the
    /// difference of two adjacent window averages is at most the slope times the window).
    public var slope: Double { Double(rate) / (Double(interval) / 1e9) }

    public static let expectedForm = "RATE/INTERVAL, e.g. 5mbit/60s (a rate above 0, a duration above 0)"

    public var description: String { "\(Units.formatRate(Double(rate)))/\(Units.format1(Double(interval) / 1e9))s" }
}
