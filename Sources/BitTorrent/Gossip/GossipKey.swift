import COpenSSL
import Values
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The shared secret that authenticates gossip: HMAC-SHA256, full 32-byte tag.
///
/// The full tag is kept (not truncated): the size budget allows it, and it leaves no
/// truncation argument to make. Comparison is constant-time (`CRYPTO_memcmp`).
public struct GossipKey: Sendable, Hashable {
    public static let macSize = 32
    public static let minimumLength = 16
    /// Environment variable read by `load(file:environment:)` when no file is given.
    public static let environmentVariable = "STARLING_GOSSIP_KEY"

    /// The key bytes (never logged).
    public let bytes: [UInt8]

    public enum LoadError: Error, Sendable, Hashable, CustomStringConvertible {
        case unreadable(path: String, errno: Int32)
        case notRegularFile(path: String, kind: String)
        case tooShort(length: Int)
        case tooLong(length: Int)
        case missing

        public var description: String {
            switch self {
            case .unreadable(let p, let e): return "cannot read gossip key file \(p): errno \(e)"
            case .notRegularFile(let p, let kind): return "gossip key file \(p) is not a regular file (it is \(kind))"
            case .tooShort(let n): return "gossip key is \(n) bytes; at least \(GossipKey.minimumLength) are required"
            case .tooLong(let n): return "gossip key is \(n) bytes; at most 4096 are accepted"
            case .missing: return "no gossip key: pass --gossip-key-file, set \(GossipKey.environmentVariable), or --gossip-insecure"
            }
        }
    }

    /// Key bytes with trailing whitespace (space, tab, CR, LF) trimmed; at least 16 bytes remain.
    /// A hex string is used as-is (its ASCII bytes are the key), not hex-decoded.
    public init(bytes raw: some Collection<UInt8>) throws(LoadError) {
        var b = Array(raw)
        while let last = b.last, last == 0x20 || last == 0x09 || last == 0x0a || last == 0x0d { b.removeLast() }
        guard b.count >= Self.minimumLength else { throw .tooShort(length: b.count) }
        guard b.count <= 4096 else { throw .tooLong(length: b.count) }
        bytes = b
    }

    /// The well-known key used with `--gossip-insecure`: messages still carry a MAC (so
    /// corruption is caught and keyed nodes reject them as `bad_mac`) but anyone can forge one.
    public static let insecure = try! GossipKey(bytes: Array("starling-gossip-insecure-v1".utf8))

    /// Reads the key from `file` if given, else from `STARLING_GOSSIP_KEY` in `environment`;
    /// nil when neither is set.
    public static func load(file: String?, environment: [String: String]? = nil) throws(LoadError) -> GossipKey? {
        if let file {
            return try GossipKey(bytes: try readFile(file))
        }
        let env = environment ?? processEnvironment()
        if let value = env[environmentVariable], !value.isEmpty {
            return try GossipKey(bytes: Array(value.utf8))
        }
        return nil
    }

    /// Reads the key file strictly: it refuses anything above 4 KiB rather than slurping a wrong path.
    public static func load(file: String) throws(LoadError) -> GossipKey {
        try GossipKey(bytes: try readFile(file))
    }

    /// HMAC-SHA256 of `data` under this key.
    public func mac(_ data: some Collection<UInt8>) -> [UInt8] {
        let input = Array(data)
        var out = [UInt8](repeating: 0, count: Self.macSize)
        var len: UInt32 = 0
        bytes.withUnsafeBytes { k in
            input.withUnsafeBytes { d in
                out.withUnsafeMutableBufferPointer { o in
                    _ = HMAC(EVP_sha256(), k.baseAddress, Int32(k.count),
                             d.baseAddress?.assumingMemoryBound(to: UInt8.self), d.count, o.baseAddress, &len)
                }
            }
        }
        return out
    }

    /// Constant-time check of `mac` against the MAC of `data`.
    public func verify(mac: some Collection<UInt8>, over data: some Collection<UInt8>) -> Bool {
        let given = Array(mac)
        guard given.count == Self.macSize else { return false }
        let expected = self.mac(data)
        return given.withUnsafeBytes { g in
            expected.withUnsafeBytes { e in CRYPTO_memcmp(g.baseAddress, e.baseAddress, Self.macSize) == 0 }
        }
    }

    private static func readFile(_ path: String) throws(LoadError) -> [UInt8] {
        let out: [UInt8]
        do throws(RegularFile.OpenError) {
            out = try RegularFile.read(path, atMost: 4097)
        } catch {
            switch error {
            case .system(let code): throw .unreadable(path: path, errno: code)
            case .notRegular(let kind): throw .notRegularFile(path: path, kind: kind)
            }
        }
        // Trailing whitespace may still bring a long file under the limit, so trim before judging.
        if out.count > 4096 {
            var t = out
            while let last = t.last, last == 0x20 || last == 0x09 || last == 0x0a || last == 0x0d { t.removeLast() }
            if t.count > 4096 { throw .tooLong(length: out.count) }
        }
        return out
    }

    private static func processEnvironment() -> [String: String] {
        guard let v = getenv(environmentVariable) else { return [:] }
        return [environmentVariable: String(cString: v)]
    }
}

extension GossipKey: CustomStringConvertible {
    /// Redacted, so a key printed by accident in a log leaks nothing.
    public var description: String { "GossipKey(\(bytes.count) bytes)" }
}
