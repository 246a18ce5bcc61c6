#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// An IPv4 or IPv6 address held as 16 bytes; IPv4 is stored IPv4-mapped (`::ffff:a.b.c.d`).
///
/// One representation for both families keeps the gossip wire format fixed-width, lets one
/// `CIDR.contains` serve both, and makes tracker swarm entries small and cheap to hash.
public struct IPAddress: Sendable, Hashable, Comparable, CustomStringConvertible {
    /// The 128 bits as two big-endian halves: no heap storage, cheap to compare and mask.
    public let high: UInt64
    public let low: UInt64

    /// `::` — on the wire it means "no address given".
    public static let unspecified = IPAddress(high: 0, low: 0)
    /// `0.0.0.0`: every IPv4 address, where a listener binds.
    public static let unspecifiedIPv4 = IPAddress(high: 0, low: 0xffff_0000_0000)
    /// `127.0.0.1`.
    public static let loopbackIPv4 = IPAddress(high: 0, low: 0xffff_7f00_0001)

    public init(high: UInt64, low: UInt64) {
        self.high = high
        self.low = low
    }

    /// 16 bytes (IPv6 or IPv4-mapped) or 4 bytes (IPv4); nil for any other length.
    public init?(bytes: some Collection<UInt8>) {
        switch bytes.count {
        case 16:
            var h: UInt64 = 0, l: UInt64 = 0
            for (i, b) in bytes.enumerated() {
                if i < 8 { h = h << 8 | UInt64(b) } else { l = l << 8 | UInt64(b) }
            }
            self.init(high: h, low: l)
        case 4:
            var v: UInt64 = 0
            for b in bytes { v = v << 8 | UInt64(b) }
            self.init(high: 0, low: 0xffff_0000_0000 | v)
        default: return nil
        }
    }

    /// Exactly 16 bytes, network order.
    public var bytes: [UInt8] {
        var out = [UInt8](repeating: 0, count: 16)
        for i in 0..<8 {
            out[i] = UInt8(truncatingIfNeeded: high >> (56 - 8 * UInt64(i)))
            out[8 + i] = UInt8(truncatingIfNeeded: low >> (56 - 8 * UInt64(i)))
        }
        return out
    }

    /// Parses dotted-quad IPv4 or textual IPv6 (no zone, no brackets).
    public init?(_ input: some StringProtocol) {
        let text = String(input)
        guard text.utf8.count <= 64, !text.contains("%") else { return nil }
        var v4 = in_addr()
        if inet_pton(AF_INET, text, &v4) == 1 {
            let raw = withUnsafeBytes(of: &v4) { Array($0) }
            self.init(bytes: raw)
            return
        }
        var v6 = in6_addr()
        if inet_pton(AF_INET6, text, &v6) == 1 {
            let raw = withUnsafeBytes(of: &v6) { Array($0) }
            self.init(bytes: raw)
            return
        }
        return nil
    }

    public var isIPv4: Bool { high == 0 && low >> 32 == 0xffff }

    /// The 4 bytes of an IPv4 address, nil for IPv6.
    public var ipv4Bytes: [UInt8]? { isIPv4 ? Array(bytes[12..<16]) : nil }

    /// `::` or `0.0.0.0`.
    public var isUnspecified: Bool { high == 0 && (low == 0 || low == 0xffff_0000_0000) }

    /// Dotted quad for IPv4, RFC 5952 text for IPv6.
    public var description: String {
        if let v4 = ipv4Bytes { return v4.map(String.init).joined(separator: ".") }
        var addr = in6_addr()
        let raw = bytes
        withUnsafeMutableBytes(of: &addr) { $0.copyBytes(from: raw) }
        var buf = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
        guard inet_ntop(AF_INET6, &addr, &buf, socklen_t(buf.count)) != nil else { return Hex.encode(bytes) }
        return String(decoding: buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    public static func < (lhs: IPAddress, rhs: IPAddress) -> Bool { (lhs.high, lhs.low) < (rhs.high, rhs.low) }
}

/// An address block such as `10.1.0.0/16` or `fd00::/64`: the gossip scope.
///
/// IPv4 blocks are held in IPv4-mapped form (prefix + 96), so an IPv4 block never contains
/// a native IPv6 address and vice versa (except `::/0`, which contains everything).
public struct CIDR: Sendable, Hashable, CustomStringConvertible {
    public let network: IPAddress
    /// Prefix length in the 128-bit space.
    public let prefixLength128: Int

    public enum ParseError: Error, Equatable, CustomStringConvertible {
        case badAddress(String)
        case badPrefix(String)
        /// Bits are set past the prefix: a host was written where a network was meant.
        case hostBitsSet(String, network: String)

        public var description: String {
            switch self {
            case .badAddress(let t), .badPrefix(let t): "'\(t)' is not \(CIDR.expectedForm)"
            case .hostBitsSet(let t, let network): "\(t) has host bits set; did you mean \(network)?"
            }
        }
    }

    public static let expectedForm = "a network in CIDR notation, e.g. 10.0.0.0/8"

    /// The one parser of an address block an operator writes (`--allow-peers`, `--site`,
    /// `--gossip-subnet`, `peer.allow_cidrs`): `ADDR/LEN`, or a bare address for one host
    /// (/32 or /128). An address with bits set past the prefix is refused, not masked: it is
    /// a host where a network was meant.
    public init(parsing text: String) throws(ParseError) {
        let parts = text.split(separator: "/", maxSplits: 1, omittingEmptySubsequences: false)
        guard let addr = IPAddress(String(parts[0])) else { throw .badAddress(text) }
        let maxLen = addr.isIPv4 ? 32 : 128
        var len = maxLen
        if parts.count == 2 {
            guard parts[1].utf8.count <= 3, parts[1].allSatisfy(\.isASCII), let n = Int(parts[1]), (0...maxLen).contains(n) else {
                throw .badPrefix(text)
            }
            len = n
        }
        self.init(network: addr, prefixLength: len)
        guard network == addr else { throw .hostBitsSet(text, network: description) }
    }

    /// Parses like `init(parsing:)`, nil on error (for option validation).
    public init?(_ text: String) {
        guard let c = try? CIDR(parsing: text) else { return nil }
        self = c
    }

    /// `prefixLength` counts in the address's own family (0...32 for IPv4); it is clamped.
    public init(network: IPAddress, prefixLength: Int) {
        let len128 = network.isIPv4 ? 96 + min(max(prefixLength, 0), 32) : min(max(prefixLength, 0), 128)
        prefixLength128 = len128
        self.network = CIDR.mask(network, len128)
    }

    public func contains(_ address: IPAddress) -> Bool {
        CIDR.mask(address, prefixLength128) == network
    }

    /// The prefix in the address's own family, as written.
    public var prefixLength: Int { network.isIPv4 ? prefixLength128 - 96 : prefixLength128 }

    public var isIPv4: Bool { network.isIPv4 }

    /// The highest address of an IPv4 block (its directed-broadcast address); nil for IPv6.
    public var ipv4Broadcast: IPAddress? {
        guard isIPv4 else { return nil }
        let m = CIDR.mask(IPAddress(high: .max, low: .max), prefixLength128)
        return IPAddress(high: network.high | ~m.high, low: network.low | ~m.low)
    }

    public var description: String { "\(network)/\(prefixLength)" }

    /// Keeps the first `len` bits (0...128) of `a`.
    private static func mask(_ a: IPAddress, _ len: Int) -> IPAddress {
        func keep(_ bits: Int) -> UInt64 { bits <= 0 ? 0 : bits >= 64 ? .max : ~(UInt64.max >> UInt64(bits)) }
        return IPAddress(high: a.high & keep(len), low: a.low & keep(len - 64))
    }
}

/// An IP address and UDP/TCP port.
public struct IPEndpoint: Sendable, Hashable, CustomStringConvertible {
    public var ip: IPAddress
    public var port: UInt16

    public init(ip: IPAddress, port: UInt16) {
        self.ip = ip
        self.port = port
    }

    /// The one parser of an address and port an operator writes (`--peer`, `--metrics-listen`,
    /// `tracker.listen`, `--gossip-seed`): `IP:PORT` or `[IPv6]:PORT`, the IP a literal and the
    /// port 1-65535 (or 0 with `portZero`, for a listener that takes any free port); with
    /// `defaultPort`, a bare `IP`, `[IPv6]` or IPv6 literal too.
    public init?(parsing text: some StringProtocol, defaultPort: UInt16? = nil, portZero: Bool = false) {
        let text = String(text)
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]"),
                  let ip = IPAddress(String(text[text.index(after: text.startIndex)..<close])), !ip.isIPv4 else { return nil }
            let rest = text[text.index(after: close)...]
            if rest.isEmpty, let defaultPort { self.init(ip: ip, port: defaultPort); return }
            guard rest.hasPrefix(":"), let p = Self.port(rest.dropFirst(), zero: portZero) else { return nil }
            self.init(ip: ip, port: p)
            return
        }
        if let defaultPort, let ip = IPAddress(text) { self.init(ip: ip, port: defaultPort); return }
        let parts = text.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 2, let ip = IPAddress(String(parts[0])), ip.isIPv4, let p = Self.port(parts[1], zero: portZero) else { return nil }
        self.init(ip: ip, port: p)
    }

    public static let expectedForm = "IP:PORT, e.g. 10.0.0.1:6969 or [fd00::1]:6969"

    private static func port(_ text: Substring, zero: Bool) -> UInt16? {
        guard (1...5).contains(text.utf8.count), text.allSatisfy({ $0.isASCII && $0.isNumber }), let p = UInt16(text), p != 0 || zero else { return nil }
        return p
    }

    /// The IP as text, for sockets and logs.
    public var host: String { ip.description }

    public var description: String { ip.isIPv4 ? "\(ip):\(port)" : "[\(ip)]:\(port)" }
}
