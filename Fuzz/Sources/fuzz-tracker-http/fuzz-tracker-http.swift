import BitTorrent
import FuzzSupport
import NIOCore
import StarlingNode

/// The tracker's request-head decoder (also the node's HTTP listener), on a stream of
/// pipelined requests: never traps; each head fits the limit; the same stream fed in two parts
/// yields the same requests; announce and scrape queries go on to their parsers.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let input = bytes(data, size)
    let whole = decodeAll([input[...]])
    let parts = decodeAll([input[..<(input.count / 3)], input[(input.count / 3)...]])
    require(whole == parts, "split stream decodes differently")
    for request in whole.requests {
        require(request.target.utf8.first == UInt8(ascii: "/"), "target \(request.target)")
        switch request.path {
        case "/announce": _ = try? AnnounceRequest.parse(query: request.query)
        case "/scrape": _ = try? ScrapeRequest.parse(query: request.query)
        default: break
        }
    }
    return 0
}

struct Decoded: Equatable {
    var requests: [HTTPRequest] = []
    var error: String?
}

func decodeAll(_ chunks: [ArraySlice<UInt8>]) -> Decoded {
    var decoder = HTTPRequestDecoder(maxHeadSize: 1024)
    var buffer = ByteBuffer()
    var out = Decoded()
    for chunk in chunks {
        buffer.writeBytes(chunk)
        while true {
            do {
                guard let r = try decoder.decode(buffer: &buffer) else { break }
                out.requests.append(r)
            } catch {
                out.error = "\(error)"
                return out
            }
        }
    }
    return out
}
