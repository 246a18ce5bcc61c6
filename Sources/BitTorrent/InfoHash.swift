import Values
/// The v1 info-hash: SHA-1 of the bencoded `info` dictionary exactly as found in the file.
public struct InfoHash: Sendable, Hashable, CustomStringConvertible {
    public let digest: SHA1Digest

    public init(_ digest: SHA1Digest) { self.digest = digest }

    public init?(bytes: some Collection<UInt8>) {
        guard let d = SHA1Digest(bytes) else { return nil }
        digest = d
    }

    public init?(hex: String) {
        guard let bytes = Hex.decode(hex), let d = SHA1Digest(bytes) else { return nil }
        digest = d
    }

    public var bytes: [UInt8] { digest.bytes }
    public var hex: String { digest.hex }
    /// A short, bounded label for metrics and logs.
    public var shortHex: String { String(hex.prefix(8)) }
    public var description: String { hex }
}
