import Bencode

/// A scrape (BEP 48): swarm counts for one or many info-hashes; none means "all".
public struct ScrapeRequest: Sendable, Hashable {
    public var infoHashes: [InfoHash]

    public init(infoHashes: [InfoHash]) { self.infoHashes = infoHashes }

    public func queryString() -> String {
        infoHashes.map { "info_hash=" + PercentEncoding.encode($0.bytes) }.joined(separator: "&")
    }

    /// Most hashes in one scrape (the query is bounded by the request size anyway).
    public static let maxInfoHashes = 256

    public static func parse(query: String) throws(TrackerError) -> ScrapeRequest {
        try parse(queryBytes: Array(query.utf8))
    }

    public static func parse(query: Substring) throws(TrackerError) -> ScrapeRequest {
        try parse(queryBytes: Array(query.utf8))
    }

    public static func parse(queryBytes: [UInt8]) throws(TrackerError) -> ScrapeRequest {
        let params = try QueryParameters(parsing: queryBytes)
        var hashes: [InfoHash] = []
        for v in params.values("info_hash") {
            guard let h = InfoHash(bytes: v) else { throw .invalidRequest("info_hash must be 20 bytes, got \(v.count)") }
            guard hashes.count < maxInfoHashes else { throw .invalidRequest("more than \(maxInfoHashes) info_hash values") }
            if !hashes.contains(h) { hashes.append(h) }
        }
        return ScrapeRequest(infoHashes: hashes)
    }
}

/// Counts for one torrent in a scrape response.
public struct ScrapeStats: Sendable, Hashable {
    /// Seeders.
    public var complete: Int
    /// Leechers.
    public var incomplete: Int
    /// Completed downloads ever reported (`event=completed`).
    public var downloaded: Int
    /// Bytes the leechers still miss, summed as each last announced `left`: a Starling
    /// extension (key `left`) that other clients ignore; nil from trackers that do not send it.
    public var left: Int64?

    public init(complete: Int, incomplete: Int, downloaded: Int, left: Int64? = nil) {
        self.complete = complete
        self.incomplete = incomplete
        self.downloaded = downloaded
        self.left = left
    }
}

/// A scrape answer: `files` keyed by the raw 20-byte info-hash.
public struct ScrapeResponse: Sendable, Hashable {
    public var files: [InfoHash: ScrapeStats]

    public init(files: [InfoHash: ScrapeStats]) { self.files = files }

    public func encoded() -> [UInt8] {
        let entries = files.map { (hash, s) in
            BencodeDictionaryEntry(key: hash.bytes, value: .dict([
                ("complete", .integer(Int64(s.complete))),
                ("downloaded", .integer(Int64(s.downloaded))),
                ("incomplete", .integer(Int64(s.incomplete))),
            ] + (s.left.map { [("left", .integer($0))] } ?? [])))
        }
        return BencodeValue.dict([("files", .dictionary(entries))]).encoded()
    }

    /// Decodes a scrape answer; a `failure reason` is thrown as `TrackerError.failure`.
    public static func decode(_ bytes: [UInt8]) throws(TrackerError) -> ScrapeResponse {
        let root = try AnnounceResponse.decodeRoot(bytes)
        guard let entries = root["files"]?.dictionaryEntries else {
            throw .invalidResponse("missing 'files' dictionary")
        }
        var files: [InfoHash: ScrapeStats] = [:]
        for e in entries {
            guard let h = InfoHash(bytes: e.key) else { throw .invalidResponse("a 'files' key is not a 20-byte info-hash") }
            func count(_ k: String) throws(TrackerError) -> Int {
                guard let v = e.value[k]?.integerValue, let n = Int(exactly: v), n >= 0 else {
                    throw .invalidResponse("files[\(h.shortHex)] lacks a valid '\(k)'")
                }
                return n
            }
            // 'downloaded' is optional in practice (some trackers omit it).
            let downloaded = e.value["downloaded"] == nil ? 0 : try count("downloaded")
            var left: Int64?
            if let v = e.value["left"] {
                guard let n = v.integerValue, n >= 0 else { throw .invalidResponse("files[\(h.shortHex)] has an invalid 'left'") }
                left = n
            }
            files[h] = ScrapeStats(complete: try count("complete"), incomplete: try count("incomplete"), downloaded: downloaded,
                                   left: left)
        }
        return ScrapeResponse(files: files)
    }
}
