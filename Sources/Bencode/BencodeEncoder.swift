extension BencodeValue {
    /// Canonical encoding: dictionary keys sorted by raw bytes, integers without padding.
    public func encoded() -> [UInt8] {
        var out: [UInt8] = []
        encode(into: &out)
        return out
    }

    public func encode(into out: inout [UInt8]) {
        switch self {
        case .integer(let v):
            out.append(UInt8(ascii: "i"))
            out.append(contentsOf: String(v).utf8)
            out.append(UInt8(ascii: "e"))
        case .bytes(let b):
            out.append(contentsOf: String(b.count).utf8)
            out.append(UInt8(ascii: ":"))
            out.append(contentsOf: b)
        case .list(let items):
            out.append(UInt8(ascii: "l"))
            for item in items { item.encode(into: &out) }
            out.append(UInt8(ascii: "e"))
        case .dictionary(let entries):
            out.append(UInt8(ascii: "d"))
            for entry in entries.sorted(by: { $0.key.lexicographicallyPrecedes($1.key) }) {
                out.append(contentsOf: String(entry.key.count).utf8)
                out.append(UInt8(ascii: ":"))
                out.append(contentsOf: entry.key)
                entry.value.encode(into: &out)
            }
            out.append(UInt8(ascii: "e"))
        }
    }
}
