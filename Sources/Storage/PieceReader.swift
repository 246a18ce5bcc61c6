#if canImport(Glibc)
import Glibc
#endif
import BitTorrent
import Dispatch

/// Reads pieces of a torrent's data from files on disk with positional reads.
public final class PieceReader: Sendable {
    public let layout: FileLayout
    public let pieces: PieceLayout
    let handles: [FileDescriptor?]

    /// `paths[i]` is the on-disk path of `layout.files[i]`. Zero-length files need not exist.
    public init(paths: [String], files: [TorrentFile], pieceLength: Int) throws {
        layout = FileLayout(files: files)
        pieces = PieceLayout(totalLength: layout.totalLength, pieceLength: pieceLength)
        var hs: [FileDescriptor?] = []
        for (i, p) in paths.enumerated() {
            if files[i].length == 0 { hs.append(nil); continue }
            let fd = try FileDescriptor(path: p, flags: O_RDONLY)
            let size = try fd.size()
            guard size >= files[i].length else {
                throw StorageError("\(p) is \(size) bytes, expected \(files[i].length)")
            }
            hs.append(fd)
        }
        handles = hs
    }

    init(handles: [FileDescriptor?], layout: FileLayout, pieces: PieceLayout) throws {
        self.handles = handles
        self.layout = layout
        self.pieces = pieces
    }

    /// Reads `buffer.count` bytes at torrent offset `offset`.
    public func read(offset: Int64, into buffer: UnsafeMutableRawBufferPointer) throws {
        try layout.read(offset: offset, into: buffer, handles: handles)
    }

    /// SHA-1 of every piece, hashed on `workers` threads with one piece-sized buffer each,
    /// so memory stays flat whatever the file size. Returns the concatenated digests.
    public func hashAllPieces(workers: Int = System.activeProcessorCount,
                              progress: (@Sendable (Int) -> Void)? = nil) throws -> [UInt8] {
        let count = pieces.pieceCount
        let out = UnsafeMutableBufferPointer<UInt8>.allocate(capacity: max(count * 20, 1))
        defer { out.deallocate() }
        let failure = LockedBox<StorageError?>(nil)
        let w = max(1, min(workers, count))
        let outBase = out.baseAddress!
        let sendableOut = UnsafeSendable(outBase)
        DispatchQueue.concurrentPerform(iterations: w) { worker in
            let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: pieces.pieceLength, alignment: 4096)
            defer { buffer.deallocate() }
            var hasher = SHA1Hasher()
            var index = worker
            while index < count, failure.value == nil {
                let len = pieces.length(ofPiece: index)
                let slice = UnsafeMutableRawBufferPointer(rebasing: buffer[0..<len])
                do {
                    try read(offset: pieces.offset(ofPiece: index), into: slice)
                } catch {
                    failure.value = error as? StorageError ?? StorageError("\(error)")
                    return
                }
                hasher.update(UnsafeRawBufferPointer(slice))
                let d = hasher.finalize()
                for (k, b) in d.bytes.enumerated() { sendableOut.value[index * 20 + k] = b }
                progress?(index)
                index += w
            }
        }
        if let e = failure.value { throw e }
        return Array(out[0..<(count * 20)])
    }
}

/// Number of CPUs the process may use.
public enum System {
    public static var activeProcessorCount: Int { max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN)))) }
}

/// A value guarded by a lock, for the few places threads share state.
public final class LockedBox<T>: @unchecked Sendable {
    private var stored: T
    private var mutex = pthread_mutex_t()

    public init(_ value: T) {
        stored = value
        pthread_mutex_init(&mutex, nil)
    }

    deinit { pthread_mutex_destroy(&mutex) }

    public var value: T {
        get { withLock { $0 } }
        set { withLock { $0 = newValue } }
    }

    @discardableResult
    public func withLock<R>(_ body: (inout T) throws -> R) rethrows -> R {
        pthread_mutex_lock(&mutex)
        defer { pthread_mutex_unlock(&mutex) }
        return try body(&stored)
    }
}

/// A pointer handed to worker threads that write disjoint ranges of it.
struct UnsafeSendable<T>: @unchecked Sendable {
    let value: T
    init(_ value: T) { self.value = value }
}
