import Bencode
import FuzzSupport

/// Bencode decoder: never traps; a decoded value re-encodes canonically, and the canonical
/// form decodes to the same value (keys sorted) and encodes to itself.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let input = bytes(data, size)
    guard let value = try? Bencode.decode(input) else { return 0 }
    let encoded = value.encoded()
    guard let again = try? Bencode.decode(encoded) else {
        fatalError("canonical encoding does not decode: \(encoded)")
    }
    require(again == canonical(value), "decode(encode(v)) != v")
    require(again.encoded() == encoded, "encoding is not idempotent")
    // The decoder accepts unsorted keys but nothing else non-canonical: sorted input is byte-exact.
    if value == canonical(value) { require(encoded == input, "canonical input re-encodes differently") }
    return 0
}

/// `v` with every dictionary's entries in key order, as the encoder writes them.
func canonical(_ v: BencodeValue) -> BencodeValue {
    switch v {
    case .integer, .bytes: return v
    case .list(let items): return .list(items.map(canonical))
    case .dictionary(let entries):
        return .dictionary(entries.sorted { $0.key.lexicographicallyPrecedes($1.key) }
            .map { BencodeDictionaryEntry(key: $0.key, value: canonical($0.value)) })
    }
}
