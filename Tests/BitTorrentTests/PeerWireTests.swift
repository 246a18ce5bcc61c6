import BitTorrent
import NIOCore
import NIOEmbedded
import Testing

// Helpers are fileprivate: other branches add files to this target.

fileprivate func bytes(_ s: String) -> [UInt8] { Array(s.utf8) }

fileprivate func buffer(_ b: [UInt8]) -> ByteBuffer { ByteBuffer(bytes: b) }

fileprivate func wire(_ messages: [PeerMessage]) -> ByteBuffer {
    var out = ByteBuffer()
    for m in messages { m.write(into: &out) }
    return out
}

fileprivate let sampleHash = InfoHash(bytes: (0..<20).map { UInt8($0) })!
fileprivate let samplePeerID: [UInt8] = Array("-ST0001-abcdefghijkl".utf8)

/// Decodes every frame of `input`, feeding it in chunks of `chunk` bytes, as a channel would.
fileprivate func decodeAll(_ input: ByteBuffer, decoder: PeerWireDecoder, chunk: Int) throws -> [PeerWireFrame] {
    var decoder = decoder
    var pending = ByteBuffer()
    var input = input
    var out: [PeerWireFrame] = []
    while input.readableBytes > 0 {
        var piece = input.readSlice(length: min(chunk, input.readableBytes))!
        pending.writeBuffer(&piece)
        while let frame = try decoder.decode(buffer: &pending) { out.append(frame) }
    }
    #expect(pending.readableBytes == 0, "bytes left over after the last frame")
    return out
}

fileprivate let everyMessage: [PeerMessage] = [
    .keepAlive, .choke, .unchoke, .interested, .notInterested,
    .have(piece: 0), .have(piece: 0xFFFF_FFFE),
    .bitfield([0b1010_0000, 0xFF]),
    .request(BlockRequest(piece: 3, begin: 16_384, length: 16_384)),
    .request(BlockRequest(piece: 0, begin: 0, length: 1)),
    .piece(index: 7, begin: 32_768, data: buffer((0..<16_384).map { UInt8(truncatingIfNeeded: $0 &* 31) })),
    .piece(index: 1, begin: 0, data: ByteBuffer()),
    .cancel(BlockRequest(piece: 9, begin: 0, length: 16_384)),
    .port(6881),
    .suggest(piece: 12), .haveAll, .haveNone,
    .reject(BlockRequest(piece: 2, begin: 16_384, length: 100)),
    .allowedFast(piece: 5),
    .extended(id: 0, payload: buffer(bytes("d1:md11:ut_metadatai3eee"))),
    .extended(id: 3, payload: ByteBuffer()),
    .unknown(id: 0x42),
]

@Suite("Peer-wire codec")
struct PeerWireTests {
    @Test("every message round-trips alone, with its declared wire length", arguments: everyMessage)
    func roundTripEach(_ message: PeerMessage) throws {
        var buf = ByteBuffer()
        message.write(into: &buf)
        #expect(buf.readableBytes == message.wireLength)
        var decoder = PeerWireDecoder(pieceCount: 16, expectHandshake: false)
        let frame = try decoder.decode(buffer: &buf)
        #expect(frame == .message(message))
        #expect(buf.readableBytes == 0)
    }

    @Test("a handshake then every message, fed one byte at a time")
    func handshakeStreamByteByByte() throws {
        let hs = Handshake(infoHash: sampleHash, peerID: samplePeerID, fast: true, extended: true)
        var stream = ByteBuffer()
        hs.write(into: &stream)
        #expect(stream.readableBytes == Handshake.length)
        var messages = wire(everyMessage)
        stream.writeBuffer(&messages)
        let frames = try decodeAll(stream, decoder: PeerWireDecoder(pieceCount: 16), chunk: 1)
        #expect(frames == [.handshake(hs)] + everyMessage.map { .message($0) })
        guard case .handshake(let got) = frames.first else { Issue.record("no handshake"); return }
        #expect(got.supportsFast)
        #expect(got.supportsExtended)
        #expect(got.infoHash == sampleHash)
        #expect(got.peerID == samplePeerID)
    }

    @Test("the same stream in odd-sized chunks gives the same frames", arguments: [3, 7, 67, 69, 1000])
    func chunked(_ chunk: Int) throws {
        var stream = ByteBuffer()
        Handshake(infoHash: sampleHash, peerID: samplePeerID, fast: false).write(into: &stream)
        var messages = wire(everyMessage)
        stream.writeBuffer(&messages)
        let frames = try decodeAll(stream, decoder: PeerWireDecoder(pieceCount: 16), chunk: chunk)
        #expect(frames.count == 1 + everyMessage.count)
        #expect(Array(frames.dropFirst()) == everyMessage.map { .message($0) })
    }

    @Test("a partial frame yields nothing and consumes nothing")
    func partialFrame() throws {
        var full = wire([.request(BlockRequest(piece: 1, begin: 0, length: 16_384))])
        var decoder = PeerWireDecoder(pieceCount: nil, expectHandshake: false)
        var partial = full.readSlice(length: 10)!
        #expect(try decoder.decode(buffer: &partial) == nil)
        #expect(partial.readableBytes == 10)
        partial.writeBuffer(&full)
        #expect(try decoder.decode(buffer: &partial) == .message(.request(BlockRequest(piece: 1, begin: 0, length: 16_384))))
    }

    // MARK: malformed input

    struct Malformed: Sendable, CustomTestStringConvertible {
        var name: String
        var bytes: [UInt8]
        var pieceCount: Int?
        var handshake = false
        var expected: PeerWireError
        var testDescription: String { name }
    }

    static func frame(_ length: UInt32, _ id: UInt8, _ payload: [UInt8] = []) -> [UInt8] {
        var b = ByteBuffer()
        b.writeInteger(length)
        b.writeInteger(id)
        b.writeBytes(payload)
        return Array(b.readableBytesView)
    }

    static func u32s(_ values: UInt32...) -> [UInt8] {
        var b = ByteBuffer()
        for v in values { b.writeInteger(v) }
        return Array(b.readableBytesView)
    }

    static let malformed: [Malformed] = [
        Malformed(name: "request above 16 KiB", bytes: frame(13, 6, u32s(0, 0, 16_385)),
                  expected: .invalid("request of 16385 bytes (limit 16384)")),
        Malformed(name: "request of zero bytes", bytes: frame(13, 6, u32s(0, 0, 0)),
                  expected: .invalid("request of 0 bytes (limit 16384)")),
        Malformed(name: "cancel above 16 KiB", bytes: frame(13, 8, u32s(0, 0, 1 << 20)),
                  expected: .invalid("request of 1048576 bytes (limit 16384)")),
        Malformed(name: "request with a short body", bytes: frame(9, 6, u32s(0, 0)),
                  expected: .badLength(id: 6, length: 9)),
        Malformed(name: "bitfield of the wrong length", bytes: frame(4, 5, [0xFF, 0xFF, 0xFF]), pieceCount: 16,
                  expected: .invalid("bitfield of 3 bytes, expected 2")),
        Malformed(name: "bitfield far beyond the torrent", bytes: frame(1 + 100_000, 5), pieceCount: 16,
                  expected: .messageTooLong(id: 5, length: 100_001)),
        Malformed(name: "unknown id with an absurd length", bytes: frame(0x7fff_ffff, 0x63),
                  expected: .messageTooLong(id: 0x63, length: 0x7fff_ffff)),
        Malformed(name: "absurd length before the id arrives", bytes: u32s(0xffff_ffff),
                  expected: .messageTooLong(id: nil, length: 0xffff_ffff)),
        Malformed(name: "piece above 16 KiB", bytes: frame(9 + 16_385, 7, u32s(0, 0) + [UInt8](repeating: 0, count: 16_385)),
                  expected: .badLength(id: 7, length: 9 + 16_385)),
        Malformed(name: "piece without its header", bytes: frame(5, 7, u32s(0)),
                  expected: .badLength(id: 7, length: 5)),
        Malformed(name: "have with a short body", bytes: frame(3, 4, [0, 1]),
                  expected: .badLength(id: 4, length: 3)),
        Malformed(name: "have with a long body", bytes: frame(9, 4, u32s(1, 2)),
                  expected: .badLength(id: 4, length: 9)),
        Malformed(name: "choke with a payload", bytes: frame(2, 0, [0]),
                  expected: .badLength(id: 0, length: 2)),
        Malformed(name: "port with a long body", bytes: frame(5, 9, u32s(1)),
                  expected: .badLength(id: 9, length: 5)),
        Malformed(name: "extended without its id", bytes: frame(1, 20),
                  expected: .badLength(id: 20, length: 1)),
        Malformed(name: "extended above its limit", bytes: frame(2 + 100_000, 20, [0] + [UInt8](repeating: 0, count: 100_000)),
                  expected: .messageTooLong(id: 20, length: 100_002)),
        Malformed(name: "handshake with a bad protocol string",
                  bytes: [19] + bytes("BitTorrent protocoX") + [UInt8](repeating: 0, count: 48), handshake: true,
                  expected: .badHandshake("not the BitTorrent protocol")),
        Malformed(name: "handshake with a wrong length byte, seen early",
                  bytes: [18] + bytes("BitTorrent protoco"), handshake: true,
                  expected: .badHandshake("protocol string length 18, expected 19")),
        Malformed(name: "HTTP instead of a handshake", bytes: bytes("GET / HTTP/1.1\r\n"), handshake: true,
                  expected: .badHandshake("protocol string length 71, expected 19")),
    ]

    @Test("malformed frames are errors, never crashes", arguments: malformed)
    func malformedFrames(_ m: Malformed) {
        var decoder = PeerWireDecoder(pieceCount: m.pieceCount, expectHandshake: m.handshake)
        var buf = ByteBuffer(bytes: m.bytes)
        #expect(throws: m.expected) {
            while try decoder.decode(buffer: &buf) != nil {}
        }
    }

    @Test("an unknown id with a small length is skipped as .unknown, and the stream continues")
    func unknownSmall() throws {
        var buf = ByteBuffer(bytes: Self.frame(6, 0x63, [1, 2, 3, 4, 5]))
        PeerMessage.interested.write(into: &buf)
        var decoder = PeerWireDecoder(pieceCount: 8, expectHandshake: false)
        #expect(try decoder.decode(buffer: &buf) == .message(.unknown(id: 0x63)))
        #expect(try decoder.decode(buffer: &buf) == .message(.interested))
        #expect(try decoder.decode(buffer: &buf) == nil)
    }

    @Test("a bitfield of any plausible length passes when the torrent is not yet known")
    func bitfieldUnknownTorrent() throws {
        var buf = wire([.bitfield([UInt8](repeating: 0xFF, count: 1000))])
        var decoder = PeerWireDecoder(pieceCount: nil, expectHandshake: false)
        #expect(try decoder.decode(buffer: &buf) == .message(.bitfield([UInt8](repeating: 0xFF, count: 1000))))
    }

    // MARK: in a channel

    @Test("in a channel: frames come out whole from 1-byte writes; a bad frame fails writeInbound")
    func embeddedChannel() throws {
        let channel = EmbeddedChannel(handler: ByteToMessageHandler(PeerWireDecoder(pieceCount: 16)))
        defer { _ = try? channel.finish() }
        var stream = ByteBuffer()
        let hs = Handshake(infoHash: sampleHash, peerID: samplePeerID)
        hs.write(into: &stream)
        PeerMessage.unchoke.write(into: &stream)
        PeerMessage.have(piece: 3).write(into: &stream)
        var frames: [PeerWireFrame] = []
        while stream.readableBytes > 0 {
            try channel.writeInbound(stream.readSlice(length: 1)!)
            while let f = try channel.readInbound(as: PeerWireFrame.self) { frames.append(f) }
        }
        #expect(frames == [.handshake(hs), .message(.unchoke), .message(.have(piece: 3))])

        var bad = ByteBuffer(bytes: Self.frame(13, 6, Self.u32s(0, 0, 1 << 17)))
        #expect(throws: PeerWireError.invalid("request of 131072 bytes (limit 16384)")) {
            try channel.writeInbound(bad.readSlice(length: bad.readableBytes)!)
        }
        #expect(try channel.readInbound(as: PeerWireFrame.self) == nil)
    }

    @Test("in a channel: an absurd length is refused before its body arrives")
    func embeddedAbsurdLength() throws {
        let channel = EmbeddedChannel(handler: ByteToMessageHandler(PeerWireDecoder(pieceCount: nil, expectHandshake: false)))
        defer { _ = try? channel.finish() }
        #expect(throws: PeerWireError.messageTooLong(id: 0xEE, length: 0x7fff_ffff)) {
            try channel.writeInbound(ByteBuffer(bytes: Self.frame(0x7fff_ffff, 0xEE)))
        }
    }
}

@Suite("Bitfield")
struct BitfieldTests {
    @Test("wire bytes with spare bits set are refused")
    func spareBits() {
        #expect(Bitfield(bytes: [0xFF, 0x80], count: 9) != nil)
        #expect(Bitfield(bytes: [0xFF, 0x40], count: 9) == nil)
        #expect(Bitfield(bytes: [0xFF, 0x01], count: 9) == nil)
        #expect(Bitfield(bytes: [0x01], count: 7) == nil)
        #expect(Bitfield(bytes: [0x02], count: 7) != nil)
        #expect(Bitfield(bytes: [0xFF], count: 8) != nil)
    }

    @Test("wire bytes of the wrong length are refused")
    func wrongLength() {
        #expect(Bitfield(bytes: [0xFF], count: 9) == nil)
        #expect(Bitfield(bytes: [0, 0, 0], count: 9) == nil)
        #expect(Bitfield(bytes: [], count: 0) != nil)
    }

    @Test("set and clear keep the count, idempotently; bit order is BEP 3's")
    func setClear() {
        var b = Bitfield(count: 10)
        #expect(b.isEmpty)
        b.set(0)
        b.set(9)
        b.set(9)
        #expect(b.setCount == 2)
        #expect(b.bytes == [0x80, 0x40])
        #expect(b.indices == [0, 9])
        b.clear(0)
        b.clear(0)
        b.clear(5)
        #expect(b.setCount == 1)
        #expect(b[9] && !b[0])
        let full = Bitfield(count: 10, allSet: true)
        #expect(full.isComplete)
        #expect(full.bytes == [0xFF, 0xC0])
        #expect(Bitfield(bytes: full.bytes, count: 10)?.setCount == 10)
    }

    @Test("indices, forEachSet, forEachSetBit and hasAny(notIn:) agree with bit-by-bit answers",
          arguments: [1, 7, 8, 9, 63, 64, 65, 127, 881])
    func wordWiseScans(count: Int) {
        var state: UInt64 = 0x5EED &+ UInt64(count)
        func coin(_ oneIn: UInt64) -> Bool {
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return (state >> 33) % oneIn == 0
        }
        for density: UInt64 in [1, 2, 50] {
            var ours = Bitfield(count: count), theirs = Bitfield(count: count)
            for i in 0..<count {
                if coin(density) { theirs.set(i) }
                if !coin(density) { ours.set(i) }
            }
            var visited: [Int] = []
            theirs.forEachSet { visited.append($0) }
            let naive = (0..<count).filter { theirs[$0] }
            #expect(visited == naive)
            #expect(theirs.indices == naive)
            #expect(theirs.hasAny(notIn: ours) == naive.contains { !ours[$0] })
            // Neither has it: the complement sets the padding past `count`, which must not show.
            var neither: [Int] = []
            Bitfield.forEachSetBit(in: ours, theirs, theirs, where: { a, b, _ in ~a & ~b }) { neither.append($0) }
            #expect(neither == (0..<count).filter { !ours[$0] && !theirs[$0] })
            // Their pieces all held by us: nothing to want.
            for i in naive { ours.set(i) }
            #expect(!theirs.hasAny(notIn: ours))
        }
    }
}
