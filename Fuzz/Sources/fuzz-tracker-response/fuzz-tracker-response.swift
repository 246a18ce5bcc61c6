import BitTorrent
import FuzzSupport

/// Announce and scrape response decoders (a client reading a possibly hostile tracker): never
/// trap; a decoded answer re-encodes (dictionary peers) to one that decodes to the same answer.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let input = bytes(data, size)
    _ = AnnounceResponse.failureReason(in: input)
    if let r = try? AnnounceResponse.decode(input) {
        let encoded = r.encoded(compact: false)
        guard let again = try? AnnounceResponse.decode(encoded) else { fatalError("own encoding rejected") }
        require(again == r, "decode(encode(r)) != r")
        _ = try? AnnounceResponse.decode(r.encoded(compact: true))
    }
    if let s = try? ScrapeResponse.decode(input) {
        guard let again = try? ScrapeResponse.decode(s.encoded()) else { fatalError("own scrape encoding rejected") }
        require(again == s, "decode(encode(s)) != s")
    }
    return 0
}
