/// A bencoded value (BEP 3): integer, byte string, list or dictionary.
///
/// Dictionaries keep their entries as decoded; `encoded()` always writes keys in
/// canonical (raw byte) order.
public indirect enum BencodeValue: Sendable, Hashable {
    case integer(Int64)
    case bytes([UInt8])
    case list([BencodeValue])
    case dictionary([BencodeDictionaryEntry])

    /// A byte string from UTF-8 text.
    public static func string(_ text: String) -> BencodeValue { .bytes(Array(text.utf8)) }

    /// A dictionary from text keys; order does not matter, encoding sorts.
    public static func dict(_ pairs: [(String, BencodeValue)]) -> BencodeValue {
        .dictionary(pairs.map { BencodeDictionaryEntry(key: Array($0.0.utf8), value: $0.1) })
    }

    public var integerValue: Int64? { if case .integer(let v) = self { return v } else { return nil } }
    public var bytesValue: [UInt8]? { if case .bytes(let v) = self { return v } else { return nil } }
    public var listValue: [BencodeValue]? { if case .list(let v) = self { return v } else { return nil } }
    public var dictionaryEntries: [BencodeDictionaryEntry]? {
        if case .dictionary(let v) = self { return v } else { return nil }
    }
    /// The byte string as UTF-8 text, if it is valid UTF-8.
    public var stringValue: String? {
        guard let bytes = bytesValue else { return nil }
        return String(validating: bytes, as: UTF8.self)
    }

    /// The value under `key` when this is a dictionary.
    public subscript(key: String) -> BencodeValue? {
        guard let entries = dictionaryEntries else { return nil }
        let k = Array(key.utf8)
        return entries.first(where: { $0.key == k })?.value
    }
}

/// One key/value pair of a bencoded dictionary.
public struct BencodeDictionaryEntry: Sendable, Hashable {
    public var key: [UInt8]
    public var value: BencodeValue
    public init(key: [UInt8], value: BencodeValue) {
        self.key = key
        self.value = value
    }
}
