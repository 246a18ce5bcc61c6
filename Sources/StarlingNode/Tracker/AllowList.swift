import Bencode
import BitTorrent
import Storage
import Swarm
import Values
#if canImport(Glibc)
import Glibc
#endif

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
