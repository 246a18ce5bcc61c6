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
        decode(ArraySlice(text))
    }

    /// The concrete form the tracker's hot path uses (generic code called across modules is
    /// not specialised, and was most of an announce's cost).
    public static func decode(_ text: ArraySlice<UInt8>) -> [UInt8]? {
        var out: [UInt8] = []
        out.reserveCapacity(text.count)
        var i = text.startIndex
        let end = text.endIndex
        while i < end {
            let c = text[i]
            if c == UInt8(ascii: "%") {
                guard i + 2 < end, let hv = nibble(text[i + 1]), let lv = nibble(text[i + 2]) else { return nil }
                out.append(hv << 4 | lv)
                i += 3
            } else {
                out.append(c)
                i += 1
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
