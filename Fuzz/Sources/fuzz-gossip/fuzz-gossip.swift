import BitTorrent
import FuzzSupport

/// The fixed key the corpus datagrams are sealed with (`scripts/fuzz.sh` seeds).
let key = try! GossipKey(bytes: Array("starling-fuzz-gossip-key".utf8))

/// Gossip datagram codec: `open` never traps, on the raw input (almost always a bad MAC) and on
/// the input with its last 32 bytes replaced by the right MAC, which lets the fuzzer reach the
/// parser behind the MAC check. What opens seals to the same bytes and opens to the same message.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    var datagram = bytes(data, size)
    _ = try? GossipCodec.open(datagram, key: key)
    guard datagram.count >= GossipCodec.macSize else { return 0 }
    let bodyEnd = datagram.count - GossipCodec.macSize
    datagram.replaceSubrange(bodyEnd..., with: key.mac(datagram[..<bodyEnd]))
    guard let m = try? GossipCodec.open(datagram, key: key) else { return 0 }
    let sealed = GossipCodec.seal(m, key: key)
    require(sealed == datagram, "seal(open(d)) != d")
    require((try? GossipCodec.open(sealed, key: key)) == m, "open(seal(m)) != m")
    return 0
}
