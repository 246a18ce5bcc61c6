/// A query string split into percent-decoded key/value pairs, in order.
public struct QueryParameters: Sendable {
    public var pairs: [(key: String, value: [UInt8])]

    /// Most parameters accepted in one query; a BEP 48 scrape of many hashes is the largest legitimate case.
    public static let maxParameters = 1024

    public init(parsing query: String) throws(TrackerError) {
        try self.init(parsing: Array(query.utf8))
    }

    public init(parsing query: Substring) throws(TrackerError) {
        try self.init(parsing: Array(query.utf8))
    }

    public init(parsing query: [UInt8]) throws(TrackerError) {
        pairs = []
        for part in query.split(separator: UInt8(ascii: "&"), omittingEmptySubsequences: true) {
            guard pairs.count < Self.maxParameters else {
                throw .invalidRequest("more than \(Self.maxParameters) query parameters")
            }
            let eq = part.firstIndex(of: UInt8(ascii: "="))
            let rawKey = eq.map { part[part.startIndex..<$0] } ?? part[...]
            let rawValue = eq.map { part[part.index(after: $0)...] } ?? part[part.endIndex...]
            guard let keyBytes = PercentEncoding.decode(rawKey),
                  let key = String(validating: keyBytes, as: UTF8.self) else {
                throw .invalidRequest("bad percent-encoding in a parameter name")
            }
            guard let value = PercentEncoding.decode(rawValue) else {
                throw .invalidRequest("bad percent-encoding in parameter '\(Self.printable(key))'")
            }
            pairs.append((key, value))
        }
    }

    /// Every value of `key`, in order.
    public func values(_ key: String) -> [[UInt8]] { pairs.filter { $0.key == key }.map(\.value) }

    /// A key's names are shown in error messages; keep them short and printable.
    static func printable(_ s: String) -> String {
        String(s.unicodeScalars.prefix(32).map { $0.isASCII && $0.value >= 0x20 && $0.value < 0x7f ? Character($0) : "?" })
    }
}
