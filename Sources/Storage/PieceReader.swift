import BitTorrent
import Dispatch
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

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

    /// SHA-1 of every piece: one reader thread reads the pieces front to back into a small
    /// ring of piece-sized buffers while `workers` threads hash them. Memory stays flat
    /// (`workers + 2` buffers) whatever the file size. Returns the concatenated digests.
    ///
    /// Why this shape: reading sequentially on one thread lets the kernel's read-ahead
    /// (POSIX_FADV_SEQUENTIAL) make large disk reads, and overlaps disk waits with hashing.
    /// The first version gave each of two threads a fixed half of the pieces (read, then
    /// hash): on a busy 2-core host it ran 20-40 % behind mktorrent, which uses this same
    /// reader + hashers layout, because a descheduled thread left the other idle at the end.
    public func hashAllPieces(workers: Int = System.activeProcessorCount,
                              progress: (@Sendable (Int) -> Void)? = nil) throws -> [UInt8] {
        let count = pieces.pieceCount
        guard count > 0 else { return [] }
        let w = max(1, min(workers, count))
        let job = HashJob(pieceCount: count, buffers: min(w + 2, count), byteCount: pieces.pieceLength, hashers: w)

        for h in handles { if let h { _ = posix_fadvise(h.fd, 0, 0, Int32(POSIX_FADV_SEQUENTIAL)) } }
        defer { for h in handles { if let h { _ = posix_fadvise(h.fd, 0, 0, Int32(POSIX_FADV_NORMAL)) } } }

        var threads: [pthread_t] = []
        // Hashers: take a filled buffer, hash it, give the buffer back.
        for _ in 0..<w {
            threads.append(startThread {
                var hasher = SHA1Hasher()
                while let (index, buffer) = job.takeFilled() {
                    let len = self.pieces.length(ofPiece: index)
                    buffer.withUnsafeBytes { hasher.update(UnsafeRawBufferPointer(rebasing: $0[0..<len])) }
                    job.record(hasher.finalize(), of: index)
                    job.giveBack(buffer)
                    progress?(index)
                }
            })
        }
        // Reader: this thread, front to back.
        for index in 0..<count {
            var buffer = job.takeEmpty()
            let len = pieces.length(ofPiece: index)
            do {
                try buffer.withUnsafeMutableBytes {
                    try read(offset: pieces.offset(ofPiece: index), into: UnsafeMutableRawBufferPointer(rebasing: $0[0..<len]))
                }
            } catch {
                job.fail(error as? StorageError ?? StorageError("\(error)"))
                job.giveBack(buffer)
                break
            }
            job.putFilled(index: index, buffer)
        }
        job.close()
        for t in threads { pthread_join(t, nil) }
        return try job.digests()
    }
}

/// One `hashAllPieces`: piece buffers passed from the reader to the hashers (empty ones in
/// `empty`, filled ones in `filled`, FIFO; each side waits on a semaphore that counts what
/// the other side handed over), the digests as they are made, and the first failure. A
/// buffer is an array moved in and out, so only one thread holds it at a time.
final class HashJob: Sendable {
    private struct State {
        var empty: [[UInt8]]
        var filled: [(Int, [UInt8])] = []
        var filledHead = 0
        var digests: [UInt8]
        var failure: StorageError?
    }

    private let state: Mutex<State>
    private let emptyCount: DispatchSemaphore
    private let filledCount = DispatchSemaphore(value: 0)
    private let hashers: Int

    init(pieceCount: Int, buffers: Int, byteCount: Int, hashers: Int) {
        let all = (0..<buffers).map { _ in [UInt8](repeating: 0, count: byteCount) }
        state = Mutex(State(empty: all, digests: [UInt8](repeating: 0, count: pieceCount * 20)))
        emptyCount = DispatchSemaphore(value: buffers)
        self.hashers = hashers
    }

    /// Blocks until an empty buffer is free.
    func takeEmpty() -> [UInt8] {
        emptyCount.wait()
        return state.withLock { $0.empty.removeLast() }
    }

    func giveBack(_ buffer: [UInt8]) {
        state.withLock { $0.empty.append(buffer) }
        emptyCount.signal()
    }

    func putFilled(index: Int, _ buffer: [UInt8]) {
        state.withLock { $0.filled.append((index, buffer)) }
        filledCount.signal()
    }

    /// Blocks until a filled buffer is ready; nil once the job is closed and drained.
    func takeFilled() -> (Int, [UInt8])? {
        filledCount.wait()
        return state.withLock { s in
            guard s.filledHead < s.filled.count else { return nil }
            let item = s.filled[s.filledHead]
            s.filledHead += 1
            if s.filledHead == s.filled.count {
                s.filled.removeAll(keepingCapacity: true)
                s.filledHead = 0
            }
            return item
        }
    }

    /// No more filled buffers will come: hashers finish what is queued, then stop (each
    /// wakes once more and finds nothing).
    func close() {
        for _ in 0..<hashers { filledCount.signal() }
    }

    func record(_ digest: SHA1Digest, of index: Int) {
        state.withLock { s in
            for (i, b) in digest.bytes.enumerated() { s.digests[index * 20 + i] = b }
        }
    }

    func fail(_ error: StorageError) {
        state.withLock { s in if s.failure == nil { s.failure = error } }
    }

    /// The concatenated digests, or the failure.
    func digests() throws -> [UInt8] {
        try state.withLock { s in
            if let e = s.failure { throw e }
            return s.digests
        }
    }
}

/// Starts a joinable POSIX thread running `body`.
func startThread(_ body: @escaping @Sendable () -> Void) -> pthread_t {
    final class Box { let body: @Sendable () -> Void; init(_ b: @escaping @Sendable () -> Void) { body = b } }
    let context = Unmanaged.passRetained(Box(body)).toOpaque()
    var thread = pthread_t()
    let rc = pthread_create(&thread, nil, { raw in
        let box = Unmanaged<Box>.fromOpaque(raw!).takeRetainedValue()
        box.body()
        return nil
    }, context)
    // pthread_create fails only when the process is out of threads or memory.
    precondition(rc == 0, "pthread_create failed: \(rc)")
    return thread
}

/// Number of CPUs the process may use.
public enum System {
    public static var activeProcessorCount: Int { max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN)))) }
}
