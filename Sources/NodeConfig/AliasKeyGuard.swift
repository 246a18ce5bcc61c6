// CYaml is the libyaml that Yams wraps (a target of the Yams package, reachable through it).
import CYaml

/// Refuses YAML whose mapping keys expand, through aliases, into huge trees.
///
/// The reader walks only the schema's shape, which bounds alias bombs in values; keys are
/// another matter: Yams hashes every key while composing (to find duplicates), and hashing
/// expands aliases, so one aliased key can cost billions of steps before the reader sees the
/// tree. This pass runs first, over libyaml's events (aliases are never expanded), and gives
/// up with the key's line once the keys of the document add up to more than `maxKeyNodes`.
enum AliasKeyGuard {
    /// Nodes summed over every mapping key, aliases expanded. A real configuration has a few
    /// hundred plain keys (one node each); hashing this many nodes takes milliseconds.
    static let maxKeyNodes = 100_000

    /// The located problem, or nil when the keys are small (or libyaml fails: the composer
    /// then reports the syntax error in its own words).
    static func check(_ yaml: String, file: String) -> NodeConfigError? {
        var bytes = Array(yaml.utf8)
        if bytes.isEmpty { return nil }
        return bytes.withUnsafeMutableBufferPointer { buffer -> NodeConfigError? in
            var parser = yaml_parser_t()
            guard yaml_parser_initialize(&parser) == 1 else { return nil }
            defer { yaml_parser_delete(&parser) }
            yaml_parser_set_input_string(&parser, buffer.baseAddress, buffer.count)
            var walk = Walk()
            while true {
                var event = yaml_event_t()
                guard yaml_parser_parse(&parser, &event) == 1 else { return nil }
                defer { yaml_event_delete(&event) }
                let line = Int(event.start_mark.line) + 1, column = Int(event.start_mark.column) + 1
                let over: Bool
                switch event.type {
                case YAML_STREAM_END_EVENT:
                    return nil
                case YAML_SCALAR_EVENT:
                    over = walk.finish(size: 1, anchor: name(event.data.scalar.anchor))
                case YAML_ALIAS_EVENT:
                    // An undefined alias counts as one node; the composer reports it.
                    over = walk.finish(size: name(event.data.alias.anchor).flatMap { walk.anchors[$0] } ?? 1, anchor: nil)
                case YAML_SEQUENCE_START_EVENT:
                    walk.open(anchor: name(event.data.sequence_start.anchor), mapping: false)
                    continue
                case YAML_MAPPING_START_EVENT:
                    walk.open(anchor: name(event.data.mapping_start.anchor), mapping: true)
                    continue
                case YAML_SEQUENCE_END_EVENT, YAML_MAPPING_END_EVENT:
                    over = walk.close()
                default:
                    continue
                }
                if over {
                    return NodeConfigError(file: file, line: line, column: column, message:
                        "mapping keys expand (through aliases) to more than \(maxKeyNodes) nodes; keys must be plain names, not aliases of large lists or mappings")
                }
            }
        }
    }

    private static func name(_ pointer: UnsafeMutablePointer<yaml_char_t>?) -> String? {
        pointer.map { String(cString: UnsafeRawPointer($0).assumingMemoryBound(to: CChar.self)) }
    }

    /// Sizes of open collections and of anchored nodes, in nodes with aliases expanded.
    private struct Walk {
        struct Frame {
            var anchor: String?
            var mapping: Bool
            var size = 1
            /// In a mapping: the next child is a key.
            var atKey = true
        }
        var stack: [Frame] = []
        var anchors: [String: Int] = [:]
        var keyNodes = 0

        mutating func open(anchor: String?, mapping: Bool) {
            stack.append(Frame(anchor: anchor, mapping: mapping))
        }

        mutating func close() -> Bool {
            guard let frame = stack.popLast() else { return false }
            return finish(size: frame.size, anchor: frame.anchor)
        }

        /// A node of `size` ended; true once the keys are over budget.
        mutating func finish(size: Int, anchor: String?) -> Bool {
            // Saturate: a bomb's sizes grow exponentially.
            let size = min(size, AliasKeyGuard.maxKeyNodes + 1)
            if let anchor { anchors[anchor] = size }
            guard let last = stack.indices.last else { return false }
            stack[last].size = min(stack[last].size + size, AliasKeyGuard.maxKeyNodes + 1)
            guard stack[last].mapping else { return false }
            defer { stack[last].atKey.toggle() }
            guard stack[last].atKey else { return false }
            keyNodes += size
            return keyNodes > AliasKeyGuard.maxKeyNodes
        }
    }
}
