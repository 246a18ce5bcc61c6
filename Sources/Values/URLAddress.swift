/// A tracker URL (`http://`, `https://` or BEP 15's `udp://`) split into what a client needs:
/// the one parser of the tracker URLs operators write (`--tracker`, `trackers:`, a torrent's
/// announce list), used by the tracker client, the node schema and the choice of the address
/// to announce.
public struct URLAddress: Sendable, Equatable {
    public enum Scheme: String, Sendable {
        case http, https, udp
        /// Nil for `udp`: its URLs name their port.
        public var defaultPort: Int? {
            switch self {
            case .http: 80
            case .https: 443
            case .udp: nil
            }
        }
    }

    public enum ParseError: Error, Sendable, Equatable, CustomStringConvertible {
        case scheme, unclosedBracket, badPort, badHost

        public var description: String {
            switch self {
            case .scheme: "only http://, https:// and udp:// URLs are understood"
            case .unclosedBracket: "unclosed '[' in host"
            case .badPort: "bad port"
            case .badHost: "missing or unsupported host"
            }
        }
    }

    public var scheme: Scheme
    /// Without brackets for IPv6.
    public var host: String
    public var port: Int
    /// `user:password` before an `@`, if any.
    public var userInfo: String?
    /// Path plus any query the URL carries, e.g. `/announce?passkey=x`; at least `/`.
    public var pathAndQuery: String

    public init(parsing url: String) throws(ParseError) {
        guard !url.contains(where: \.isWhitespace), let schemeEnd = url.firstRange(of: "://"),
              let scheme = Scheme(rawValue: url[..<schemeEnd.lowerBound].lowercased()) else { throw .scheme }
        let rest = url[schemeEnd.upperBound...]
        let slash = rest.firstIndex(where: { c in c == "/" || c == "?" || c == "#" }) ?? rest.endIndex
        var authority = rest[..<slash]
        var path = String(rest[slash...])
        if path.isEmpty || path.hasPrefix("?") { path = "/" + path }
        var userInfo: String?
        if let at = authority.lastIndex(of: "@") {
            userInfo = String(authority[..<at])
            authority = authority[authority.index(after: at)...]
        }
        var host: Substring
        var port = scheme.defaultPort
        if authority.hasPrefix("[") {
            guard let close = authority.firstIndex(of: "]") else { throw .unclosedBracket }
            host = authority[authority.index(after: authority.startIndex)..<close]
            guard IPAddress(host) != nil else { throw .badHost }
            let after = authority[authority.index(after: close)...]
            if !after.isEmpty {
                guard after.hasPrefix(":"), let p = Self.port(after.dropFirst()) else { throw .badPort }
                port = p
            }
        } else if let colon = authority.lastIndex(of: ":") {
            host = authority[..<colon]
            guard let p = Self.port(authority[authority.index(after: colon)...]) else { throw .badPort }
            port = p
        } else {
            host = authority
        }
        guard !host.isEmpty, host.allSatisfy(Self.isHostCharacter) else { throw .badHost }
        guard let port else { throw .badPort }
        self.scheme = scheme
        self.host = String(host)
        self.port = port
        self.userInfo = userInfo
        pathAndQuery = path
    }

    private static func isHostCharacter(_ c: Character) -> Bool {
        c.isLetter || c.isNumber || c == "." || c == "-" || c == ":" || c == "_"
    }

    private static func port(_ text: Substring) -> Int? {
        guard (1...5).contains(text.utf8.count), text.allSatisfy({ $0.isASCII && $0.isNumber }), let p = Int(text), (1...65535).contains(p) else { return nil }
        return p
    }
}
