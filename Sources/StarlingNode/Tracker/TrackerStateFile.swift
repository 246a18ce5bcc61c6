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
