import Values
/// The `event` of an announce (BEP 3). `empty` is a regular interval announce.
public enum AnnounceEvent: String, Sendable, Hashable, CaseIterable {
    case started, completed, stopped, empty
}

/// One announce: a peer telling the tracker about itself and asking for others (BEP 3).
public struct AnnounceRequest: Sendable, Hashable {
    public var infoHash: InfoHash
    /// Exactly 20 bytes.
    public var peerID: [UInt8]
    public var port: UInt16
    public var uploaded: Int64
    public var downloaded: Int64
    /// Bytes still missing; 0 means the peer is a seeder.
    public var left: Int64
    /// `nil` when the client sent none (same as `.empty`).
    public var event: AnnounceEvent?
    public var numWant: Int?
    /// A client-chosen secret that lets a tracker recognise the client across IP changes.
    public var key: String?
    /// BEP 23 compact peer list wanted (the default).
    public var compact: Bool
    /// The address the client claims; a tracker honours it only from trusted networks.
    public var ip: String?

    public init(infoHash: InfoHash, peerID: [UInt8], port: UInt16, uploaded: Int64 = 0, downloaded: Int64 = 0,
                left: Int64, event: AnnounceEvent? = nil, numWant: Int? = nil, key: String? = nil,
                compact: Bool = true, ip: String? = nil) {
        self.infoHash = infoHash
        self.peerID = peerID
        self.port = port
        self.uploaded = uploaded
        self.downloaded = downloaded
        self.left = left
        self.event = event
        self.numWant = numWant
        self.key = key
        self.compact = compact
        self.ip = ip
    }

    /// The query string (without `?`) a client appends to the announce URL.
    public func queryString() -> String {
        var out: [UInt8] = []
        out.reserveCapacity(200)
        func add(_ k: String, _ v: some Sequence<UInt8>) {
            if !out.isEmpty { out.append(UInt8(ascii: "&")) }
            out.append(contentsOf: k.utf8)
            out.append(UInt8(ascii: "="))
            PercentEncoding.encode(v, into: &out)
        }
        add("info_hash", infoHash.bytes)
        add("peer_id", peerID)
        add("port", String(port).utf8)
        add("uploaded", String(uploaded).utf8)
        add("downloaded", String(downloaded).utf8)
        add("left", String(left).utf8)
        add("compact", (compact ? "1" : "0").utf8)
        if let e = event, e != .empty { add("event", e.rawValue.utf8) }
        if let n = numWant { add("numwant", String(n).utf8) }
        if let k = key { add("key", k.utf8) }
        if let ip { add("ip", ip.utf8) }
        return String(decoding: out, as: UTF8.self)
    }

    /// Largest `numwant` accepted by the parser (a tracker caps it further).
    public static let maxNumWant = 100_000

    /// Parses the query string of `GET /announce?...` strictly: any malformed or missing
    /// required parameter is a `TrackerError.invalidRequest` whose text suits a `failure reason`.
    public static func parse(query: String) throws(TrackerError) -> AnnounceRequest {
        try parse(queryBytes: Array(query.utf8))
    }

    public static func parse(query: Substring) throws(TrackerError) -> AnnounceRequest {
        try parse(queryBytes: Array(query.utf8))
    }

    /// Concrete byte form: generic code called from another module is not specialised.
    public static func parse(queryBytes: [UInt8]) throws(TrackerError) -> AnnounceRequest {
        let params = try QueryParameters(parsing: queryBytes)
        var infoHash: InfoHash?
        var peerID: [UInt8]?
        var port: UInt16?
        var uploaded: Int64 = 0, downloaded: Int64 = 0
        var left: Int64?
        var event: AnnounceEvent?
        var numWant: Int?
        var key: String?
        var compact = true
        var ip: String?

        func text(_ v: [UInt8], _ name: String) throws(TrackerError) -> String {
            guard let s = String(validating: v, as: UTF8.self) else { throw .invalidRequest("\(name) is not text") }
            return s
        }
        func count(_ v: [UInt8], _ name: String) throws(TrackerError) -> Int64 {
            guard v.count <= 20, let s = String(validating: v, as: UTF8.self), let n = Int64(s), n >= 0 else {
                throw .invalidRequest("\(name) must be a non-negative integer")
            }
            return n
        }

        for (k, v) in params.pairs {
            switch k {
            case "info_hash":
                guard infoHash == nil else { throw .invalidRequest("info_hash given more than once") }
                guard let h = InfoHash(bytes: v) else {
                    throw .invalidRequest("info_hash must be 20 bytes, got \(v.count)")
                }
                infoHash = h
            case "peer_id":
                guard v.count == 20 else { throw .invalidRequest("peer_id must be 20 bytes, got \(v.count)") }
                peerID = v
            case "port":
                guard let s = String(validating: v, as: UTF8.self), let n = UInt16(s), n > 0 else {
                    throw .invalidRequest("port must be an integer from 1 to 65535")
                }
                port = n
            case "uploaded": uploaded = try count(v, "uploaded")
            case "downloaded": downloaded = try count(v, "downloaded")
            case "left": left = try count(v, "left")
            case "event":
                let s = try text(v, "event")
                switch s {
                case "": event = .empty
                // BEP 21 'paused' is a regular announce for our purposes.
                case "paused": event = .empty
                default:
                    guard let e = AnnounceEvent(rawValue: s) else {
                        throw .invalidRequest("unknown event '\(QueryParameters.printable(s))'")
                    }
                    event = e
                }
            case "numwant":
                let n = try count(v, "numwant")
                numWant = Int(min(n, Int64(maxNumWant)))
            case "key":
                // aria2 sends random binary keys: keep them, as hex when not UTF-8 text. The limit
                // applies to what is kept, so a parsed request's key can be sent again (fuzzing found it).
                let k = String(validating: v, as: UTF8.self) ?? Hex.encode(v)
                guard k.utf8.count <= 64 else { throw .invalidRequest("key is longer than 64 bytes") }
                key = k
            case "compact":
                switch v {
                case [UInt8(ascii: "0")]: compact = false
                case [UInt8(ascii: "1")]: compact = true
                default: throw .invalidRequest("compact must be 0 or 1")
                }
            case "ip":
                guard v.count <= 255 else { throw .invalidRequest("ip is too long") }
                ip = try text(v, "ip")
            default:
                continue // no_peer_id, supportcrypto, corrupt, trackerid, ipv4, ipv6...: not needed
            }
        }
        guard let infoHash else { throw .invalidRequest("missing info_hash") }
        guard let peerID else { throw .invalidRequest("missing peer_id") }
        guard let port else { throw .invalidRequest("missing port") }
        guard let left else { throw .invalidRequest("missing left") }
        return AnnounceRequest(infoHash: infoHash, peerID: peerID, port: port, uploaded: uploaded,
                               downloaded: downloaded, left: left, event: event, numWant: numWant, key: key,
                               compact: compact, ip: ip)
    }
}
