import Bencode
import BitTorrent
import Storage
import Swarm
import Values
#if canImport(Glibc)
import Glibc
#endif

/// The `--state` file: a registry snapshot in bencode.
///
/// `d 7:version i1e 6:swarms l d 10:downloaded i..e 9:info_hash 20:.. 5:peers l d
/// 1:a <4|16 bytes ip> 1:i <20-byte peer id> 1:l <left> 1:p <port> 1:s <0|1 seeder> 1:t <last seen> e ... e e ... e e`
/// (`l` is optional: files written before it existed read as 0 left).
/// Binary and compact (about 60 bytes a peer), and read back with the strict decoder.
public enum TrackerStateFile {
    public static let version: Int64 = 1
    /// Largest state file read back (about a million peers).
    public static let maxSize = 256 << 20

    public static func encode(_ snapshot: TrackerSnapshot) -> [UInt8] {
        let swarms: [BencodeValue] = snapshot.swarms.map { s in
            .dict([
                ("info_hash", .bytes(s.infoHash.bytes)),
                ("downloaded", .integer(Int64(s.downloaded))),
                ("peers", .list(s.peers.compactMap { p in
                    guard let ip = p.peer.ip, let id = p.peer.peerID else { return nil }
                    return .dict([
                        ("a", .bytes(ip.bytes)), ("i", .bytes(id)), ("l", .integer(p.left)), ("p", .integer(Int64(p.peer.port))),
                        ("s", .integer(p.isSeeder ? 1 : 0)), ("t", .integer(p.lastSeen)),
                    ])
                })),
            ])
        }
        return BencodeValue.dict([("version", .integer(version)), ("swarms", .list(swarms))]).encoded()
    }

    public static func decode(_ bytes: [UInt8]) throws -> TrackerSnapshot {
        let limits = BencodeLimits(maxDepth: 8, maxStringLength: 1 << 16, maxContainerCount: 1 << 24, maxInputLength: maxSize)
        let root = try Bencode.decode(bytes, limits: limits)
        guard root["version"]?.integerValue == version else {
            throw StorageError("tracker state: unknown or missing version")
        }
        guard let list = root["swarms"]?.listValue else { throw StorageError("tracker state: missing 'swarms'") }
        var swarms: [TrackerSnapshot.Swarm] = []
        for s in list {
            guard let hb = s["info_hash"]?.bytesValue, let hash = InfoHash(bytes: hb),
                  let downloaded = s["downloaded"]?.integerValue, let peers = s["peers"]?.listValue else {
                throw StorageError("tracker state: a swarm lacks info_hash, downloaded or peers")
            }
            var out: [TrackerSnapshot.Peer] = []
            out.reserveCapacity(peers.count)
            for p in peers {
                guard let ab = p["a"]?.bytesValue, let ip = IPAddress(bytes: ab),
                      let id = p["i"]?.bytesValue, id.count == 20,
                      let port = p["p"]?.integerValue.flatMap({ UInt16(exactly: $0) }),
                      let seeder = p["s"]?.integerValue, let t = p["t"]?.integerValue,
                      (p["l"]?.integerValue ?? 0) >= 0 else {
                    throw StorageError("tracker state: a peer of \(hash.shortHex) is malformed")
                }
                out.append(TrackerSnapshot.Peer(peer: TrackerPeer(ip: ip, port: port, peerID: id), isSeeder: seeder == 1, lastSeen: t,
                                                left: p["l"]?.integerValue ?? 0))
            }
            swarms.append(TrackerSnapshot.Swarm(infoHash: hash, downloaded: Int(clamping: downloaded), peers: out))
        }
        return TrackerSnapshot(swarms: swarms)
    }

    /// Writes atomically (temporary file, fsync, rename): a crash leaves the old state or the new.
    public static func save(_ snapshot: TrackerSnapshot, to path: String) throws {
        try FilePaths.writeAtomically(encode(snapshot), to: path)
    }

    /// Nil when the file does not exist yet (first start).
    public static func load(from path: String) throws -> TrackerSnapshot? {
        guard FilePaths.exists(path) else { return nil }
        return try decode(FilePaths.readAll(path, limit: maxSize))
    }
}

/// The info-hashes of the .torrent files in a folder: the tracker's allow-list.
public struct AllowList: Sendable {
    public var infoHashes: Set<InfoHash>
    /// Files that could not be read or parsed, with why (logged, not fatal).
    public var problems: [String]
    /// Names, sizes and modification times of the files read: a change means re-read.
    public var signature: [String]

    /// Reads every `*.torrent` under `folder`; entries that cannot be read are problems, not failures.
    public static func load(folder: String) throws -> AllowList {
        var problems: [String] = []
        let files = try DirectoryWalker.files(under: folder, problems: &problems).filter { $0.fullPath.hasSuffix(".torrent") }
        var hashes = Set<InfoHash>()
        for f in files {
            do {
                let m = try Metainfo(bytes: FilePaths.readAll(f.fullPath, limit: Metainfo.maxFileSize))
                hashes.insert(m.infoHash)
            } catch {
                problems.append("\(f.fullPath): \(error)")
            }
        }
        return AllowList(infoHashes: hashes, problems: problems, signature: signature(of: files))
    }

    /// A cheap fingerprint of the folder (a stat per file, no reads), polled to notice changes.
    public static func currentSignature(folder: String) throws -> [String] {
        var ignored: [String] = []
        return signature(of: try DirectoryWalker.files(under: folder, problems: &ignored).filter { $0.fullPath.hasSuffix(".torrent") })
    }

    static func signature(of files: [WalkedFile]) -> [String] {
        files.map { "\($0.fullPath)|\($0.size)|\($0.modificationTime)" }
    }
}


/// xoshiro256** seeded from the system: `SystemRandomNumberGenerator` makes a system call
/// per draw, too slow for tens of thousands of samples a second. Not for secrets.
public struct TrackerRandom: RandomNumberGenerator, Sendable {
    private var s: (UInt64, UInt64, UInt64, UInt64)

    public init(seed: UInt64? = nil) {
        var x = seed ?? UInt64.random(in: .min ... .max)
        func splitmix() -> UInt64 {
            x &+= 0x9E37_79B9_7F4A_7C15
            var z = x
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
        s = (splitmix(), splitmix(), splitmix(), splitmix())
    }

    public mutating func next() -> UInt64 {
        let result = ((s.1 &* 5) << 7 | (s.1 &* 5) >> 57) &* 9
        let t = s.1 << 17
        s.2 ^= s.0
        s.3 ^= s.1
        s.1 ^= s.2
        s.0 ^= s.3
        s.2 ^= t
        s.3 = s.3 << 45 | s.3 >> 19
        return result
    }
}

extension TrackerService {
    /// Unix time in seconds: the registry's clock (wall time, so persisted `lastSeen` survives restarts).
    public static func unixNow() -> Int64 { Int64(time(nil)) }
}
