import NIOCore

/// What the decoder yields: the handshake first, then messages.
public enum PeerWireFrame: Sendable, Equatable {
    case handshake(Handshake)
    case message(PeerMessage)
}

/// Frames the peer-wire stream: one handshake, then length-prefixed messages.
///
/// Every length is checked before any allocation: a request for more than 16 KiB, a
/// bitfield of the wrong size or any frame above the limit is a `PeerWireError`, which
/// the channel handler turns into a closed connection with a logged reason.
public struct PeerWireDecoder: NIOSingleStepByteToMessageDecoder {
    public typealias InboundOut = PeerWireFrame

    /// Largest request a peer may make (the de-facto standard block size).
    public static let maxRequestLength = 16 * 1024
    /// Largest extended (BEP 10) payload accepted.
    public static let maxExtendedLength = 64 * 1024

    /// Most pieces a torrent may have when the torrent is not yet known (inbound, before the handshake).
    public static let maxPieceCount = 1 << 21

    let pieceCount: Int?
    var handshakeDone: Bool

    /// `pieceCount` makes the bitfield length exact; nil (an inbound connection serving several
    /// torrents) only bounds it, and the session checks it. `expectHandshake` false for tests.
    public init(pieceCount: Int?, expectHandshake: Bool = true) {
        self.pieceCount = pieceCount
        handshakeDone = !expectHandshake
    }

    var bitfieldLength: Int? { pieceCount.map { ($0 + 7) / 8 } }
    var maxFrameLength: Int {
        max(9 + Self.maxRequestLength + 4, 1 + (bitfieldLength ?? Self.maxPieceCount / 8), 2 + Self.maxExtendedLength)
    }

    public mutating func decode(buffer: inout ByteBuffer) throws -> PeerWireFrame? {
        if !handshakeDone {
            guard let h = try Handshake.read(from: &buffer) else { return nil }
            handshakeDone = true
            return .handshake(h)
        }
        guard let length = buffer.getInteger(at: buffer.readerIndex, as: UInt32.self) else { return nil }
        let n = Int(length)
        if n == 0 {
            buffer.moveReaderIndex(forwardBy: 4)
            return .message(.keepAlive)
        }
        let id = buffer.getInteger(at: buffer.readerIndex + 4, as: UInt8.self)
        guard n <= maxFrameLength else { throw PeerWireError.messageTooLong(id: id, length: n) }
        // The frame limit is sized for the largest bitfield; an extended message has its own, smaller one.
        if id == PeerMessage.ID.extended.rawValue, n > 2 + Self.maxExtendedLength {
            throw PeerWireError.messageTooLong(id: id, length: n)
        }
        guard buffer.readableBytes >= 4 + n else { return nil }
        buffer.moveReaderIndex(forwardBy: 4)
        var frame = buffer.readSlice(length: n)!
        return .message(try Self.parse(&frame, length: n, bitfieldLength: bitfieldLength))
    }

    public mutating func decodeLast(buffer: inout ByteBuffer, seenEOF: Bool) throws -> PeerWireFrame? {
        try decode(buffer: &buffer)
    }

    static func parse(_ frame: inout ByteBuffer, length n: Int, bitfieldLength: Int?) throws(PeerWireError) -> PeerMessage {
        let rawID = frame.readInteger(as: UInt8.self)!
        func expect(_ len: Int) throws(PeerWireError) {
            guard n == len else { throw PeerWireError.badLength(id: rawID, length: n) }
        }
        func u32() -> Int { Int(frame.readInteger(as: UInt32.self)!) }
        func request() throws(PeerWireError) -> BlockRequest {
            try expect(13)
            let r = BlockRequest(piece: u32(), begin: u32(), length: u32())
            guard r.length > 0, r.length <= maxRequestLength else {
                throw PeerWireError.invalid("request of \(r.length) bytes (limit \(maxRequestLength))")
            }
            return r
        }
        // Unknown ids within the size limit are skipped, as BEP 3 asks, for forward compatibility.
        guard let id = PeerMessage.ID(rawValue: rawID) else { return .unknown(id: rawID) }
        switch id {
        case .choke: try expect(1); return .choke
        case .unchoke: try expect(1); return .unchoke
        case .interested: try expect(1); return .interested
        case .notInterested: try expect(1); return .notInterested
        case .haveAll: try expect(1); return .haveAll
        case .haveNone: try expect(1); return .haveNone
        case .have: try expect(5); return .have(piece: u32())
        case .suggest: try expect(5); return .suggest(piece: u32())
        case .allowedFast: try expect(5); return .allowedFast(piece: u32())
        case .bitfield:
            if let expected = bitfieldLength, n - 1 != expected {
                throw PeerWireError.invalid("bitfield of \(n - 1) bytes, expected \(expected)")
            }
            return .bitfield(frame.readBytes(length: n - 1)!)
        case .request: return .request(try request())
        case .cancel: return .cancel(try request())
        case .reject: return .reject(try request())
        case .piece:
            guard n >= 9, n - 9 <= maxRequestLength else { throw PeerWireError.badLength(id: rawID, length: n) }
            let index = u32()
            let begin = u32()
            return .piece(index: index, begin: begin, data: frame.readSlice(length: n - 9)!)
        case .port: try expect(3); return .port(frame.readInteger(as: UInt16.self)!)
        case .extended:
            guard n >= 2 else { throw PeerWireError.badLength(id: rawID, length: n) }
            let ext = frame.readInteger(as: UInt8.self)!
            return .extended(id: ext, payload: frame.readSlice(length: n - 2)!)
        }
    }
}
