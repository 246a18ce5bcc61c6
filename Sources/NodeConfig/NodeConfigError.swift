/// One problem in a node configuration file, located by line (and column when known).
///
/// `description` reads `FILE:LINE: message`, or `FILE: message` for a problem with the
/// file as a whole (unreadable, too big), where `line` is 0.
public struct NodeConfigError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The configuration file as given to `load(path:)` or `parse(yaml:file:)`.
    public var file: String
    /// 1-based line; 0 when the problem concerns the whole file.
    public var line: Int
    /// 1-based column, when known.
    public var column: Int?
    /// What is wrong and what was expected.
    public var message: String

    public init(file: String, line: Int, column: Int? = nil, message: String) {
        self.file = file
        self.line = line
        self.column = column
        self.message = message
    }

    public var description: String {
        line > 0 ? "\(file):\(line): \(message)" : "\(file): \(message)"
    }
}

/// Every problem found in a configuration file, in file order; what `NodeConfiguration`'s
/// loaders throw. A YAML syntax error stops parsing, so it comes alone.
public struct NodeConfigErrors: Error, Sendable, Hashable, CustomStringConvertible {
    /// At least one error, sorted by line.
    public var errors: [NodeConfigError]

    public init(_ errors: [NodeConfigError]) {
        self.errors = errors
    }

    /// One `FILE:LINE: message` per line.
    public var description: String {
        errors.map(\.description).joined(separator: "\n")
    }
}
