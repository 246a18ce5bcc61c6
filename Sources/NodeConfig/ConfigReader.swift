import Values
import Yams

/// Walks a composed YAML tree against the schema, collecting every problem with its line.
///
/// Only the schema's shape is walked (at most three levels), so hostile input (aliases that
/// repeat a node many times, deep nesting under an unknown key) costs at most one visit per
/// node it names; collection stops after `maxErrors` problems. Aliases in keys are bounded
/// before composing, by `AliasKeyGuard`.
final class ConfigReader {
    let file: String
    let baseDirectory: String
    private(set) var errors: [NodeConfigError] = []
    /// The line of each key of the mappings read, by dotted path (`node.ip`), so that an
    /// error found after the schema (`SettingError`) can name its line. List items are left
    /// out: a torrent entry carries its own line.
    private(set) var keyLines: [String: Int] = [:]

    static let maxErrors = 50
    static let maxTorrents = 10_000
    static let maxListItems = 1_000

    init(file: String, baseDirectory: String) {
        self.file = file
        self.baseDirectory = baseDirectory
    }

    // MARK: Reporting

    private var full: Bool { errors.count >= Self.maxErrors }

    func report(line: Int, column: Int? = nil, _ message: String) {
        guard errors.count < Self.maxErrors else { return }
        errors.append(NodeConfigError(file: file, line: max(line, 1), column: column, message: message))
        if errors.count == Self.maxErrors {
            errors.append(NodeConfigError(file: file, line: max(line, 1),
                                          message: "too many errors; stopped checking here"))
        }
    }

    func report(_ node: Node, _ message: String) {
        report(line: node.mark?.line ?? 1, column: node.mark?.column, message)
    }

    /// A short, bounded rendering of what was found, for "expected X, found Y".
    static func describe(_ node: Node) -> String {
        switch node {
        case .mapping: return "a mapping"
        case .sequence: return "a list"
        case .alias: return "an alias"
        case .scalar(let scalar):
            if isNull(node) { return "nothing" }
            let text = scalar.string
            return text.count > 40 ? "'\(text.prefix(40))...'" : "'\(text)'"
        }
    }

    static func isNull(_ node: Node) -> Bool {
        guard case .scalar(let scalar) = node else { return false }
        return scalar.style == .plain && ["", "~", "null", "Null", "NULL"].contains(scalar.string)
    }

    // MARK: Sections

    /// The allowed keys of one mapping and their values (null values included).
    struct Section {
        /// Dotted name for messages (`node`, `torrents[2]`, empty at the top level).
        let name: String
        /// Where a missing key is blamed.
        let line: Int
        var values: [String: Node] = [:]
        var keyLines: [String: Int] = [:]
        /// Allowed keys suggested for a misspelt key, so they are not also reported missing.
        var suggested: Set<String> = []

        func path(_ key: String) -> String { name.isEmpty ? key : "\(name).\(key)" }

        /// The value, unless absent or null.
        func value(_ key: String) -> Node? {
            guard let v = values[key], !ConfigReader.isNull(v) else { return nil }
            return v
        }

        func line(of key: String) -> Int { keyLines[key] ?? line }
    }

    func section(_ node: Node, name: String, line: Int, allowed: [String]) -> Section? {
        guard case .mapping(let mapping) = node else {
            let what = name.isEmpty ? "at the top level" : "for '\(name)'"
            report(node, "expected a mapping \(what) (keys: \(allowed.joined(separator: ", "))), found \(Self.describe(node))")
            return nil
        }
        var section = Section(name: name, line: line)
        for (keyNode, value) in mapping {
            if full { break }
            guard case .scalar(let keyScalar) = keyNode else {
                report(keyNode, "expected a key name \(name.isEmpty ? "at the top level" : "in '\(name)'"), found \(Self.describe(keyNode))")
                continue
            }
            let key = keyScalar.string
            let keyLine = keyNode.mark?.line ?? line
            if allowed.contains(key) {
                section.values[key] = value
                section.keyLines[key] = keyLine
                if !name.contains("[") { keyLines[section.path(key)] = keyLine }
                continue
            }
            let shown = key.count > 40 ? String(key.prefix(40)) + "..." : key
            var message = name.isEmpty
                ? "unknown top-level key '\(shown)'"
                : "unknown key '\(shown)' in '\(name)'"
            if let guess = ValueParsing.suggestion(for: key, among: allowed) {
                message += "; did you mean '\(guess)'?"
                section.suggested.insert(guess)
            }
            message += " (allowed: \(allowed.joined(separator: ", ")))"
            report(line: keyLine, column: keyNode.mark?.column, message)
        }
        return section
    }

    /// An optional nested section; nil when absent, null or malformed.
    func subsection(_ parent: Section, _ key: String, allowed: [String]) -> Section? {
        guard let node = parent.value(key) else { return nil }
        return section(node, name: parent.path(key), line: parent.line(of: key), allowed: allowed)
    }

    func missing(_ s: Section, _ key: String, _ expected: String) {
        if s.suggested.contains(key), s.values[key] == nil {
            return  // the misspelt key's message already says it
        } else if s.values[key] != nil {
            report(line: s.line(of: key), "\(s.path(key)): no value given; expected \(expected)")
        } else if s.name.isEmpty {
            report(line: s.line, "missing required key '\(key)' (\(expected))")
        } else {
            report(line: s.line, "missing required key '\(key)' in '\(s.name)' (\(expected))")
        }
    }

    // MARK: Scalars

    /// The text of a scalar value; reports a type error otherwise.
    func text(_ node: Node, _ name: String, expected: String) -> String? {
        guard case .scalar(let scalar) = node, !Self.isNull(node) else {
            report(node, "\(name): expected \(expected), found \(Self.describe(node))")
            return nil
        }
        return scalar.string
    }

    func text(_ s: Section, _ key: String, expected: String, required: Bool = false) -> String? {
        guard let node = s.value(key) else {
            if required { missing(s, key, expected) }
            return nil
        }
        return text(node, s.path(key), expected: expected)
    }

    /// A path, made absolute against the config file's folder.
    func path(_ node: Node, _ name: String) -> String? {
        guard let t = text(node, name, expected: "a path") else { return nil }
        guard !t.isEmpty, !t.contains("\0") else {
            report(node, "\(name): expected a path, found an empty string")
            return nil
        }
        return ConfigPath.resolve(t, against: baseDirectory)
    }

    func path(_ s: Section, _ key: String, required: Bool = false) -> String? {
        guard let node = s.value(key) else {
            if required { missing(s, key, "a path") }
            return nil
        }
        return path(node, s.path(key))
    }

    func int(_ s: Section, _ key: String, range: ClosedRange<Int>, default value: Int) -> Int {
        guard let node = s.value(key) else { return value }
        let expected = "a whole number from \(range.lowerBound) to \(range.upperBound)"
        guard let t = text(node, s.path(key), expected: expected) else { return value }
        guard let n = Int(t), range.contains(n) else {
            report(node, "\(s.path(key)): expected \(expected), found \(Self.describe(node))")
            return value
        }
        return n
    }

    func bool(_ s: Section, _ key: String, default value: Bool) -> Bool {
        guard let node = s.value(key) else { return value }
        guard let t = text(node, s.path(key), expected: "true or false") else { return value }
        switch t.lowercased() {
        case "true", "yes", "on": return true
        case "false", "no", "off": return false
        default:
            report(node, "\(s.path(key)): expected true or false, found \(Self.describe(node))")
            return value
        }
    }

    /// Bytes per second (0 = unlimited).
    func rate(_ s: Section, _ key: String) -> Int64 {
        guard let node = s.value(key) else { return 0 }
        guard let t = text(node, s.path(key), expected: Units.rateForm) else { return 0 }
        guard let r = Units.parseRate(t) else {
            report(node, "\(s.path(key)): \(Self.describe(node)) is not a rate; expected \(Units.rateForm)")
            return 0
        }
        return r
    }

    /// `RATE/INTERVAL` (MaxChange), or nil when absent or malformed (reported).
    func maxChange(_ s: Section, _ key: String) -> MaxChange? {
        guard let node = s.value(key) else { return nil }
        guard let t = text(node, s.path(key), expected: MaxChange.expectedForm) else { return nil }
        guard let m = MaxChange(parsing: t) else {
            report(node, "\(s.path(key)): \(Self.describe(node)) is not a rate change; expected \(MaxChange.expectedForm)")
            return nil
        }
        return m
    }

    func choice<T: RawRepresentable & CaseIterable>(_ node: Node, _ name: String, _: T.Type) -> T? where T.RawValue == String {
        let options = T.allCases.map(\.rawValue)
        let list = options.joined(separator: "|")
        guard let t = text(node, name, expected: "one of \(list)") else { return nil }
        if let value = T(rawValue: t) { return value }
        var message = "\(name): \(Self.describe(node)) is not one of \(list)"
        if let guess = ValueParsing.suggestion(for: t, among: options) { message += "; did you mean '\(guess)'?" }
        report(node, message)
        return nil
    }

    func choice<T: RawRepresentable & CaseIterable>(_ s: Section, _ key: String, _ type: T.Type,
                                                    required: Bool = false) -> T? where T.RawValue == String {
        guard let node = s.value(key) else {
            if required { missing(s, key, "one of " + T.allCases.map(\.rawValue).joined(separator: "|")) }
            return nil
        }
        return choice(node, s.path(key), type)
    }

    func endpoint(_ node: Node, _ name: String, defaultPort: UInt16? = nil) -> IPEndpoint? {
        let expected = defaultPort == nil ? IPEndpoint.expectedForm : "IP or IP:PORT"
        guard let t = text(node, name, expected: expected) else { return nil }
        guard let e = IPEndpoint(parsing: t, defaultPort: defaultPort) else {
            report(node, "\(name): \(Self.describe(node)) is not an address; expected \(expected) (an IP literal, not a host name)")
            return nil
        }
        return e
    }

    func endpoint(_ s: Section, _ key: String, required: Bool = false) -> IPEndpoint? {
        guard let node = s.value(key) else {
            if required { missing(s, key, "IP:PORT") }
            return nil
        }
        return endpoint(node, s.path(key))
    }

    func network(_ node: Node, _ name: String) -> CIDR? {
        guard let t = text(node, name, expected: CIDR.expectedForm) else { return nil }
        do throws(CIDR.ParseError) {
            return try CIDR(parsing: t)
        } catch {
            report(node, "\(name): \(error)")
            return nil
        }
    }

    /// The items of a list; reports a type error for anything else.
    func list(_ node: Node, _ name: String, of what: String) -> [Node]? {
        guard case .sequence(let sequence) = node else {
            report(node, "\(name): expected a list of \(what), found \(Self.describe(node))")
            return nil
        }
        return Array(sequence)
    }

    /// A list of scalar strings, each with its node (for lines).
    func stringList(_ s: Section, _ key: String, of what: String = "strings") -> [(String, Node)] {
        guard let node = s.value(key), let items = list(node, s.path(key), of: what) else { return [] }
        if items.count > Self.maxListItems {
            report(node, "\(s.path(key)): more than \(Self.maxListItems) items")
            return []
        }
        var out: [(String, Node)] = []
        for (i, item) in items.enumerated() {
            if full { break }
            guard case .scalar = item, !Self.isNull(item), let t = item.string else {
                report(item, "\(s.path(key)): expected a list of \(what), found \(Self.describe(item)) as item \(i + 1)")
                continue
            }
            out.append((t, item))
        }
        return out
    }
}
