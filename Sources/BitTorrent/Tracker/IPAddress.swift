#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A binary IPv4 or IPv6 address, as carried in compact peer lists (BEP 23, BEP 7).
///
/// Kept binary so the tracker's hot path copies bytes instead of formatting text.
/// IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`, what a dual-stack socket reports)
/// are normalised to IPv4 so a peer lands in `peers`, not `peers6`.
public enum IPAddress: Sendable, Hashable, CustomStringConvertible {
    case v4(UInt32)
    case v6(UInt64, UInt64)

    /// Parses dotted-quad IPv4 or RFC 4291 IPv6 text (no zone, no brackets).
    public init?(_ text: some StringProtocol) {
        var bytes = [UInt8](repeating: 0, count: 16)
        let s = String(text)
        // inet_pton reads a C string: an embedded NUL would silently cut the text short.
        if s.utf8.count > 45 || s.utf8.contains(0) { return nil }
        let ok4 = s.withCString { p in bytes.withUnsafeMutableBytes { inet_pton(AF_INET, p, $0.baseAddress) } }
        if ok4 == 1 {
            self.init(bytes: bytes[0..<4])
            return
        }
        let ok6 = s.withCString { p in bytes.withUnsafeMutableBytes { inet_pton(AF_INET6, p, $0.baseAddress) } }
        guard ok6 == 1 else { return nil }
        self.init(bytes: bytes[0..<16])
    }

    /// From 4 or 16 network-order bytes.
    public init?(bytes: some Collection<UInt8>) {
        switch bytes.count {
        case 4:
            self = .v4(bytes.reduce(0) { $0 << 8 | UInt32($1) })
        case 16:
            var hi: UInt64 = 0, lo: UInt64 = 0
            for (i, b) in bytes.enumerated() {
                if i < 8 { hi = hi << 8 | UInt64(b) } else { lo = lo << 8 | UInt64(b) }
            }
            if hi == 0, lo >> 32 == 0xffff {
                self = .v4(UInt32(truncatingIfNeeded: lo))
            } else {
                self = .v6(hi, lo)
            }
        default:
            return nil
        }
    }

    public var isIPv4: Bool { if case .v4 = self { return true } else { return false } }

    /// Network-order bytes: 4 for IPv4, 16 for IPv6.
    public var bytes: [UInt8] {
        var out: [UInt8] = []
        append(to: &out)
        return out
    }

    /// Appends the network-order bytes (no allocation beyond `out`'s growth).
    public func append(to out: inout [UInt8]) {
        switch self {
        case .v4(let a):
            out.append(UInt8(truncatingIfNeeded: a >> 24)); out.append(UInt8(truncatingIfNeeded: a >> 16))
            out.append(UInt8(truncatingIfNeeded: a >> 8)); out.append(UInt8(truncatingIfNeeded: a))
        case .v6(let hi, let lo):
            for shift in stride(from: 56, through: 0, by: -8) { out.append(UInt8(truncatingIfNeeded: hi >> UInt64(shift))) }
            for shift in stride(from: 56, through: 0, by: -8) { out.append(UInt8(truncatingIfNeeded: lo >> UInt64(shift))) }
        }
    }

    /// Canonical text (`10.0.0.1`, `2001:db8::1`).
    public var description: String {
        let raw = bytes
        let family = isIPv4 ? AF_INET : AF_INET6
        var buf = [CChar](repeating: 0, count: 64)
        let ok = raw.withUnsafeBytes { src in
            buf.withUnsafeMutableBufferPointer { dst in
                inet_ntop(family, src.baseAddress, dst.baseAddress, socklen_t(dst.count)) != nil
            }
        }
        guard ok else { return "?" }
        return buf.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
    }
}

/// An IPv4 or IPv6 network in CIDR notation (`10.0.0.0/8`, `fd00::/8`), for trusted-proxy checks.
public struct IPNetwork: Sendable, Hashable, CustomStringConvertible {
    public let address: IPAddress
    public let prefixLength: Int

    /// Parses `ADDR/LEN`, or a bare address (a single host).
    public init?(_ text: String) {
        let parts = text.split(separator: "/", maxSplits: 1, omittingEmptySubsequences: false)
        guard let first = parts.first, let addr = IPAddress(first) else { return nil }
        let maxLen = addr.isIPv4 ? 32 : 128
        var len = maxLen
        if parts.count == 2 {
            guard let n = Int(parts[1]), n >= 0, n <= maxLen else { return nil }
            len = n
        }
        address = addr
        prefixLength = len
    }

    public func contains(_ ip: IPAddress) -> Bool {
        switch (address, ip) {
        case (.v4(let net), .v4(let a)):
            if prefixLength == 0 { return true }
            let mask: UInt32 = ~0 << UInt32(32 - prefixLength)
            return net & mask == a & mask
        case (.v6(let nh, let nl), .v6(let ah, let al)):
            func masked(_ hi: UInt64, _ lo: UInt64) -> (UInt64, UInt64) {
                let hiBits = min(prefixLength, 64), loBits = max(prefixLength - 64, 0)
                let hm: UInt64 = hiBits == 0 ? 0 : ~0 << UInt64(64 - hiBits)
                let lm: UInt64 = loBits == 0 ? 0 : ~0 << UInt64(64 - loBits)
                return (hi & hm, lo & lm)
            }
            return masked(nh, nl) == masked(ah, al)
        default:
            return false
        }
    }

    public var description: String { "\(address)/\(prefixLength)" }
}
