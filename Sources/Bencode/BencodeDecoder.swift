/// Bounds that keep a hostile input from exhausting memory or the stack.
public struct BencodeLimits: Sendable {
    /// Deepest nesting of lists and dictionaries.
    public var maxDepth: Int
    /// Longest byte string.
    public var maxStringLength: Int
    /// Most items in one list or entries in one dictionary.
    public var maxContainerCount: Int
    /// Largest whole input.
    public var maxInputLength: Int

    public init(maxDepth: Int = 64, maxStringLength: Int = 32 << 20,
                maxContainerCount: Int = 1 << 20, maxInputLength: Int = 64 << 20) {
        self.maxDepth = maxDepth
        self.maxStringLength = maxStringLength
        self.maxContainerCount = maxContainerCount
        self.maxInputLength = maxInputLength
    }

    public static let `default` = BencodeLimits()
}

/// A decoding failure, with the byte offset where the input went wrong.
public struct BencodeError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Kind: Sendable, Equatable {
        case truncated
        case unexpectedByte(UInt8)
        case leadingZero
        case negativeZero
        case integerOverflow
        case emptyInteger
        case tooDeep
        case stringTooLong
        case containerTooLarge
        case inputTooLarge
        case trailingGarbage
        case duplicateKey
        case keyNotString
    }
    public var kind: Kind
    public var offset: Int

    public init(_ kind: Kind, at offset: Int) {
        self.kind = kind
        self.offset = offset
    }

    public var description: String {
        let what: String
        switch kind {
        case .truncated: what = "input ends too early"
        case .unexpectedByte(let b):
            let shown = (0x20..<0x7f).contains(b) ? "'\(Character(UnicodeScalar(b)))'" : "0x" + String(b, radix: 16)
            what = "unexpected byte \(shown)"
        case .leadingZero: what = "integer has a leading zero"
        case .negativeZero: what = "negative zero is not allowed"
        case .integerOverflow: what = "integer does not fit in 64 bits"
        case .emptyInteger: what = "integer has no digits"
        case .tooDeep: what = "nesting is too deep"
        case .stringTooLong: what = "byte string is longer than the limit"
        case .containerTooLarge: what = "list or dictionary has more items than the limit"
        case .inputTooLarge: what = "input is larger than the limit"
        case .trailingGarbage: what = "trailing bytes after the value"
        case .duplicateKey: what = "duplicate dictionary key"
        case .keyNotString: what = "dictionary key is not a byte string"
        }
        return "bencode: \(what) at byte \(offset)"
    }
}

/// A decoded document: the value, and the exact input bytes of each value of a
/// top-level dictionary (so an info-hash can be taken over `info` as found).
public struct BencodeDocument: Sendable {
    public var value: BencodeValue
    /// Byte ranges in the input of each top-level dictionary value, by key.
    public var topLevelRanges: [[UInt8]: Range<Int>]
}

/// Strict, bounded decoder. It never traps: every problem is a `BencodeError`.
public enum Bencode {
    public static func decode(_ input: [UInt8], limits: BencodeLimits = .default) throws(BencodeError) -> BencodeValue {
        try decodeDocument(input, limits: limits).value
    }

    public static func decodeDocument(_ input: [UInt8], limits: BencodeLimits = .default) throws(BencodeError) -> BencodeDocument {
        guard input.count <= limits.maxInputLength else { throw BencodeError(.inputTooLarge, at: limits.maxInputLength) }
        var parser = Parser(input: input, limits: limits)
        let value = try parser.parseValue(depth: 0)
        guard parser.pos == input.count else { throw BencodeError(.trailingGarbage, at: parser.pos) }
        return BencodeDocument(value: value, topLevelRanges: parser.topLevelRanges)
    }

    struct Parser {
        let input: [UInt8]
        let limits: BencodeLimits
        var pos = 0
        var topLevelRanges: [[UInt8]: Range<Int>] = [:]

        init(input: [UInt8], limits: BencodeLimits) {
            self.input = input
            self.limits = limits
        }

        func peek() throws(BencodeError) -> UInt8 {
            guard pos < input.count else { throw BencodeError(.truncated, at: pos) }
            return input[pos]
        }

        mutating func parseValue(depth: Int) throws(BencodeError) -> BencodeValue {
            let c = try peek()
            switch c {
            case UInt8(ascii: "i"):
                pos += 1
                return .integer(try parseInteger(terminator: UInt8(ascii: "e"), allowNegative: true))
            case UInt8(ascii: "0")...UInt8(ascii: "9"):
                return .bytes(try parseBytes())
            case UInt8(ascii: "l"):
                guard depth < limits.maxDepth else { throw BencodeError(.tooDeep, at: pos) }
                pos += 1
                var items: [BencodeValue] = []
                while try peek() != UInt8(ascii: "e") {
                    guard items.count < limits.maxContainerCount else { throw BencodeError(.containerTooLarge, at: pos) }
                    items.append(try parseValue(depth: depth + 1))
                }
                pos += 1
                return .list(items)
            case UInt8(ascii: "d"):
                guard depth < limits.maxDepth else { throw BencodeError(.tooDeep, at: pos) }
                pos += 1
                var entries: [BencodeDictionaryEntry] = []
                var seen = Set<[UInt8]>()
                while try peek() != UInt8(ascii: "e") {
                    guard entries.count < limits.maxContainerCount else { throw BencodeError(.containerTooLarge, at: pos) }
                    let keyOffset = pos
                    let k = try peek()
                    guard (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(k) else { throw BencodeError(.keyNotString, at: pos) }
                    let key = try parseBytes()
                    guard seen.insert(key).inserted else { throw BencodeError(.duplicateKey, at: keyOffset) }
                    let start = pos
                    let value = try parseValue(depth: depth + 1)
                    if depth == 0 { topLevelRanges[key] = start..<pos }
                    entries.append(BencodeDictionaryEntry(key: key, value: value))
                }
                pos += 1
                return .dictionary(entries)
            default:
                throw BencodeError(.unexpectedByte(c), at: pos)
            }
        }

        /// Parses digits up to `terminator` (consumed). Rejects leading zeros and -0.
        mutating func parseInteger(terminator: UInt8, allowNegative: Bool) throws(BencodeError) -> Int64 {
            let start = pos
            var negative = false
            if allowNegative, try peek() == UInt8(ascii: "-") {
                negative = true
                pos += 1
            }
            let digitsStart = pos
            var magnitude: UInt64 = 0
            while true {
                let c = try peek()
                if c == terminator { break }
                guard (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(c) else { throw BencodeError(.unexpectedByte(c), at: pos) }
                if pos > digitsStart, input[digitsStart] == UInt8(ascii: "0") { throw BencodeError(.leadingZero, at: digitsStart) }
                let (m1, o1) = magnitude.multipliedReportingOverflow(by: 10)
                let (m2, o2) = m1.addingReportingOverflow(UInt64(c - UInt8(ascii: "0")))
                guard !o1, !o2 else { throw BencodeError(.integerOverflow, at: start) }
                magnitude = m2
                pos += 1
            }
            guard pos > digitsStart else { throw BencodeError(.emptyInteger, at: pos) }
            pos += 1 // terminator
            if negative {
                guard magnitude != 0 else { throw BencodeError(.negativeZero, at: start) }
                guard magnitude <= UInt64(Int64.max) + 1 else { throw BencodeError(.integerOverflow, at: start) }
                return magnitude == UInt64(Int64.max) + 1 ? Int64.min : -Int64(magnitude)
            }
            guard magnitude <= UInt64(Int64.max) else { throw BencodeError(.integerOverflow, at: start) }
            return Int64(magnitude)
        }

        mutating func parseBytes() throws(BencodeError) -> [UInt8] {
            let lengthOffset = pos
            let length = try parseInteger(terminator: UInt8(ascii: ":"), allowNegative: false)
            guard length <= Int64(limits.maxStringLength) else { throw BencodeError(.stringTooLong, at: lengthOffset) }
            let n = Int(length)
            guard input.count - pos >= n else { throw BencodeError(.truncated, at: input.count) }
            let bytes = Array(input[pos..<(pos + n)])
            pos += n
            return bytes
        }
    }
}
