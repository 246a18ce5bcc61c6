import BitTorrent
import FuzzSupport
import NIOCore

/// Handshake reader: never traps; an accepted handshake writes back the 68 bytes it read.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let input = bytes(data, size)
    var buffer = ByteBuffer(bytes: input)
    guard let h = try? Handshake.read(from: &buffer) else { return 0 }
    require(buffer.readerIndex == Handshake.length, "read consumed \(buffer.readerIndex) bytes")
    var out = ByteBuffer()
    h.write(into: &out)
    require(Array(out.readableBytesView) == Array(input.prefix(Handshake.length)), "write(read(x)) != x")
    var again = out
    require((try? Handshake.read(from: &again)) == h, "read(write(h)) != h")
    return 0
}
