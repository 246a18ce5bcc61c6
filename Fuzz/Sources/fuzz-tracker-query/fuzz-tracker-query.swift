import BitTorrent
import FuzzSupport

/// Announce and scrape query parsers (the tracker's side): never trap; an accepted request
/// writes a query string that parses back to the same request.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let input = bytes(data, size)
    if let a = try? AnnounceRequest.parse(queryBytes: input) {
        let query = a.queryString()
        guard let again = try? AnnounceRequest.parse(query: query) else { fatalError("own query rejected: \(query)") }
        require(normalized(again) == normalized(a), "parse(queryString(a)) != a for \(query)")
        require(again.queryString() == query, "queryString not stable")
    }
    if let s = try? ScrapeRequest.parse(queryBytes: input) {
        let query = s.queryString()
        guard let again = try? ScrapeRequest.parse(query: query) else { fatalError("own query rejected: \(query)") }
        require(again == s, "parse(queryString(s)) != s for \(query)")
    }
    return 0
}

/// `event=` (and BEP 21 `paused`) parse to `.empty`, which means no event and is not written.
func normalized(_ a: AnnounceRequest) -> AnnounceRequest {
    var a = a
    if a.event == .empty { a.event = nil }
    return a
}
