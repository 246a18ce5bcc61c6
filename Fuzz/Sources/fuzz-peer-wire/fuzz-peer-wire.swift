import BitTorrent
import FuzzSupport
import NIOCore

/// Peer-wire decoder after the handshake: never traps; every message it yields re-encodes to
/// the frame it came from (unknown ids aside: their payload is skipped) and decodes back to
/// itself; and a stream fed in two parts yields the same messages as in one.
///
/// The first input byte picks the torrent's piece count (0: unknown, as on an inbound connection).
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard size > 0 else { return 0 }
    let input = bytes(data, size)
    let pieceCount = input[0] == 0 ? nil : Int(input[0]) * 8 - 3
    let stream = Array(input.dropFirst())
    let (whole, wholeFailed) = decodeAll([stream[...]], pieceCount: pieceCount)
    let split = stream.count / 2
    let (parts, partsFailed) = decodeAll([stream[..<split], stream[split...]], pieceCount: pieceCount)
    require(whole == parts && wholeFailed == partsFailed, "split stream decodes differently")
    for (message, frame) in whole {
        var out = ByteBuffer()
        message.write(into: &out)
        require(out.readableBytes == message.wireLength, "wireLength \(message.wireLength) != \(out.readableBytes)")
        if case .unknown = message {} else {
            require(Array(out.readableBytesView) == frame, "write(decode(frame)) != frame for \(message)")
        }
        var decoder = PeerWireDecoder(pieceCount: pieceCount, expectHandshake: false)
        require((try? decoder.decode(buffer: &out)) == .message(message), "decode(write(m)) != m for \(message)")
    }
    return 0
}

/// Messages with the bytes of their frames, and whether the decoder threw.
func decodeAll(_ chunks: [ArraySlice<UInt8>], pieceCount: Int?) -> ([(PeerMessage, [UInt8])], Bool) {
    var decoder = PeerWireDecoder(pieceCount: pieceCount, expectHandshake: false)
    var buffer = ByteBuffer()
    var out: [(PeerMessage, [UInt8])] = []
    for chunk in chunks {
        buffer.writeBytes(chunk)
        while true {
            let before = buffer
            let frame: PeerWireFrame?
            do { frame = try decoder.decode(buffer: &buffer) } catch { return (out, true) }
            guard case .message(let m)? = frame else { break }
            out.append((m, before.getBytes(at: before.readerIndex, length: buffer.readerIndex - before.readerIndex)!))
        }
    }
    return (out, false)
}

func == (a: [(PeerMessage, [UInt8])], b: [(PeerMessage, [UInt8])]) -> Bool {
    a.count == b.count && zip(a, b).allSatisfy { $0.0 == $1.0 && $0.1 == $1.1 }
}
