/// Parsing of human-written sizes and rates.
///
/// Sizes: plain bytes, or with `K`/`KiB`, `M`/`MiB`, `G`/`GiB` (binary) or `KB`/`MB`/`GB`
/// (decimal). Rates (bytes per second): the same units, or bits with `kbit`, `mbit`,
/// `gbit` (decimal, as network links are sold); `0` means unlimited.
public enum Units {
    public static let rateForm = "a rate such as 40mbit, 5MB, 512KiB (per second) or 0 for unlimited"
    public static let sizeForm = "a size such as 1MiB, 256KiB or 1048576"

    public static func parseSize(_ text: String) -> Int64? {
        parse(text, allowBits: false)
    }

    /// Bytes per second; 0 = unlimited.
    public static func parseRate(_ text: String) -> Int64? {
        var t = text.trimmingWhitespace().lowercased()
        if t.hasSuffix("/s") { t.removeLast(2) }
        return parse(t, allowBits: true)
    }

    /// Nanoseconds: a number with `ms`, `s`, `m` or `h` (a plain number is seconds), e.g.
    /// `60s`, `1.5m`, `500ms`. Nil for anything else or a negative value.
    public static func parseDuration(_ text: String) -> UInt64? {
        let t = text.trimmingWhitespace().lowercased()
        let digits = t.prefix(while: { $0.isNumber || $0 == "." })
        guard !digits.isEmpty, let number = Double(digits), number.isFinite, number >= 0 else { return nil }
        let factor: Double
        switch t.dropFirst(digits.count).trimmingWhitespace() {
        case "ms": factor = 1e6
        case "", "s": factor = 1e9
        case "m", "min": factor = 60e9
        case "h": factor = 3600e9
        default: return nil
        }
        let value = number * factor
        guard value < 1.8e19 else { return nil }
        return UInt64(value.rounded())
    }

    private static func parse(_ text: String, allowBits: Bool) -> Int64? {
        let t = text.trimmingWhitespace().lowercased()
        let digits = t.prefix(while: { $0.isNumber || $0 == "." })
        let unit = t.dropFirst(digits.count).trimmingWhitespace()
        guard !digits.isEmpty, let number = Double(digits), number.isFinite, number >= 0 else { return nil }
        let factor: Double
        switch unit {
        case "", "b": factor = 1
        case "k", "kib": factor = 1024
        case "m", "mib": factor = 1024 * 1024
        case "g", "gib": factor = 1024 * 1024 * 1024
        case "kb": factor = 1000
        case "mb": factor = 1_000_000
        case "gb": factor = 1_000_000_000
        case "kbit" where allowBits: factor = 1000 / 8
        case "mbit" where allowBits: factor = 1_000_000 / 8
        case "gbit" where allowBits: factor = 1_000_000_000 / 8
        case "bit" where allowBits: factor = 1.0 / 8
        default: return nil
        }
        let value = number * factor
        guard value < 9.0e18 else { return nil }
        // A fraction of a byte is meaningless for sizes; a size must be whole.
        if !allowBits, value != value.rounded() { return nil }
        // A tiny positive rate (`1bit`) must not round to 0, which means unlimited.
        if value > 0, value < 1 { return 1 }
        return Int64(value.rounded())
    }

    /// `1.5 MiB`-style rendering for logs and tables.
    public static func formatBytes(_ n: Int64) -> String {
        let units = ["B", "KiB", "MiB", "GiB", "TiB"]
        var v = Double(n)
        var i = 0
        while v >= 1024, i < units.count - 1 {
            v /= 1024
            i += 1
        }
        return i == 0 ? "\(n) B" : String(format1(v)) + " " + units[i]
    }

    /// Bytes per second as `12.3 Mbit/s`.
    public static func formatRate(_ bytesPerSecond: Double) -> String {
        let bits = bytesPerSecond * 8
        if bits >= 1_000_000 { return format1(bits / 1_000_000) + " Mbit/s" }
        if bits >= 1000 { return format1(bits / 1000) + " kbit/s" }
        return format1(bits) + " bit/s"
    }

    /// Time left at `bytesPerSecond` as `42 s`; `-` when there is no estimate: no rate yet, or
    /// one so small (a stalled download's smoothed rate decays towards zero) that the answer
    /// would be beyond a year, or beyond what an `Int` holds.
    public static func formatETA(bytesLeft: Int64, bytesPerSecond: Double) -> String {
        guard bytesPerSecond > 0 else { return "-" }
        let seconds = (Double(bytesLeft) / bytesPerSecond).rounded(.up)
        guard seconds.isFinite, seconds < 365 * 86_400 else { return "-" }
        return "\(Int(seconds)) s"
    }

    /// One decimal place, without Foundation.
    public static func format1(_ v: Double) -> String {
        let tenths = Int64((v * 10).rounded())
        return "\(tenths / 10).\(tenths % 10)"
    }
}

extension StringProtocol {
    func trimmingWhitespace() -> String {
        String(drop(while: { $0.isWhitespace }).reversed().drop(while: { $0.isWhitespace }).reversed())
    }
}
