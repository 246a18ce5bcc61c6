/// A range of TCP or UDP ports as an operator writes it: `LO-HI` or one port, within 1-65535
/// (`--port-range`, `node.port_range`).
public enum PortRange {
    public static let expectedForm = "LO-HI within 1-65535, e.g. 6881-6889"

    public static func parse(_ text: String) -> ClosedRange<Int>? {
        let parts = text.split(separator: "-", omittingEmptySubsequences: false)
        guard (1...2).contains(parts.count) else { return nil }
        let bounds = parts.compactMap { Int($0.trimmingWhitespace()) }
        guard bounds.count == parts.count, let lo = bounds.first, let hi = bounds.last,
              lo >= 1, hi <= 65535, lo <= hi else { return nil }
        return lo...hi
    }

    /// `LO-HI`, or the one port.
    public static func format(_ range: ClosedRange<Int>) -> String {
        range.count == 1 ? "\(range.lowerBound)" : "\(range.lowerBound)-\(range.upperBound)"
    }
}
