import NIOCore

/// The 68-byte BitTorrent handshake (BEP 3), with reserved bits for the fast extension
/// (BEP 6) and the extension protocol (BEP 10).
public struct Handshake: Sendable, Equatable {
    public static let protocolString: [UInt8] = Array("BitTorrent protocol".utf8)
    public static let length = 68

    public var reserved: [UInt8]
    public var infoHash: InfoHash
    public var peerID: [UInt8]

    public init(infoHash: InfoHash, peerID: [UInt8], fast: Bool = true, extended: Bool = false) {
        var r = [UInt8](repeating: 0, count: 8)
        if fast { r[7] |= 0x04 }
        if extended { r[5] |= 0x10 }
        reserved = r
        self.infoHash = infoHash
        self.peerID = peerID
    }

    init(reserved: [UInt8], infoHash: InfoHash, peerID: [UInt8]) {
        self.reserved = reserved
        self.infoHash = infoHash
        self.peerID = peerID
    }

    public var supportsFast: Bool { reserved[7] & 0x04 != 0 }
    public var supportsExtended: Bool { reserved[5] & 0x10 != 0 }

    public func write(into buffer: inout ByteBuffer) {
        buffer.writeInteger(UInt8(19))
        buffer.writeBytes(Self.protocolString)
        buffer.writeBytes(reserved)
        buffer.writeBytes(infoHash.bytes)
        buffer.writeBytes(peerID)
    }

    /// Reads a handshake when 68 bytes are buffered; nil when more are needed.
    public static func read(from buffer: inout ByteBuffer) throws(PeerWireError) -> Handshake? {
        guard buffer.readableBytes >= length else {
            // Reject a wrong protocol string as early as its first byte.
            if let first = buffer.getInteger(at: buffer.readerIndex, as: UInt8.self), first != 19 {
                throw PeerWireError.badHandshake("protocol string length \(first), expected 19")
            }
            return nil
        }
        let start = buffer.readerIndex
        guard buffer.getInteger(at: start, as: UInt8.self) == 19,
              buffer.getBytes(at: start + 1, length: 19) == protocolString else {
            throw PeerWireError.badHandshake("not the BitTorrent protocol")
        }
        let reserved = buffer.getBytes(at: start + 20, length: 8)!
        let hash = InfoHash(bytes: buffer.getBytes(at: start + 28, length: 20)!)!
        let peerID = buffer.getBytes(at: start + 48, length: 20)!
        buffer.moveReaderIndex(forwardBy: length)
        return Handshake(reserved: reserved, infoHash: hash, peerID: peerID)
    }
}

/// Why a peer connection was closed for a protocol violation.
public enum PeerWireError: Error, Sendable, Equatable, CustomStringConvertible {
    case badHandshake(String)
    case messageTooLong(id: UInt8?, length: Int)
    case badLength(id: UInt8, length: Int)
    case invalid(String)

    public var description: String {
        switch self {
        case .badHandshake(let why): return "bad handshake: \(why)"
        case .messageTooLong(let id, let length):
            return "message \(id.map(String.init) ?? "?") of \(length) bytes exceeds the limit"
        case .badLength(let id, let length): return "message id \(id) has invalid length \(length)"
        case .invalid(let why): return "protocol violation: \(why)"
        }
    }
}
