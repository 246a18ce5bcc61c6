import Bencode
import Testing

private func b(_ s: String) -> [UInt8] { Array(s.utf8) }

/// A small deterministic generator (SplitMix64) so the fuzz loop is reproducible.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

@Suite("Bencode round trips")
struct BencodeRoundTripTests {
    @Test("scalars and containers decode to the expected values")
    func decodesValues() throws {
        #expect(try Bencode.decode(b("i0e")) == .integer(0))
        #expect(try Bencode.decode(b("i-42e")) == .integer(-42))
        #expect(try Bencode.decode(b("i9223372036854775807e")) == .integer(Int64.max))
        #expect(try Bencode.decode(b("i-9223372036854775808e")) == .integer(Int64.min))
        #expect(try Bencode.decode(b("0:")) == .bytes([]))
        #expect(try Bencode.decode(b("4:spam")) == .string("spam"))
        #expect(try Bencode.decode(b("le")) == .list([]))
        #expect(try Bencode.decode(b("de")) == .dictionary([]))
        #expect(try Bencode.decode(b("l4:spami7ee")) == .list([.string("spam"), .integer(7)]))
        let d = try Bencode.decode(b("d3:cow3:moo4:spaml1:a1:bee"))
        #expect(d["cow"] == .string("moo"))
        #expect(d["spam"] == .list([.string("a"), .string("b")]))
        #expect(d["absent"] == nil)
    }

    @Test("binary byte strings survive a round trip")
    func binaryBytes() throws {
        let raw: [UInt8] = [0, 1, 2, 0xff, 0x80, UInt8(ascii: "e"), UInt8(ascii: ":")]
        let v = BencodeValue.bytes(raw)
        #expect(v.encoded() == b("7:") + raw)
        #expect(try Bencode.decode(v.encoded()) == v)
        #expect(v.stringValue == nil) // not UTF-8
    }

    @Test("canonical encoding sorts dictionary keys by raw bytes")
    func canonicalSortsKeys() throws {
        let v = BencodeValue.dict([("zeta", .integer(1)), ("Alpha", .integer(2)), ("alpha", .integer(3)),
                                   ("a", .list([.dict([("y", .integer(0)), ("x", .integer(0))])]))])
        // Upper case sorts before lower case byte-wise; nested dictionaries are sorted too.
        #expect(v.encoded() == b("d5:Alphai2e1:ald1:xi0e1:yi0eee5:alphai3e4:zetai1ee"))
        // Decoding an unsorted (non-canonical) dictionary keeps it readable; re-encoding sorts it.
        let unsorted = b("d1:bi1e1:ai2ee")
        let decoded = try Bencode.decode(unsorted)
        #expect(decoded.encoded() == b("d1:ai2e1:bi1ee"))
    }

    @Test("encode then decode gives the same value", arguments: [
        BencodeValue.integer(0), .integer(-1), .integer(Int64.max), .integer(Int64.min),
        .string(""), .string("hello world"), .list([]), .list([.list([.list([])])]),
        .dict([("a", .integer(1)), ("b", .list([.string("x"), .dict([("c", .string("d"))])]))]),
    ])
    func roundTrip(value: BencodeValue) throws {
        let bytes = value.encoded()
        let back = try Bencode.decode(bytes)
        #expect(back.encoded() == bytes)
        #expect(back == value)
    }
}

@Suite("Bencode malformed input")
struct BencodeMalformedTests {
    struct Case: Sendable, CustomTestStringConvertible {
        var input: [UInt8]
        var kind: BencodeError.Kind
        var offset: Int
        var limits: BencodeLimits = .default
        var testDescription: String { String(decoding: input.prefix(40), as: UTF8.self) }
    }

    static let cases: [Case] = [
        Case(input: b(""), kind: .truncated, offset: 0),
        Case(input: b("i03e"), kind: .leadingZero, offset: 1),
        Case(input: b("i-03e"), kind: .leadingZero, offset: 2),
        Case(input: b("i00e"), kind: .leadingZero, offset: 1),
        Case(input: b("i-0e"), kind: .negativeZero, offset: 1),
        Case(input: b("03:abc"), kind: .leadingZero, offset: 0),
        Case(input: b("ie"), kind: .emptyInteger, offset: 1),
        Case(input: b("i-e"), kind: .emptyInteger, offset: 2),
        Case(input: b("i12"), kind: .truncated, offset: 3),
        Case(input: b("i1-e"), kind: .unexpectedByte(UInt8(ascii: "-")), offset: 2),
        Case(input: b("i1.5e"), kind: .unexpectedByte(UInt8(ascii: ".")), offset: 2),
        Case(input: b("i9223372036854775808e"), kind: .integerOverflow, offset: 1),
        Case(input: b("i-9223372036854775809e"), kind: .integerOverflow, offset: 1),
        Case(input: b("i99999999999999999999999e"), kind: .integerOverflow, offset: 1),
        Case(input: b("99999999999999999999:x"), kind: .integerOverflow, offset: 0),
        Case(input: b("5:abc"), kind: .truncated, offset: 5),
        Case(input: b("1:"), kind: .truncated, offset: 2),
        Case(input: b("4"), kind: .truncated, offset: 1),
        Case(input: b("-1:a"), kind: .unexpectedByte(UInt8(ascii: "-")), offset: 0),
        Case(input: b("l"), kind: .truncated, offset: 1),
        Case(input: b("li1e"), kind: .truncated, offset: 4),
        Case(input: b("l4:spam"), kind: .truncated, offset: 7),
        Case(input: b("d"), kind: .truncated, offset: 1),
        Case(input: b("d1"), kind: .truncated, offset: 2),
        Case(input: b("d3:foo"), kind: .truncated, offset: 6),
        Case(input: b("d3:fooi1e"), kind: .truncated, offset: 9),
        Case(input: b("i1ex"), kind: .trailingGarbage, offset: 3),
        Case(input: b("lee"), kind: .trailingGarbage, offset: 2),
        Case(input: b("4:spam4:eggs"), kind: .trailingGarbage, offset: 6),
        Case(input: b("x"), kind: .unexpectedByte(UInt8(ascii: "x")), offset: 0),
        Case(input: b("lxe"), kind: .unexpectedByte(UInt8(ascii: "x")), offset: 1),
        Case(input: [0xff], kind: .unexpectedByte(0xff), offset: 0),
        Case(input: b(":abc"), kind: .unexpectedByte(UInt8(ascii: ":")), offset: 0),
        Case(input: b("d1:ai1e1:ai2ee"), kind: .duplicateKey, offset: 7),
        Case(input: b("di1ei2ee"), kind: .keyNotString, offset: 1),
        Case(input: b("dlei1ee"), kind: .keyNotString, offset: 1),
        Case(input: b("d1:ai1edeee"), kind: .keyNotString, offset: 7),
        // Limits, made small so the cases stay readable.
        Case(input: b("llllee"), kind: .tooDeep, offset: 3, limits: BencodeLimits(maxDepth: 3)),
        Case(input: b("ld1:ad1:alleeee"), kind: .tooDeep, offset: 9, limits: BencodeLimits(maxDepth: 3)),
        Case(input: b("5:abcde"), kind: .stringTooLong, offset: 0, limits: BencodeLimits(maxStringLength: 4)),
        Case(input: b("l5:abcdee"), kind: .stringTooLong, offset: 1, limits: BencodeLimits(maxStringLength: 4)),
        Case(input: b("li1ei2ei3ee"), kind: .containerTooLarge, offset: 7, limits: BencodeLimits(maxContainerCount: 2)),
        Case(input: b("d1:ai1e1:bi2e1:ci3ee"), kind: .containerTooLarge, offset: 13,
             limits: BencodeLimits(maxContainerCount: 2)),
        Case(input: b("i12345e"), kind: .inputTooLarge, offset: 4, limits: BencodeLimits(maxInputLength: 4)),
        // The default depth limit (64) with 65 nested lists.
        Case(input: [UInt8](repeating: UInt8(ascii: "l"), count: 65) + [UInt8](repeating: UInt8(ascii: "e"), count: 65),
             kind: .tooDeep, offset: 64),
    ]

    @Test("each malformed input is refused with the right kind and byte offset", arguments: cases)
    func refuses(_ c: Case) {
        #expect(throws: BencodeError(c.kind, at: c.offset)) {
            _ = try Bencode.decode(c.input, limits: c.limits)
        }
    }

    @Test("inputs at exactly the limits are accepted")
    func atLimits() throws {
        #expect(try Bencode.decode(b("llleee"), limits: BencodeLimits(maxDepth: 3))
            == .list([.list([.list([])])]))
        #expect(try Bencode.decode(b("4:abcd"), limits: BencodeLimits(maxStringLength: 4)) == .string("abcd"))
        #expect(try Bencode.decode(b("li1ei2ee"), limits: BencodeLimits(maxContainerCount: 2))
            == .list([.integer(1), .integer(2)]))
        let deep = [UInt8](repeating: UInt8(ascii: "l"), count: 64) + [UInt8](repeating: UInt8(ascii: "e"), count: 64)
        #expect(throws: Never.self) { _ = try Bencode.decode(deep) }
    }

    @Test("a very deep input is refused without exhausting the stack")
    func hugeNesting() {
        let n = 1_000_000
        let input = [UInt8](repeating: UInt8(ascii: "l"), count: n) + [UInt8](repeating: UInt8(ascii: "e"), count: n)
        #expect(throws: BencodeError(.tooDeep, at: 64)) { _ = try Bencode.decode(input) }
    }

    @Test("error descriptions name the byte offset")
    func descriptionNamesOffset() {
        #expect(BencodeError(.leadingZero, at: 17).description == "bencode: integer has a leading zero at byte 17")
        #expect(BencodeError(.unexpectedByte(0x01), at: 3).description.contains("0x1 at byte 3"))
    }
}

@Suite("Bencode fuzz")
struct BencodeFuzzTests {
    static let corpus: [[UInt8]] = [
        b("d8:announce35:http://tracker.example:6969/announce4:infod6:lengthi1048576e4:name8:file.bin"
            + "12:piece lengthi262144e6:pieces20:aaaaaaaaaaaaaaaaaaaaee"),
        b("d4:infod5:filesld6:lengthi3e4:pathl1:a1:beed6:lengthi0e4:pathl1:ceee4:name3:dir12:piece lengthi16384eee"),
        b("li-1ei0ei1e0:4:spamd1:k1:vee"),
        b("d1:ad1:bd1:cleeee"),
    ]

    /// Decoding must either succeed or throw a `BencodeError` whose offset lies inside
    /// the input; a success must re-encode to bytes that decode to the same value.
    static func check(_ input: [UInt8], limits: BencodeLimits) {
        do {
            let v = try Bencode.decode(input, limits: limits)
            let again = try Bencode.decode(v.encoded(), limits: BencodeLimits(maxInputLength: Int.max))
            #expect(again.encoded() == v.encoded())
        } catch {
            #expect(error.offset >= 0 && error.offset <= max(input.count, limits.maxInputLength),
                    "offset \(error.offset) outside input of \(input.count) bytes")
        }
    }

    @Test("20,000 random and mutated inputs never trap")
    func fuzz() {
        var rng = SplitMix64(seed: 0x5747_4152_4C49_4E47)
        let alphabet = b("0123456789ilde:-x")
        let limits = BencodeLimits(maxDepth: 16, maxStringLength: 1 << 16, maxContainerCount: 256, maxInputLength: 1 << 16)
        var accepted = 0
        for round in 0..<20_000 {
            var input: [UInt8]
            switch round % 4 {
            case 0:
                // Uniform random bytes.
                input = (0..<Int.random(in: 0...48, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
            case 1:
                // Random bencode-alphabet text: far more likely to get deep into the parser.
                input = (0..<Int.random(in: 0...64, using: &rng)).map { _ in alphabet.randomElement(using: &rng)! }
            default:
                // A valid document with a few random mutations.
                input = Self.corpus.randomElement(using: &rng)!
                for _ in 0..<Int.random(in: 1...4, using: &rng) {
                    guard !input.isEmpty else { break }
                    let at = Int.random(in: 0..<input.count, using: &rng)
                    switch Int.random(in: 0..<4, using: &rng) {
                    case 0: input[at] = UInt8.random(in: 0...255, using: &rng)
                    case 1: input[at] = alphabet.randomElement(using: &rng)!
                    case 2: input.remove(at: at)
                    default: input.removeLast(Int.random(in: 0...(input.count - at), using: &rng))
                    }
                }
            }
            if (try? Bencode.decode(input, limits: limits)) != nil { accepted += 1 }
            Self.check(input, limits: limits)
        }
        // The generator reaches both outcomes: the loop is not only exercising the first byte.
        #expect(accepted > 100)
        #expect(accepted < 20_000)
    }
}

@Suite("Bencode raw ranges")
struct BencodeRangeTests {
    @Test("topLevelRanges gives the exact raw bytes of the info dictionary")
    func rawInfoBytes() throws {
        // `info` is deliberately non-canonical (keys unsorted): the range must give the bytes
        // as found, not a re-encoding.
        let info = "d6:lengthi5e4:name1:a12:piece lengthi16384e6:pieces20:ABCDEFGHIJKLMNOPQRSTe"
        let text = "d8:announce3:url4:info" + info + "7:comment2:hie"
        let input = b(text)
        let doc = try Bencode.decodeDocument(input)
        let range = try #require(doc.topLevelRanges[b("info")])
        #expect(Array(input[range]) == b(info))
        #expect(Array(input[try #require(doc.topLevelRanges[b("announce")])]) == b("3:url"))
        #expect(Array(input[try #require(doc.topLevelRanges[b("comment")])]) == b("2:hi"))
        #expect(doc.topLevelRanges.count == 3)
    }

    @Test("nested dictionaries do not add top-level ranges")
    func nestedNotRecorded() throws {
        let doc = try Bencode.decodeDocument(b("d1:ad1:bi1eee"))
        #expect(doc.topLevelRanges.keys.sorted { $0.lexicographicallyPrecedes($1) } == [b("a")])
        let list = try Bencode.decodeDocument(b("ld1:bi1eee"))
        #expect(list.topLevelRanges.isEmpty)
    }

    @Test("non-canonical info keeps its raw bytes, which differ from the canonical re-encoding")
    func rawDiffersFromCanonical() throws {
        let input = b("d4:infod1:bi1e1:ai2eee")
        let doc = try Bencode.decodeDocument(input)
        let range = try #require(doc.topLevelRanges[b("info")])
        #expect(Array(input[range]) == b("d1:bi1e1:ai2ee"))
        #expect(try #require(doc.value["info"]).encoded() == b("d1:ai2e1:bi1ee"))
    }
}
