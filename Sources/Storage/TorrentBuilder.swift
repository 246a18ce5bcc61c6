#if canImport(Glibc)
import Glibc
#endif
import Bencode
import BitTorrent
import Synchronization

/// Makes v1 .torrent files from a file or a folder, byte-compatible with `mktorrent`
/// (same info dictionary, hence the same info-hash, for the same name and piece size).
public struct TorrentBuilder: Sendable {
    public var trackers: [String] = []
    public var pieceLength: Int?
    public var name: String?
    public var isPrivate = false
    public var comment: String?
    public var createdBy = "starling"
    /// Seconds since 1970; nil leaves `creation date` out (reproducible output).
    public var creationDate: Int64?

    public init() {}

    /// Bounds of the automatic piece length, and the most pieces it aims at.
    public static let automaticPieceLengths = (smallest: 128 * 1024, largest: 16 * 1024 * 1024)
    public static let automaticPieceCount = 2000

    /// Smallest power of two from 128 KiB to 16 MiB that gives at most 2000 pieces
    /// (16 MiB for anything larger than 2000 x 16 MiB). Smaller pieces pass from host to host
    /// sooner: 128 KiB against 256 KiB made swarmlab's sites and 40-host shapes faster and,
    /// with cubic on the peer connections, left the 16-host 100mbit shape level
    /// (docs/benchmarks.md, "Congestion control and the piece size").
    public static func automaticPieceLength(totalLength: Int64) -> Int {
        var p = automaticPieceLengths.smallest
        // Count pieces rounding up: the short last piece is a piece too.
        while p < automaticPieceLengths.largest, (totalLength + Int64(p) - 1) / Int64(p) > Int64(automaticPieceCount) { p *= 2 }
        return p
    }

    /// True for a power of two of at least 16 KiB (and at most 1 GiB).
    public static func isValidPieceLength(_ n: Int64) -> Bool {
        n >= 16 * 1024 && n <= 1 << 30 && n & (n - 1) == 0
    }

    /// Builds the torrent's bytes for `path` (a file or a folder).
    public func build(path: String, progress: (@Sendable (Int, Int) -> Void)? = nil) throws -> (bytes: [UInt8], metainfo: Metainfo) {
        let isDir = FilePaths.isDirectory(path)
        guard isDir || FilePaths.exists(path) else { throw StorageError("\(path): no such file or folder") }
        let torrentName = name ?? FilePaths.lastComponent(path)
        guard !torrentName.isEmpty, torrentName != ".", torrentName != "..", !torrentName.contains("/") else {
            throw StorageError("'\(torrentName)' is not a usable torrent name: pass --name")
        }
        var files: [TorrentFile]
        var paths: [String]
        if isDir {
            let walked = try DirectoryWalker.files(under: path)
            guard !walked.isEmpty else { throw StorageError("\(path): the folder holds no files") }
            files = walked.map { TorrentFile(path: $0.relative, length: $0.size) }
            paths = walked.map(\.fullPath)
        } else {
            // Only regular files: opening a FIFO would block forever, a device has no length.
            guard FilePaths.isRegularFile(path) else { throw StorageError("\(path): not a regular file or a folder") }
            let fd = try FileDescriptor(path: path, flags: O_RDONLY)
            files = [TorrentFile(path: [torrentName], length: try fd.size())]
            paths = [path]
        }
        let total = files.reduce(0) { $0 + $1.length }
        // libtorrent refuses a torrent of no bytes ("invalid length of torrent"); so would every peer.
        guard total > 0 else { throw StorageError("\(path): nothing to share, it holds no data (0 bytes)") }
        let pl = pieceLength ?? Self.automaticPieceLength(totalLength: total)
        guard Self.isValidPieceLength(Int64(pl)) else {
            throw StorageError("piece size \(pl) is not a power of two between 16 KiB and 1 GiB")
        }
        let reader = try PieceReader(paths: paths, files: files, pieceLength: pl)
        let count = reader.pieces.pieceCount
        let done = Counter()
        var onPiece: (@Sendable (Int) -> Void)?
        if let report = progress {
            onPiece = { _ in report(done.increment(), count) }
        }
        let hashes = try reader.hashAllPieces(progress: onPiece)

        var info: [(String, BencodeValue)] = [
            ("name", .string(torrentName)),
            ("piece length", .integer(Int64(pl))),
            ("pieces", .bytes(hashes)),
        ]
        if isDir {
            info.append(("files", .list(files.map { f in
                .dict([("length", .integer(f.length)), ("path", .list(f.path.map { .string($0) }))])
            })))
        } else {
            info.append(("length", .integer(total)))
        }
        if isPrivate { info.append(("private", .integer(1))) }

        var top: [(String, BencodeValue)] = [("info", .dict(info)), ("created by", .string(createdBy))]
        if let first = trackers.first { top.append(("announce", .string(first))) }
        if trackers.count > 1 { top.append(("announce-list", .list(trackers.map { .list([.string($0)]) }))) }
        if let c = comment { top.append(("comment", .string(c))) }
        if let d = creationDate { top.append(("creation date", .integer(d))) }
        let bytes = BencodeValue.dict(top).encoded()
        do {
            return (bytes, try Metainfo(bytes: bytes))
        } catch {
            throw StorageError("internal error: the torrent just built does not parse: \(error)")
        }
    }
}

/// Pieces hashed so far, counted from the hashing threads.
private final class Counter: Sendable {
    private let value = Atomic(0)
    /// The count after this one.
    func increment() -> Int { value.add(1, ordering: .relaxed).newValue }
}
