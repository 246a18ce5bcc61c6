import Values

/// Lexical path handling (no file system access).
enum ConfigPath {
    /// `base/name`, with exactly one slash between.
    static func join(_ base: String, _ name: String) -> String {
        if base.isEmpty { return name }
        return base.hasSuffix("/") ? base + name : base + "/" + name
    }

    /// The folder part of `path` (`.` when there is none).
    static func directory(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "." }
        let dir = String(path[..<slash])
        return dir.isEmpty ? "/" : dir
    }

    /// `path` made absolute against `base` (itself absolute), with `.`, `..` and doubled
    /// slashes removed.
    static func resolve(_ path: String, against base: String) -> String {
        normalize(path.hasPrefix("/") ? path : join(base, path))
    }

    static func normalize(_ path: String) -> String {
        let absolute = path.hasPrefix("/")
        var parts: [Substring] = []
        for part in path.split(separator: "/") {
            switch part {
            case ".": continue
            case "..":
                if let last = parts.last, last != ".." { parts.removeLast() } else if !absolute { parts.append(part) }
            default: parts.append(part)
            }
        }
        let body = parts.joined(separator: "/")
        return absolute ? "/" + body : (body.isEmpty ? "." : body)
    }
}

/// Parsers for the scalar value kinds of the schema; nil means malformed.
public enum ValueParsing {
    /// A TCP congestion control name as Linux takes it (e.g. `cubic`): 1-15 letters, digits, `_`.
    public static func congestionControl(_ text: String) -> String? {
        guard (1...15).contains(text.utf8.count),
              text.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "_") }) else { return nil }
        return text
    }

    /// An `http://host[:port]/path` URL (what the tracker client speaks).
    static func isHTTPURL(_ text: String) -> Bool {
        (try? URLAddress(parsing: text))?.scheme == .http
    }

    /// Admin actions on a listener off loopback need a bearer token: anyone who reaches the port
    /// could otherwise change caps or add torrents. The one rule for the node config and the CLI.
    public static func adminNeedsToken(listenHost host: String) -> Bool {
        !isLoopback(host)
    }

    static func isLoopback(_ host: String) -> Bool {
        guard let ip = IPAddress(host) else { return false }
        if let v4 = ip.ipv4Bytes { return v4[0] == 127 }
        return ip.high == 0 && ip.low == 1
    }

    /// Levenshtein distance, for "did you mean" suggestions (keys are short).
    static func editDistance(_ a: String, _ b: String) -> Int {
        let x = Array(a.lowercased().unicodeScalars), y = Array(b.lowercased().unicodeScalars)
        if x.isEmpty { return y.count }
        if y.isEmpty { return x.count }
        var previous = Array(0...y.count)
        var current = [Int](repeating: 0, count: y.count + 1)
        for i in 1...x.count {
            current[0] = i
            for j in 1...y.count {
                current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (x[i - 1] == y[j - 1] ? 0 : 1))
            }
            swap(&previous, &current)
        }
        return previous[y.count]
    }

    /// The allowed key closest to `key`, if it is close enough to be a typo.
    static func suggestion(for key: String, among allowed: [String]) -> String? {
        // Long input cannot be a typo of a short key; skip the quadratic work.
        guard key.count <= 64 else { return nil }
        let normalized = key.replacingDashes()
        var best: (key: String, distance: Int)?
        for candidate in allowed {
            let d = editDistance(normalized, candidate)
            if d < (best?.distance ?? Int.max) { best = (candidate, d) }
        }
        guard let best else { return nil }
        let limit = max(1, min(3, best.key.count / 3))
        return best.distance <= limit ? best.key : nil
    }
}

extension StringProtocol {
    func trimming(_ set: Character) -> String {
        String(drop(while: { $0 == set }).reversed().drop(while: { $0 == set }).reversed())
    }

    /// `data-dir` and `dataDir`-style spellings compared as `data_dir`.
    func replacingDashes() -> String {
        var out = ""
        for c in self {
            if c == "-" { out.append("_") } else if c.isUppercase { out.append("_"); out.append(contentsOf: c.lowercased()) } else { out.append(c) }
        }
        return out
    }
}
