import Bencode
import Values

/// A peer as a tracker hands it out: address, port and (in dictionary lists) its id.
public struct TrackerPeer: Sendable, Hashable, CustomStringConvertible {
    /// Binary when the host is an IP address (the fast, common case), text for a DNS name
    /// (BEP 3 allows one in dictionary lists).
    enum Host: Sendable, Hashable {
        case ip(IPAddress)
        case name(String)
    }
    var storage: Host
    public var port: UInt16
    /// 20 bytes when known.
    public var peerID: [UInt8]?

    public init(host: String, port: UInt16, peerID: [UInt8]? = nil) {
        storage = IPAddress(host).map(Host.ip) ?? .name(host)
        self.port = port
        self.peerID = peerID
    }

    public init(ip: IPAddress, port: UInt16, peerID: [UInt8]? = nil) {
        storage = .ip(ip)
        self.port = port
        self.peerID = peerID
    }

    /// Textual IPv4 or IPv6 address (or a DNS name a tracker sent).
    public var host: String {
        get {
            switch storage {
            case .ip(let a): return a.description
            case .name(let n): return n
            }
        }
        set { storage = IPAddress(newValue).map(Host.ip) ?? .name(newValue) }
    }

    /// The address when `host` is an IP address.
    public var ip: IPAddress? { if case .ip(let a) = storage { return a } else { return nil } }

    public var description: String {
        if case .ip(let a) = storage, !a.isIPv4 { return "[\(host)]:\(port)" }
        return "\(host):\(port)"
    }
}

extension IPAddress {
    /// Appends the compact form: 4 bytes for IPv4, 16 for IPv6 (BEP 23, BEP 7). Straight from
    /// the two halves, without the intermediate arrays of `bytes`: this runs per handed-out peer.
    @inline(__always)
    func appendCompact(to out: inout [UInt8]) {
        if isIPv4 {
            for shift in stride(from: 24, through: 0, by: -8) { out.append(UInt8(truncatingIfNeeded: low >> UInt64(shift))) }
        } else {
            for shift in stride(from: 56, through: 0, by: -8) { out.append(UInt8(truncatingIfNeeded: high >> UInt64(shift))) }
            for shift in stride(from: 56, through: 0, by: -8) { out.append(UInt8(truncatingIfNeeded: low >> UInt64(shift))) }
        }
    }
}

/// A tracker's answer to an announce (BEP 3, compact lists per BEP 23, IPv6 per BEP 7).
public struct AnnounceResponse: Sendable, Hashable {
    /// Seconds the client should wait before the next regular announce.
    public var interval: Int
    public var minInterval: Int?
    public var peers: [TrackerPeer]
    /// Seeders.
    public var complete: Int?
    /// Leechers.
    public var incomplete: Int?
    public var warning: String?
    public var trackerID: String?

    public init(interval: Int, minInterval: Int? = nil, peers: [TrackerPeer] = [], complete: Int? = nil,
                incomplete: Int? = nil, warning: String? = nil, trackerID: String? = nil) {
        self.interval = interval
        self.minInterval = minInterval
        self.peers = peers
        self.complete = complete
        self.incomplete = incomplete
        self.warning = warning
        self.trackerID = trackerID
    }

    /// Bencoded response. Compact: IPv4 peers as 6-byte entries in `peers`, IPv6 as 18-byte
    /// entries in `peers6`; peers known only by DNS name cannot be compacted and are left out.
    /// Otherwise a list of `{ip, port, peer id}` dictionaries.
    ///
    /// Written by hand (keys in canonical order) rather than through `BencodeValue`,
    /// because this runs for every announce.
    public func encoded(compact: Bool) -> [UInt8] {
        var w = BencodeWriter(capacity: 64 + peers.count * (compact ? 6 : 60))
        w.out.append(UInt8(ascii: "d"))
        if let complete { w.key("complete"); w.int(complete) }
        if let incomplete { w.key("incomplete"); w.int(incomplete) }
        w.key("interval"); w.int(interval)
        if let minInterval { w.key("min interval"); w.int(minInterval) }
        if compact {
            var v4: [UInt8] = [], v6: [UInt8] = []
            v4.reserveCapacity(peers.count * 6)
            for p in peers {
                guard case .ip(let a) = p.storage else { continue }
                if a.isIPv4 {
                    a.appendCompact(to: &v4)
                    v4.append(UInt8(p.port >> 8)); v4.append(UInt8(p.port & 0xff))
                } else {
                    a.appendCompact(to: &v6)
                    v6.append(UInt8(p.port >> 8)); v6.append(UInt8(p.port & 0xff))
                }
            }
            w.key("peers"); w.bytes(v4)
            if !v6.isEmpty { w.key("peers6"); w.bytes(v6) }
        } else {
            w.key("peers")
            w.out.append(UInt8(ascii: "l"))
            for p in peers {
                w.out.append(UInt8(ascii: "d"))
                w.key("ip"); w.bytes(Array(p.host.utf8))
                if let id = p.peerID { w.key("peer id"); w.bytes(id) }
                w.key("port"); w.int(Int(p.port))
                w.out.append(UInt8(ascii: "e"))
            }
            w.out.append(UInt8(ascii: "e"))
        }
        if let trackerID { w.key("tracker id"); w.bytes(Array(trackerID.utf8)) }
        if let warning { w.key("warning message"); w.bytes(Array(warning.utf8)) }
        w.out.append(UInt8(ascii: "e"))
        return w.out
    }

    /// A BEP 3 failure response: `d14:failure reason...e`.
    public static func failure(_ reason: String) -> [UInt8] {
        BencodeValue.dict([("failure reason", .string(reason))]).encoded()
    }

    /// Largest response body a client accepts (about 170,000 compact peers).
    public static let maxResponseSize = 1 << 20

    /// Most peers taken from one answer (a tracker hands out at most a few hundred; a hostile
    /// one listing 170,000 per answer grew a peer by hundreds of MiB).
    public static let maxPeersTaken = 200

    /// Decodes a tracker's answer: compact or dictionary `peers`, and `peers6`, the first
    /// `maxPeers` of them. A `failure reason` is thrown as `TrackerError.failure` with the
    /// tracker's text.
    public static func decode(_ bytes: [UInt8], maxPeers: Int = maxPeersTaken) throws(TrackerError) -> AnnounceResponse {
        let root = try decodeRoot(bytes)
        guard let interval = root["interval"]?.integerValue, interval >= 0, interval <= Int64(Int32.max) else {
            throw .invalidResponse("missing or invalid 'interval'")
        }
        var r = AnnounceResponse(interval: Int(interval))
        r.minInterval = root["min interval"]?.integerValue.flatMap { Int(exactly: $0) }
        r.complete = root["complete"]?.integerValue.flatMap { Int(exactly: $0) }
        r.incomplete = root["incomplete"]?.integerValue.flatMap { Int(exactly: $0) }
        r.warning = root["warning message"]?.stringValue
        r.trackerID = root["tracker id"]?.stringValue
        switch root["peers"] {
        case .bytes(let b)?:
            r.peers = try compactPeers(b, width: 4, key: "peers", max: maxPeers)
        case .list(let items)?:
            for (i, item) in items.prefix(maxPeers).enumerated() {
                guard let host = item["ip"]?.stringValue, !host.isEmpty,
                      let port = item["port"]?.integerValue, let p = UInt16(exactly: port) else {
                    throw .invalidResponse("peers[\(i)] lacks a valid 'ip' or 'port'")
                }
                let id = item["peer id"]?.bytesValue
                r.peers.append(TrackerPeer(host: host, port: p, peerID: id))
            }
        case nil:
            break // a tracker with no peers may omit the key
        default:
            throw .invalidResponse("'peers' is neither a byte string nor a list")
        }
        if let p6 = root["peers6"] {
            guard let b = p6.bytesValue else { throw .invalidResponse("'peers6' is not a byte string") }
            r.peers += try compactPeers(b, width: 16, key: "peers6", max: maxPeers - r.peers.count)
        }
        return r
    }

    static func compactPeers(_ b: [UInt8], width: Int, key: String, max: Int) throws(TrackerError) -> [TrackerPeer] {
        let entry = width + 2
        guard b.count % entry == 0 else {
            throw .invalidResponse("'\(key)' is \(b.count) bytes, not a multiple of \(entry)")
        }
        let end = Swift.max(0, Swift.min(b.count, max * entry))
        var out: [TrackerPeer] = []
        out.reserveCapacity(end / entry)
        var i = 0
        while i < end {
            guard let ip = IPAddress(bytes: b[i..<(i + width)]) else { throw .invalidResponse("bad address in '\(key)'") }
            let port = UInt16(b[i + width]) << 8 | UInt16(b[i + width + 1])
            out.append(TrackerPeer(ip: ip, port: port))
            i += entry
        }
        return out
    }

    /// The `failure reason` text when `bytes` is a bencoded failure response, else nil.
    public static func failureReason(in bytes: [UInt8]) -> String? {
        do {
            _ = try decodeRoot(bytes)
            return nil
        } catch {
            if case .failure(let reason) = error { return reason }
            return nil
        }
    }

    /// Decodes a top-level dictionary and turns a `failure reason` into an error.
    static func decodeRoot(_ bytes: [UInt8]) throws(TrackerError) -> BencodeValue {
        guard bytes.count <= maxResponseSize else {
            throw .invalidResponse("response is \(bytes.count) bytes, more than \(maxResponseSize)")
        }
        let root: BencodeValue
        do {
            root = try Bencode.decode(bytes, limits: BencodeLimits(maxDepth: 8, maxStringLength: maxResponseSize,
                                                                   maxContainerCount: 1 << 18, maxInputLength: maxResponseSize))
        } catch {
            let preview = String(decoding: bytes.prefix(60), as: UTF8.self)
            throw .invalidResponse("\(error) (body starts: \(QueryParameters.printable(preview)))")
        }
        guard root.dictionaryEntries != nil else { throw .invalidResponse("top level is not a dictionary") }
        if let reason = root["failure reason"] {
            throw .failure(reason.stringValue ?? "(failure reason is not text)")
        }
        return root
    }
}

/// Appends bencode tokens; callers write dictionary keys in canonical (sorted) order.
struct BencodeWriter {
    var out: [UInt8]
    init(capacity: Int) {
        out = []
        out.reserveCapacity(capacity)
    }
    mutating func int(_ v: Int) {
        out.append(UInt8(ascii: "i"))
        appendDecimal(v)
        out.append(UInt8(ascii: "e"))
    }
    mutating func bytes(_ b: [UInt8]) {
        appendDecimal(b.count)
        out.append(UInt8(ascii: ":"))
        out.append(contentsOf: b)
    }
    mutating func key(_ k: StaticString) {
        appendDecimal(k.utf8CodeUnitCount)
        out.append(UInt8(ascii: ":"))
        k.withUTF8Buffer { out.append(contentsOf: $0) }
    }
    mutating func appendDecimal(_ v: Int) {
        if v < 0 { out.append(UInt8(ascii: "-")) }
        var m = v.magnitude
        if m == 0 { out.append(UInt8(ascii: "0")); return }
        var digits: (UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8,
                     UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8) =
            (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
        var n = 0
        withUnsafeMutableBytes(of: &digits) { buf in
            while m > 0 {
                buf[n] = UInt8(ascii: "0") + UInt8(m % 10)
                m /= 10
                n += 1
            }
            while n > 0 {
                n -= 1
                out.append(buf[n])
            }
        }
    }
}
