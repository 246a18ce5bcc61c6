import BitTorrent
import Values

/// The allowed rate of one direction of a host, moved along a profile whose slope never
/// exceeds `MaxChange.slope`, so that a network monitor comparing consecutive samples of the
/// interface rate (Zabbix's "traffic changed by more than 5 Mbps") sees no step: not when
/// transfers start, not when a download ends, not when the process stops, not when the
/// operator lowers the cap. A pure state machine: at each tick the caller passes the time
/// and the rate it measured over the last second (a `RecentRate`), and gets the allowed
/// rate, at which the token bucket of the direction then runs.
///
/// The allowed rate is the least of:
/// - the cap, which when lowered is approached at the slope, not jumped to;
/// - the allowed rate of the last tick plus the slope times the time since (the ramp up);
/// - unless the direction was saturated within the last second (transfers waited for
///   tokens, so demand is at least the allowed rate and the rate follows it), the measured rate of
///   the last second plus one second of slope: an allowance left unused cannot be taken all
///   at once when demand returns;
/// - with bytes left to carry, `sqrt(2 * descent * slope * left)`: the rate from which slowing
///   at `descent` times the slope reaches zero just as the last byte goes (the ramp down at the
///   end of a download; for the upload, `left` is the host's share of what its peers still
///   lack, `TorrentState.uploadShareLeft`, and the descent `uploadDescent`);
/// - while tapering before exit, the rate at the start of the taper less the slope times the
///   time since.
///
/// It never goes below `floor` (one second of slope, at least 16 KiB/s), so a transfer can
/// always start and the ramp can begin; a taper ends at that floor. The ramps run at
/// `headroom` times the slope.
public struct SlewLimiter: Sendable {
    /// Changeable while running: a new slope applies from the next tick.
    public var maxChange: MaxChange
    /// Bytes per second; 0 = no cap.
    public private(set) var cap: Int64
    public private(set) var allowed: Double
    private var capNow: Double
    private var lastTick: UInt64
    private var taper: (start: UInt64, from: Double)?
    /// The fraction of the slope at which the rate comes down as `bytesLeft` runs out.
    public let descent: Double

    /// The ramps climb and fall at this fraction of the slope: the rest is left to what the
    /// host does not pace itself (TCP's bursts around the bucket, the estimate of header
    /// bytes, a monitor whose samples come a little late).
    public static let headroom = 0.8

    /// The upload's descent. A host cannot send what nobody asks for: if its allowance stayed
    /// above what the swarm wants, it would fall as fast as the demand does when its peers
    /// turn to other sources or finish. Coming down at half the slope on its share of the
    /// work left, every uploader of a swarm follows nearly the same curve, below what the
    /// downloaders (whose ramp down runs at the full slope) would take, so they keep asking
    /// every source and each upload falls with its curve, not with the demand.
    public static let uploadDescent = 0.5

    /// `startingAt`: the rate to start from (what the direction moves now, when the limit is
    /// turned on mid-transfer); the floor when nil. `descent`: see `bytesLeft` of `tick`.
    public init(maxChange: MaxChange, cap: Int64, now: UInt64, startingAt: Double? = nil, descent: Double = 1) {
        self.maxChange = maxChange
        self.descent = descent
        self.cap = max(0, cap)
        capNow = cap > 0 ? Double(cap) : .infinity
        lastTick = now
        allowed = 0
        allowed = max(floor, min(capNow, startingAt ?? 0))
    }

    /// One second of slope, at least 16 KiB/s.
    public var floor: Double { max(maxChange.slope, 16 * 1024) }

    public var isTapering: Bool { taper != nil }

    /// Bytes per second per second that the ramps use.
    public var slope: Double { maxChange.slope * Self.headroom }

    /// A new cap (0 = none). Raising it takes effect through the ramp; lowering it is
    /// approached at the slope.
    public mutating func setCap(_ newCap: Int64) {
        cap = max(0, newCap)
        let target = cap > 0 ? Double(cap) : Double.infinity
        if target > capNow { capNow = target }
    }

    /// Starts slowing to the floor at the slope; returns the nanoseconds that takes, which
    /// the caller waits before it exits (at most the cap, or the rate reached, over the slope).
    public mutating func beginTaper(now: UInt64) -> UInt64 {
        if taper == nil { taper = (now, allowed) }
        return taperRemaining(now: now)
    }

    /// Nanoseconds until a taper under way reaches the floor (0 when there is none).
    public func taperRemaining(now: UInt64) -> UInt64 {
        guard let taper else { return 0 }
        let total = max(0, taper.from - floor) / slope
        let elapsed = Double(now > taper.start ? now - taper.start : 0) / 1e9
        return UInt64(max(0, total - elapsed) * 1e9)
    }

    /// The allowed rate at `now`, in bytes per second. `measured`: bytes per second over the
    /// last second. `bytesLeft`: what this direction still has to carry before it ends (a
    /// download's missing bytes, an upload's share of its peers'), nil when open-ended.
    /// `saturated`: transfers waited for tokens within the last second.
    public mutating func tick(now: UInt64, measured: Double, bytesLeft: Int64?, saturated: Bool = false) -> Double {
        let dt = Double(now > lastTick ? now - lastTick : 0) / 1e9
        lastTick = max(lastTick, now)
        let target = cap > 0 ? Double(cap) : Double.infinity
        capNow = capNow > target ? max(target, capNow - slope * dt) : target
        var next = min(capNow, allowed + slope * dt)
        if !saturated { next = min(next, measured + slope) }
        if let left = bytesLeft {
            next = min(next, (2 * descent * slope * Double(max(0, left))).squareRoot())
        }
        if let taper {
            let elapsed = Double(now > taper.start ? now - taper.start : 0) / 1e9
            next = min(next, taper.from - slope * elapsed)
        }
        allowed = max(floor, next)
        return allowed
    }

}

/// Bytes per second over the last whole second, in tenths of a second, with the time
/// passed in.
public struct RecentRate: Sendable {
    /// The tenth filling now and the ten before it.
    private var slots = [Int64](repeating: 0, count: 11)
    private var slotStart: UInt64
    private var slot = 0
    static let slotLength: UInt64 = 100_000_000

    public init(now: UInt64) { slotStart = now }

    /// The last ten whole tenths (the one filling now left out, so the figure is not biased low).
    public var rate: Double { Double(slots.reduce(0, +) - slots[slot]) }

    public mutating func record(_ bytes: Int, now: UInt64) {
        advance(to: now)
        slots[slot] += Int64(bytes)
    }

    public mutating func advance(to now: UInt64) {
        guard now >= slotStart + Self.slotLength else { return }
        let steps = (now - slotStart) / Self.slotLength
        for _ in 0..<min(steps, UInt64(slots.count)) {
            slot = (slot + 1) % slots.count
            slots[slot] = 0
        }
        slotStart += steps * Self.slotLength
    }
}
