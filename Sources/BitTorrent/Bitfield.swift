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
    public var indices: [Int] { (0..<count).filter { self[$0] } }
}
