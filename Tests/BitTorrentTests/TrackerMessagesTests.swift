import Bencode
import Testing
@testable import BitTorrent
import Values

@Suite("Tracker messages")
struct TrackerMessagesTests {
    static let hash = InfoHash(bytes: (0..<20).map { UInt8($0 * 13 % 256) })!
    static let peerID = Array("-ST0001-abcdefghijkl".utf8)

    @Test func queryStringRoundTrips() throws {
        let r = AnnounceRequest(infoHash: Self.hash, peerID: Self.peerID, port: 6881, uploaded: 10, downloaded: 20,
                                left: 30, event: .started, numWant: 25, key: "k3y", compact: false, ip: "10.0.0.7")
        let q = r.queryString()
        #expect(q.hasPrefix("info_hash=%00%0D%1A"))
        #expect(q.contains("peer_id=-ST0001-abcdefghijkl"))
        #expect(try AnnounceRequest.parse(query: q) == r)
    }

    @Test func binaryBytesArePercentEncoded() {
        let encoded = PercentEncoding.encode([0x00, 0x20, 0x2B, 0x41, 0x7E, 0xFF])
        #expect(encoded == "%00%20%2BA~%FF")
        #expect(PercentEncoding.decode(Array(encoded.utf8)) == [0x00, 0x20, 0x2B, 0x41, 0x7E, 0xFF])
        // A raw '+' in a binary value is the byte 0x2B, not a space.
        #expect(PercentEncoding.decode(Array("a+b".utf8)) == Array("a+b".utf8))
    }

    /// Exactly what aria2c 1.36 sends: a binary `key`, `no_peer_id`, `supportcrypto`.
    @Test func aria2AnnounceParses() throws {
        let q = "info_hash=%1Cr%91%A2%EC%F7%9B%D0%DD%9Fa%B9%FF%8B%B3%9C%E4%2A%98%00&peer_id=A2-1-36-0-%ED%A46%BDi%0ANO%18%3C"
            + "&uploaded=0&downloaded=0&left=3145728&compact=1&key=6%BDi%0ANO%18%3C&numwant=50&no_peer_id=1&port=20740"
            + "&event=started&supportcrypto=1"
        let r = try AnnounceRequest.parse(query: q)
        #expect(r.port == 20740 && r.left == 3_145_728 && r.event == .started && r.numWant == 50 && r.compact)
        #expect(r.peerID.count == 20 && r.infoHash.hex.hasPrefix("1c7291a2"))
    }

    /// Found by fuzz-tracker-query: a 48-byte binary key was kept as 96 hex digits, so the
    /// request's own query string (`queryString()`) no longer parsed.
    @Test func binaryKeyKeptWithinTheLimit() throws {
        let q = Self.good + "&port=1&left=0&key="
        let long = try? AnnounceRequest.parse(query: q + String(repeating: "%FF", count: 48))
        #expect(long == nil)
        let r = try AnnounceRequest.parse(query: q + String(repeating: "%FF", count: 32))
        #expect(r.key == String(repeating: "ff", count: 32))
        #expect(try AnnounceRequest.parse(query: r.queryString()) == r)
    }

    @Test func defaultsAndIgnoredParameters() throws {
        let q = "info_hash=\(PercentEncoding.encode(Self.hash.bytes))&peer_id=\(PercentEncoding.encode(Self.peerID))"
            + "&port=1&left=0&supportcrypto=1&no_peer_id=1&event="
        let r = try AnnounceRequest.parse(query: q)
        #expect(r.compact)
        #expect(r.event == .empty)
        #expect(r.uploaded == 0 && r.downloaded == 0 && r.left == 0)
        #expect(r.numWant == nil && r.key == nil && r.ip == nil)
    }

    static let good = "info_hash=\(PercentEncoding.encode(hash.bytes))&peer_id=\(PercentEncoding.encode(peerID))"
    static let malformed: [(String, String)] = [
        ("info_hash=%zz" + "&peer_id=\(PercentEncoding.encode(peerID))&port=1&left=0", "bad percent-encoding in parameter 'info_hash'"),
        ("info_hash=%4&peer_id=x&port=1&left=0", "bad percent-encoding in parameter 'info_hash'"),
        ("info_hash=abc&peer_id=\(PercentEncoding.encode(peerID))&port=1&left=0", "info_hash must be 20 bytes, got 3"),
        ("peer_id=\(PercentEncoding.encode(peerID))&port=1&left=0", "missing info_hash"),
        (good + "&left=0", "missing port"),
        (good + "&port=0&left=0", "port must be an integer from 1 to 65535"),
        (good + "&port=65536&left=0", "port must be an integer from 1 to 65535"),
        (good + "&port=http&left=0", "port must be an integer from 1 to 65535"),
        (good + "&port=1", "missing left"),
        (good + "&port=1&left=-5", "left must be a non-negative integer"),
        (good + "&port=1&left=99999999999999999999999", "left must be a non-negative integer"),
        (good + "&port=1&left=0&event=exploded", "unknown event 'exploded'"),
        (good + "&port=1&left=0&compact=2", "compact must be 0 or 1"),
        (good + "&port=1&left=0&info_hash=\(PercentEncoding.encode(hash.bytes))", "info_hash given more than once"),
        ("info_hash=\(PercentEncoding.encode(hash.bytes))&peer_id=short&port=1&left=0", "peer_id must be 20 bytes, got 5"),
        ("info_hash=\(PercentEncoding.encode(hash.bytes))&port=1&left=0", "missing peer_id"),
        ("", "missing info_hash"),
        ("%ff%fe=1", "bad percent-encoding in a parameter name"),
    ]

    @Test(arguments: malformed)
    func malformedRequestsAreRejected(_ query: String, _ message: String) {
        #expect(throws: TrackerError.invalidRequest(message)) { try AnnounceRequest.parse(query: query) }
    }

    @Test func tooManyParametersAreRejected() {
        let q = Array(repeating: "a=1", count: QueryParameters.maxParameters + 1).joined(separator: "&")
        #expect(throws: TrackerError.self) { try AnnounceRequest.parse(query: q) }
    }

    static let peers = [
        TrackerPeer(host: "10.0.0.1", port: 6881, peerID: Array("-AA0001-000000000001".utf8)),
        TrackerPeer(host: "192.168.1.200", port: 51413, peerID: Array("-AA0001-000000000002".utf8)),
        TrackerPeer(host: "2001:db8::1", port: 443, peerID: Array("-AA0001-000000000003".utf8)),
    ]

    @Test func compactResponseUsesPeersAndPeers6() throws {
        let r = AnnounceResponse(interval: 15, minInterval: 7, peers: Self.peers, complete: 1, incomplete: 2,
                                 warning: "be nice", trackerID: "t1")
        let bytes = r.encoded(compact: true)
        // Canonical (sorted keys), so any strict bencode decoder accepts it and re-encodes identically.
        #expect(try Bencode.decode(bytes).encoded() == bytes)
        let root = try Bencode.decode(bytes)
        #expect(root["peers"]?.bytesValue == [10, 0, 0, 1, 0x1A, 0xE1, 192, 168, 1, 200, 0xC8, 0xD5])
        #expect(root["peers6"]?.bytesValue?.count == 18)
        let back = try AnnounceResponse.decode(bytes)
        #expect(back.interval == 15 && back.minInterval == 7 && back.complete == 1 && back.incomplete == 2)
        #expect(back.warning == "be nice" && back.trackerID == "t1")
        // Compact lists carry no peer ids.
        #expect(back.peers == Self.peers.map { TrackerPeer(host: $0.host, port: $0.port) })
        #expect(back.peers[2].host == "2001:db8::1")
    }

    @Test func dictionaryResponseRoundTrips() throws {
        let r = AnnounceResponse(interval: 30, peers: Self.peers + [TrackerPeer(host: "peer.example", port: 1)],
                                 complete: 0, incomplete: 4)
        let bytes = r.encoded(compact: false)
        #expect(try Bencode.decode(bytes).encoded() == bytes)
        #expect(try AnnounceResponse.decode(bytes) == r)
    }

    /// A hostile tracker's answer lists as many peers as 1 MiB holds (170,000 compact ones);
    /// a client takes the first `maxPeersTaken`, in every form.
    @Test func peersTakenFromOneAnswerAreCapped() throws {
        let many = (0..<170_000).map { (n: Int) -> TrackerPeer in
            let ip = IPAddress(high: 0, low: 0xffff_0a00_0000 | UInt64(n))
            return TrackerPeer(ip: ip, port: 6881)
        }
        let compact = AnnounceResponse(interval: 15, peers: many).encoded(compact: true)
        #expect(compact.count <= AnnounceResponse.maxResponseSize)
        let taken = try AnnounceResponse.decode(compact).peers
        #expect(taken == Array(many.prefix(AnnounceResponse.maxPeersTaken)))
        let dictionary = AnnounceResponse(interval: 15, peers: Array(many.prefix(5000))).encoded(compact: false)
        #expect(try AnnounceResponse.decode(dictionary).peers.count == AnnounceResponse.maxPeersTaken)
        let v6 = (0..<300).map { (n: Int) -> TrackerPeer in TrackerPeer(ip: IPAddress(high: 0x2001_0db8 << 32, low: UInt64(n)), port: 1) }
        let mixed = AnnounceResponse(interval: 15, peers: Array(many.prefix(150)) + v6).encoded(compact: true)
        let both = try AnnounceResponse.decode(mixed).peers
        #expect(both.count == AnnounceResponse.maxPeersTaken)
        #expect(both.filter { $0.host.contains(":") }.count == AnnounceResponse.maxPeersTaken - 150)
    }

    @Test func emptyCompactResponse() throws {
        let bytes = AnnounceResponse(interval: 15).encoded(compact: true)
        #expect(String(decoding: bytes, as: UTF8.self) == "d8:intervali15e5:peers0:e")
        #expect(try AnnounceResponse.decode(bytes).peers.isEmpty)
    }

    @Test func failureReasonIsThrown() {
        let bytes = AnnounceResponse.failure("unregistered torrent")
        #expect(String(decoding: bytes, as: UTF8.self) == "d14:failure reason20:unregistered torrente")
        #expect(throws: TrackerError.failure("unregistered torrent")) { try AnnounceResponse.decode(bytes) }
        #expect(AnnounceResponse.failureReason(in: bytes) == "unregistered torrent")
    }

    @Test(arguments: [
        "not bencode", "le", "d5:peers3:abce", "d8:intervali15e5:peers5:abcdee", "d8:intervali15e5:peersi3ee",
        "d8:intervali15e6:peers67:abcdefe", "d8:intervali15e5:peersld4:porti1eeee",
        "d8:intervali15e5:peersld2:ip1:x4:porti70000eeee",
    ])
    func malformedResponsesAreErrors(_ text: String) {
        #expect(throws: TrackerError.self) { try AnnounceResponse.decode(Array(text.utf8)) }
    }

    @Test func scrapeRoundTrips() throws {
        let other = InfoHash(bytes: [UInt8](repeating: 0xEE, count: 20))!
        let req = ScrapeRequest(infoHashes: [Self.hash, other])
        #expect(try ScrapeRequest.parse(query: req.queryString()) == req)
        #expect(try ScrapeRequest.parse(query: "").infoHashes.isEmpty)
        #expect(throws: TrackerError.invalidRequest("info_hash must be 20 bytes, got 2")) {
            try ScrapeRequest.parse(query: "info_hash=ab")
        }
        let resp = ScrapeResponse(files: [Self.hash: ScrapeStats(complete: 3, incomplete: 4, downloaded: 5),
                                          other: ScrapeStats(complete: 0, incomplete: 1, downloaded: 0, left: 123)])
        let bytes = resp.encoded()
        #expect(try Bencode.decode(bytes).encoded() == bytes)
        #expect(try ScrapeResponse.decode(bytes) == resp)
        #expect(throws: TrackerError.failure("no")) { try ScrapeResponse.decode(AnnounceResponse.failure("no")) }
        #expect(throws: TrackerError.self) { try ScrapeResponse.decode(Array("d5:filesd3:abcd8:completei1eeee".utf8)) }
    }

    @Test func peerAddressesInCompactForm() throws {
        // IPv4-mapped text is IPv4: it belongs in `peers`, not `peers6`.
        let mapped = TrackerPeer(host: "::ffff:10.1.2.3", port: 1)
        #expect(mapped.ip?.isIPv4 == true && mapped.host == "10.1.2.3")
        let bytes = AnnounceResponse(interval: 1, peers: [mapped]).encoded(compact: true)
        #expect(try Bencode.decode(bytes)["peers"]?.bytesValue == [10, 1, 2, 3, 0, 1])
        #expect(TrackerPeer(host: "2001:db8::1", port: 2).description == "[2001:db8::1]:2")
        #expect(TrackerPeer(host: "peer.example", port: 3).ip == nil)
    }
}
