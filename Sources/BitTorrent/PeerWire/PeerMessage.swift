import NIOCore

/// A peer-wire message after the handshake (BEP 3, BEP 6 fast extension, BEP 10 extended).
public enum PeerMessage: Sendable, Equatable {
    case keepAlive
    case choke
    case unchoke
    case interested
    case notInterested
    case have(piece: Int)
    case bitfield([UInt8])
    case request(BlockRequest)
    case piece(index: Int, begin: Int, data: ByteBuffer)
    case cancel(BlockRequest)
    case port(UInt16)
    case suggest(piece: Int)
    case haveAll
    case haveNone
    case reject(BlockRequest)
    case allowedFast(piece: Int)
    case extended(id: UInt8, payload: ByteBuffer)
    /// A message id this implementation does not know; received only, never sent.
    case unknown(id: UInt8)

    public enum ID: UInt8 {
        case choke = 0, unchoke, interested, notInterested, have, bitfield, request, piece, cancel, port
        case suggest = 0x0D, haveAll = 0x0E, haveNone = 0x0F, reject = 0x10, allowedFast = 0x11
        case extended = 20
    }

    /// Bytes this message takes on the wire, length prefix included.
    public var wireLength: Int {
        switch self {
        case .keepAlive: return 4
        case .choke, .unchoke, .interested, .notInterested, .haveAll, .haveNone: return 5
        case .have, .suggest, .allowedFast: return 9
        case .bitfield(let b): return 5 + b.count
        case .request, .cancel, .reject: return 17
        case .piece(_, _, let data): return 13 + data.readableBytes
        case .port: return 7
        case .extended(_, let p): return 6 + p.readableBytes
        case .unknown: return 5
        }
    }

    /// The 13 bytes before a `piece` message's block: a sender reads the block straight
    /// after them into the same buffer.
    public static func writePieceHeader(_ block: BlockRequest, into buffer: inout ByteBuffer) {
        buffer.writeInteger(UInt32(9 + block.length))
        buffer.writeInteger(ID.piece.rawValue)
        buffer.writeInteger(UInt32(block.piece))
        buffer.writeInteger(UInt32(block.begin))
    }

    public func write(into buffer: inout ByteBuffer) {
        func header(_ id: ID, _ payload: Int) {
            buffer.writeInteger(UInt32(1 + payload))
            buffer.writeInteger(id.rawValue)
        }
        switch self {
        case .keepAlive: buffer.writeInteger(UInt32(0))
        case .choke: header(.choke, 0)
        case .unchoke: header(.unchoke, 0)
        case .interested: header(.interested, 0)
        case .notInterested: header(.notInterested, 0)
        case .haveAll: header(.haveAll, 0)
        case .haveNone: header(.haveNone, 0)
        case .have(let p): header(.have, 4); buffer.writeInteger(UInt32(p))
        case .suggest(let p): header(.suggest, 4); buffer.writeInteger(UInt32(p))
        case .allowedFast(let p): header(.allowedFast, 4); buffer.writeInteger(UInt32(p))
        case .bitfield(let bits): header(.bitfield, bits.count); buffer.writeBytes(bits)
        case .request(let r): header(.request, 12); r.write(into: &buffer)
        case .cancel(let r): header(.cancel, 12); r.write(into: &buffer)
        case .reject(let r): header(.reject, 12); r.write(into: &buffer)
        case .piece(let index, let begin, var data):
            Self.writePieceHeader(BlockRequest(piece: index, begin: begin, length: data.readableBytes), into: &buffer)
            buffer.writeBuffer(&data)
        case .port(let p): header(.port, 2); buffer.writeInteger(p)
        case .extended(let id, var payload):
            header(.extended, 1 + payload.readableBytes)
            buffer.writeInteger(id)
            buffer.writeBuffer(&payload)
        case .unknown(let id):
            buffer.writeInteger(UInt32(1))
            buffer.writeInteger(id)
        }
    }
}

/// A request for one block: piece index, offset in the piece, length.
public struct BlockRequest: Sendable, Hashable, CustomStringConvertible {
    public var piece: Int
    public var begin: Int
    public var length: Int

    public init(piece: Int, begin: Int, length: Int) {
        self.piece = piece
        self.begin = begin
        self.length = length
    }

    /// One word for the hasher, not three: every request in flight is hashed when it is sent
    /// and when its block arrives. Piece and offset name a block; the length goes unhashed.
    public func hash(into hasher: inout Hasher) {
        hasher.combine(UInt64(truncatingIfNeeded: piece) << 32 ^ UInt64(truncatingIfNeeded: begin))
    }

    func write(into buffer: inout ByteBuffer) {
        buffer.writeInteger(UInt32(piece))
        buffer.writeInteger(UInt32(begin))
        buffer.writeInteger(UInt32(length))
    }

    public var description: String { "\(piece):\(begin)+\(length)" }
}
