/// A set of piece indices, stored as the BEP 3 bitfield (high bit of byte 0 = piece 0).
public struct Bitfield: Sendable, Hashable {
    public let count: Int
    public private(set) var bytes: [UInt8]
    public private(set) var setCount: Int

    public init(count: Int, allSet: Bool = false) {
        self.count = count
        bytes = [UInt8](repeating: 0, count: (count + 7) / 8)
        setCount = 0
        if allSet { for i in 0..<count { set(i) } }
    }

    /// From wire bytes; nil when the length is wrong or spare trailing bits are set.
    public init?(bytes: [UInt8], count: Int) {
        guard bytes.count == (count + 7) / 8 else { return nil }
        if count % 8 != 0, let last = bytes.last, last & (0xFF >> UInt8(count % 8)) != 0 { return nil }
        self.count = count
        self.bytes = bytes
        setCount = bytes.reduce(0) { $0 + $1.nonzeroBitCount }
    }

    public subscript(i: Int) -> Bool {
        bytes[i >> 3] & (0x80 >> UInt8(i & 7)) != 0
    }

    public mutating func set(_ i: Int) {
        guard !self[i] else { return }
        bytes[i >> 3] |= 0x80 >> UInt8(i & 7)
        setCount += 1
    }

    public mutating func clear(_ i: Int) {
        guard self[i] else { return }
        bytes[i >> 3] &= ~(0x80 >> UInt8(i & 7))
        setCount -= 1
    }

    public var isComplete: Bool { setCount == count }
    public var isEmpty: Bool { setCount == 0 }

    /// Indices that are set, in order.
    public var indices: [Int] {
        var out: [Int] = []
        out.reserveCapacity(setCount)
        forEachSet { out.append($0) }
        return out
    }

    /// Calls `body` with each set index, in order. Skips empty words, so a sparse field of
    /// thousands of pieces costs a few dozen loads.
    public func forEachSet(_ body: (Int) -> Void) {
        Self.forEachSetBit(in: self, self, self, where: { bits, _, _ in bits }, body)
    }

    /// Calls `body`, in order, with each index set in `combine` of the three fields' words
    /// (fields of the same count; 64 indices a word, high bit first): for callers that combine
    /// several fields, e.g. "unrequested and not started and the peer has it", on every
    /// request refill.
    @inlinable
    public static func forEachSetBit(in a: Bitfield, _ b: Bitfield, _ c: Bitfield,
                                     where combine: (UInt64, UInt64, UInt64) -> UInt64, _ body: (Int) -> Void) {
        precondition(a.count == b.count && b.count == c.count, "bitfields of \(a.count), \(b.count) and \(c.count) pieces")
        a.bytes.withUnsafeBytes { ra in
            b.bytes.withUnsafeBytes { rb in
                c.bytes.withUnsafeBytes { rc in
                    var k = 0
                    while k < ra.count {
                        var w = combine(word(ra, k), word(rb, k), word(rc, k))
                        // Beyond `count` nothing is set, whatever `combine` makes of the padding.
                        let bits = a.count - k << 3
                        if bits < 64 { w &= ~(UInt64.max >> UInt64(bits)) }
                        while w != 0 {
                            let bit = w.leadingZeroBitCount
                            body(k << 3 | bit)
                            w &= ~(1 << UInt64(63 - bit))
                        }
                        k += 8
                    }
                }
            }
        }
    }

    /// Eight bytes from `offset` as one word, byte `offset` highest; zeros past the end.
    @inlinable @inline(__always)
    static func word(_ raw: UnsafeRawBufferPointer, _ offset: Int) -> UInt64 {
        if offset + 8 <= raw.count { return UInt64(bigEndian: raw.loadUnaligned(fromByteOffset: offset, as: UInt64.self)) }
        var w: UInt64 = 0
        for j in 0..<8 { w = w << 8 | UInt64(offset + j < raw.count ? raw[offset + j] : 0) }
        return w
    }

    /// True when some index is set here and not in `other` (a field of the same count):
    /// "the peer has a piece we lack", a word at a time.
    public func hasAny(notIn other: Bitfield) -> Bool {
        precondition(other.count == count, "bitfields of \(count) and \(other.count) pieces")
        return bytes.withUnsafeBytes { mine in
            other.bytes.withUnsafeBytes { theirs in
                stride(from: 0, to: mine.count, by: 8).contains { Self.word(mine, $0) & ~Self.word(theirs, $0) != 0 }
            }
        }
    }

    /// The indices set both here and in `other` (a field of the same count).
    public func intersection(_ other: Bitfield) -> Bitfield {
        combined(with: other) { $0 & $1 }
    }

    /// The indices set here and not in `other` (a field of the same count).
    public func subtracting(_ other: Bitfield) -> Bitfield {
        combined(with: other) { $0 & ~$1 }
    }

    private func combined(with other: Bitfield, _ op: (UInt8, UInt8) -> UInt8) -> Bitfield {
        precondition(other.count == count, "bitfields of \(count) and \(other.count) pieces")
        var out = Bitfield(count: count)
        var n = 0
        for k in bytes.indices {
            let b = op(bytes[k], other.bytes[k])
            out.bytes[k] = b
            n += b.nonzeroBitCount
        }
        out.setCount = n
        return out
    }
}
