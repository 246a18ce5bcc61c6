import Values
import Foundation
import Yams

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

extension NodeConfiguration {
    /// Reads and validates the configuration file at `path`.
    ///
    /// Throws `NodeConfigErrors` listing every problem found (with its line), or the single
    /// problem that stopped reading: an unreadable file, one over `maxFileSize`, bytes that are
    /// not UTF-8, or a YAML syntax error.
    public static func load(path: String) throws -> NodeConfiguration {
        let absolute = ConfigPath.resolve(path, against: currentDirectory())
        func fail(_ message: String) -> NodeConfigErrors {
            NodeConfigErrors([NodeConfigError(file: path, line: 0, message: message)])
        }
        let data: Data
        do {
            data = Data(try RegularFile.read(absolute, atMost: maxFileSize + 1))
        } catch {
            throw fail("cannot read the configuration file: \(error)")
        }
        guard data.count <= maxFileSize else {
            throw fail("the configuration file is larger than \(maxFileSize / 1024) KiB; is this the right file?")
        }
        guard let text = String(data: data, encoding: .utf8) else {
            throw fail("the configuration file is not UTF-8 text")
        }
        return try parse(yaml: text, file: path, baseDirectory: ConfigPath.directory(of: absolute))
    }

    /// Parses and validates YAML text. `file` names the source in messages; relative paths in
    /// the text are resolved against `baseDirectory`, by default `file`'s folder (made
    /// absolute with the current directory).
    public static func parse(yaml: String, file: String, baseDirectory: String? = nil) throws -> NodeConfiguration {
        let absoluteFile = ConfigPath.resolve(file, against: currentDirectory())
        let base = baseDirectory.map { ConfigPath.resolve($0, against: currentDirectory()) }
            ?? ConfigPath.directory(of: absoluteFile)
        guard yaml.utf8.count <= maxFileSize else {
            throw NodeConfigErrors([NodeConfigError(
                file: file, line: 0,
                message: "the configuration file is larger than \(maxFileSize / 1024) KiB; is this the right file?")])
        }
        if let bomb = AliasKeyGuard.check(yaml, file: file) { throw NodeConfigErrors([bomb]) }
        let root: Node?
        do {
            root = try Yams.compose(yaml: yaml)
        } catch {
            throw NodeConfigErrors([syntaxError(error, yaml: yaml, file: file)])
        }
        let reader = ConfigReader(file: file, baseDirectory: base)
        let config = reader.read(root, absoluteFile: absoluteFile)
        if let config, reader.errors.isEmpty { return config }
        let sorted = reader.errors.enumerated().sorted {
            ($0.element.line, $0.offset) < ($1.element.line, $1.offset)
        }.map(\.element)
        throw NodeConfigErrors(sorted)
    }

    static func currentDirectory() -> String {
        FileManager.default.currentDirectoryPath
    }

    /// A Yams error as a located message.
    static func syntaxError(_ error: any Error, yaml: String, file: String) -> NodeConfigError {
        func located(_ mark: Mark, _ message: String) -> NodeConfigError {
            NodeConfigError(file: file, line: max(1, mark.line), column: mark.column, message: message)
        }
        guard let yamlError = error as? YamlError else {
            return NodeConfigError(file: file, line: 0, message: "cannot parse YAML: \(error)")
        }
        switch yamlError {
        case let .scanner(context, problem, mark, _), let .parser(context, problem, mark, _),
             let .composer(context, problem, mark, _):
            var message = "YAML syntax error: \(problem)"
            if let context {
                message += " (\(context.text) at line \(context.mark.line))"
            }
            return located(mark, message)
        case let .reader(problem, offset, _, yaml):
            let line = offset.map { n in 1 + yaml.prefix(n).reduce(0) { $0 + ($1 == "\n" ? 1 : 0) } } ?? 0
            return NodeConfigError(file: file, line: line, message: "YAML cannot be read: \(problem)")
        case let .duplicatedKeysInMapping(duplicates, context):
            let keys = duplicates.sorted().map { "'\($0)'" }.joined(separator: ", ")
            let first = context.mark
            // Yams marks the first occurrence; blame the repeat when it can be found.
            if duplicates.count == 1, let key = duplicates.first,
               let again = repeatedKeyLine(key, after: first, in: yaml) {
                return NodeConfigError(file: file, line: again, column: first.column,
                                       message: "duplicate key \(keys) (first at line \(first.line)); each key may appear once in a mapping")
            }
            return located(first, "duplicate key \(keys) in the same mapping (each key may appear once)")
        default:
            return NodeConfigError(file: file, line: 0, message: "cannot parse YAML: \(yamlError)")
        }
    }

    /// The line, after `mark`, of a block-style `key:` at the same column (the usual
    /// way a key gets repeated); nil when there is none.
    static func repeatedKeyLine(_ key: String, after mark: Mark, in yaml: String) -> Int? {
        let indent = String(repeating: " ", count: max(0, mark.column - 1))
        for (i, line) in yaml.split(separator: "\n", omittingEmptySubsequences: false).enumerated() where i + 1 > mark.line {
            guard line.hasPrefix(indent) else { continue }
            let rest = line.dropFirst(indent.count)
            if rest.hasPrefix(key), rest.dropFirst(key.count).drop(while: { $0 == " " }).hasPrefix(":") {
                return i + 1
            }
        }
        return nil
    }

    /// The host name, for the default node name.
    static func hostName() -> String {
        var buffer = [CChar](repeating: 0, count: 256)
        guard gethostname(&buffer, buffer.count - 1) == 0 else { return "starling" }
        let name = String(decoding: buffer.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }, as: UTF8.self)
        return name.isEmpty ? "starling" : name
    }
}
