/// Why a tracker exchange failed.
public enum TrackerError: Error, Sendable, Equatable, CustomStringConvertible {
    /// A request the tracker refuses to parse (server side); the text becomes the `failure reason`.
    case invalidRequest(String)
    /// A tracker response that is not valid bencode or misses required keys (client side).
    case invalidResponse(String)
    /// The tracker answered with a BEP 3 `failure reason`.
    case failure(String)

    public var description: String {
        switch self {
        case .invalidRequest(let m): return "invalid tracker request: \(m)"
        case .invalidResponse(let m): return "invalid tracker response: \(m)"
        case .failure(let m): return "tracker failure: \(m)"
        }
    }

    /// The bare message without the prefix, e.g. for a `failure reason`.
    public var message: String {
        switch self {
        case .invalidRequest(let m), .invalidResponse(let m), .failure(let m): return m
        }
    }
}

/// URL percent-encoding for tracker query strings (binary info-hashes and peer ids).
public enum PercentEncoding {
    /// Encodes every byte except RFC 3986 unreserved characters, as BEP 3 clients do.
    public static func encode(_ bytes: some Sequence<UInt8>) -> String {
        var out: [UInt8] = []
        encode(bytes, into: &out)
        return String(decoding: out, as: UTF8.self)
    }

    static let hexDigits: [UInt8] = Array("0123456789ABCDEF".utf8)

    public static func encode(_ bytes: some Sequence<UInt8>, into out: inout [UInt8]) {
        for b in bytes {
            if isUnreserved(b) {
                out.append(b)
            } else {
                out.append(UInt8(ascii: "%"))
                out.append(hexDigits[Int(b >> 4)])
                out.append(hexDigits[Int(b & 0xf)])
            }
        }
    }

    @inline(__always)
    static func isUnreserved(_ b: UInt8) -> Bool {
        switch b {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
             UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "."),
             UInt8(ascii: "_"), UInt8(ascii: "~"):
            return true
        default:
            return false
        }
    }

    /// Strict decoding: `%` must be followed by two hex digits. `+` stays a literal byte,
    /// because in a binary info-hash it can only mean 0x2B (clients escape spaces as %20).
    public static func decode(_ text: some Collection<UInt8>) -> [UInt8]? {
        var out: [UInt8] = []
        out.reserveCapacity(text.count)
        var it = text.makeIterator()
        while let c = it.next() {
            if c == UInt8(ascii: "%") {
                guard let h = it.next(), let l = it.next(), let hv = nibble(h), let lv = nibble(l) else { return nil }
                out.append(hv << 4 | lv)
            } else {
                out.append(c)
            }
        }
        return out
    }

    @inline(__always)
    static func nibble(_ c: UInt8) -> UInt8? {
        switch c {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return c - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return c - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return c - UInt8(ascii: "A") + 10
        default: return nil
        }
    }
}

/// A query string split into percent-decoded key/value pairs, in order.
public struct QueryParameters: Sendable {
    public var pairs: [(key: String, value: [UInt8])]

    /// Most parameters accepted in one query; a BEP 48 scrape of many hashes is the largest legitimate case.
    public static let maxParameters = 1024

    public init(parsing query: some StringProtocol) throws(TrackerError) {
        pairs = []
        for part in query.utf8.split(separator: UInt8(ascii: "&"), omittingEmptySubsequences: true) {
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
