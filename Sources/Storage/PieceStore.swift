import BitTorrent
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// A torrent's data on disk, piece by piece.
///
/// Seeding reads the finished file or folder in place. Downloading writes into `OUT.part`
/// (a file, or a folder for a multi-file torrent) and renames it to `OUT` only when every
/// piece has been verified, so `OUT` never holds unverified bytes. Existing `.part` data is
/// re-verified on open, so an interrupted download resumes.
///
/// Blocks are read on the event loop and a reader thread while the engine's piece worker
/// writes verified pieces: the handles are opened once in init and pread/pwrite are
/// positional, so they share no state but `isFinal`.
public final class PieceStore: Sendable {
    public enum Mode: Sendable { case seed, download }

    public let metainfo: Metainfo
    public let layout: FileLayout
    public let pieces: PieceLayout
    /// The final path: the file (single-file torrent) or the folder (multi-file).
    public let target: String
    public var isFinal: Bool { final.load(ordering: .acquiring) }
    private let final: Atomic<Bool>
    /// True when the download started from nothing: there is no data to verify.
    public let isFresh: Bool
    private let handles: [FileDescriptor?]

    public var partPath: String { target + ".part" }

    /// Opens the store. For `.download`, an already complete `target` is opened as final.
    public init(metainfo: Metainfo, target: String, mode: Mode) throws {
        self.metainfo = metainfo
        self.target = target
        layout = FileLayout(files: metainfo.files)
        pieces = metainfo.layout
        let partPath = target + ".part"
        switch mode {
        case .seed:
            final = Atomic(true)
            isFresh = false
            handles = try Self.open(root: target, metainfo: metainfo, writable: false)
        case .download:
            if FilePaths.exists(target) && !FilePaths.exists(partPath) {
                // A previous run finished: verify it and seed from it.
                final = Atomic(true)
                isFresh = false
                handles = try Self.open(root: target, metainfo: metainfo, writable: false)
            } else {
                final = Atomic(false)
                isFresh = !FilePaths.exists(partPath)
                try FilePaths.makeDirectories(FilePaths.parent(target))
                handles = try Self.open(root: partPath, metainfo: metainfo, writable: true)
            }
        }
    }

    /// Paths of each file under `root` (the file itself for a single-file torrent).
    static func paths(root: String, metainfo: Metainfo) -> [String] {
        metainfo.isMultiFile ? metainfo.files.map { FilePaths.join(root, $0.path) } : [root]
    }

    private static func open(root: String, metainfo: Metainfo, writable: Bool) throws -> [FileDescriptor?] {
        var out: [FileDescriptor?] = []
        for (i, path) in paths(root: root, metainfo: metainfo).enumerated() {
            let length = metainfo.files[i].length
            if writable {
                try FilePaths.makeDirectories(FilePaths.parent(path))
                let fd = try FileDescriptor(path: path, flags: O_RDWR | O_CREAT)
                if try fd.size() != length { try fd.truncate(to: length) }
                out.append(fd)
            } else {
                if length == 0 && !FilePaths.exists(path) { out.append(nil); continue }
                let fd = try FileDescriptor(path: path, flags: O_RDONLY)
                let size = try fd.size()
                guard size == length else {
                    throw StorageError("\(path) is \(size) bytes but the torrent says \(length)")
                }
                out.append(fd)
            }
        }
        return out
    }

    /// Hashes every piece on disk and returns those that match (resume / seed check).
    public func verifyExisting(progress: (@Sendable (Int) -> Void)? = nil) throws -> Bitfield {
        let reader = try PieceReader(handles: handles, layout: layout, pieces: pieces)
        let hashes = try reader.hashAllPieces(progress: progress)
        var have = Bitfield(count: pieces.pieceCount)
        for i in 0..<pieces.pieceCount where hashes[(i * 20)..<(i * 20 + 20)] == metainfo.pieceHashes[(i * 20)..<(i * 20 + 20)] {
            have.set(i)
        }
        return have
    }

    /// Reads one block (or any span inside a piece).
    public func read(piece: Int, begin: Int, length: Int, into buffer: UnsafeMutableRawBufferPointer) throws {
        precondition(buffer.count == length)
        try layout.read(offset: pieces.offset(ofPiece: piece) + Int64(begin), into: buffer, handles: handles)
    }

    /// `read`, without waiting for the disk: false when the block is not in the page cache.
    public func readIfCached(piece: Int, begin: Int, length: Int, into buffer: UnsafeMutableRawBufferPointer) throws -> Bool {
        precondition(buffer.count == length)
        return try layout.readIfCached(offset: pieces.offset(ofPiece: piece) + Int64(begin), into: buffer, handles: handles)
    }

    /// True when `data` is piece `index` as the torrent describes it.
    public func matches(piece index: Int, data: UnsafeRawBufferPointer) -> Bool {
        data.count == pieces.length(ofPiece: index) && SHA1Hasher.hash(data) == metainfo.pieceHash(index)
    }

    /// Writes a piece that the caller has verified with `matches`.
    public func write(piece index: Int, data: UnsafeRawBufferPointer) throws {
        // A finished store is read-only: an existing OUT that does not verify must never be
        // overwritten in place (nor trap the process).
        guard !isFinal else {
            throw StorageError("cannot write piece \(index): \(target) is already in place and read-only")
        }
        try layout.write(offset: pieces.offset(ofPiece: index), from: data, handles: handles)
    }

    /// Flushes and renames `OUT.part` to `OUT`: call when every piece is verified.
    public func finalize() throws {
        guard !isFinal else { return }
        for h in handles { try h?.sync() }
        if FilePaths.exists(target) {
            throw StorageError("cannot finish: \(target) appeared during the download; the data stays in \(partPath)")
        }
        try FilePaths.rename(partPath, to: target)
        final.store(true, ordering: .releasing)
    }
}
