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

    /// Calls `body` with each set index, in order. Skips empty bytes, so a sparse field of
    /// thousands of pieces costs a few hundred byte loads.
    public func forEachSet(_ body: (Int) -> Void) {
        Self.forEachSetBit(byteCount: bytes.count, of: { bytes[$0] }, body)
    }

    /// Calls `body`, in order, with each index whose bit is set in `byte(k)` for the bytes
    /// `k` of `0..<byteCount` (BEP 3 order: high bit first). For callers that combine several
    /// fields a byte at a time, e.g. "unrequested and not started and the peer has it".
    @inlinable
    public static func forEachSetBit(byteCount: Int, of byte: (Int) -> UInt8, _ body: (Int) -> Void) {
        for k in 0..<byteCount {
            var b = byte(k)
            while b != 0 {
                let bit = b.leadingZeroBitCount
                body(k << 3 | bit)
                b &= ~(0x80 >> UInt8(bit))
            }
        }
    }

    /// True when some index is set here and not in `other` (a field of the same count):
    /// "the peer has a piece we lack", a byte at a time.
    public func hasAny(notIn other: Bitfield) -> Bool {
        precondition(other.count == count, "bitfields of \(count) and \(other.count) pieces")
        for k in bytes.indices where bytes[k] & ~other.bytes[k] != 0 { return true }
        return false
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
