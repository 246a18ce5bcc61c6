import CLinux
import BitTorrent
import Values
#if canImport(Glibc)
import Glibc
#endif

/// An open file descriptor with positional reads and writes that retry on EINTR and short counts.
/// Immutable, so shared by threads: pread and pwrite are positional.
public final class FileDescriptor: Sendable {
    public let fd: Int32
    public let path: String
    /// On tmpfs or ramfs: a read never waits for a disk (and RWF_NOWAIT is refused there).
    private let inMemory: Bool

    public init(path: String, flags: Int32, mode: mode_t = 0o644) throws {
        let fd = open(path, flags | O_CLOEXEC, mode)
        guard fd >= 0 else { throw StorageError.system("cannot open", path: path) }
        self.fd = fd
        self.path = path
        inMemory = Self.isInMemory(fd)
    }

    /// Takes ownership of an already open descriptor.
    public init(adopting fd: Int32, path: String) {
        self.fd = fd
        self.path = path
        inMemory = Self.isInMemory(fd)
    }

    private static func isInMemory(_ fd: Int32) -> Bool { starling_in_memory_fs(fd) != 0 }

    deinit { close(fd) }

    /// Reads exactly `buffer.count` bytes at `offset`, or throws (a short file is an error).
    public func read(into buffer: UnsafeMutableRawBufferPointer, at offset: Int64) throws {
        _ = try read(into: buffer, at: offset, waitForDisk: true)
    }

    /// Reads exactly `buffer.count` bytes at `offset` if the page cache holds them; false when
    /// the read would wait for the disk (or the file system cannot say), so the caller can
    /// read on a thread that may block.
    public func readIfCached(into buffer: UnsafeMutableRawBufferPointer, at offset: Int64) throws -> Bool {
        try read(into: buffer, at: offset, waitForDisk: inMemory)
    }

    private func read(into buffer: UnsafeMutableRawBufferPointer, at offset: Int64, waitForDisk: Bool) throws -> Bool {
        var done = 0
        while done < buffer.count {
            let at = buffer.baseAddress! + done, count = buffer.count - done, position = off_t(offset) + off_t(done)
            let n = waitForDisk ? pread(fd, at, count, position) : starling_pread_nowait(fd, at, count, position)
            if n < 0 {
                if errno == EINTR { continue }
                if !waitForDisk, errno == EAGAIN || errno == EOPNOTSUPP || errno == ENOSYS || errno == EINVAL { return false }
                throw StorageError.system("cannot read", path: path)
            }
            if n == 0 { throw StorageError("cannot read \(path): file is shorter than expected") }
            done += n
        }
        return true
    }

    public func write(_ buffer: UnsafeRawBufferPointer, at offset: Int64) throws {
        var done = 0
        while done < buffer.count {
            let n = pwrite(fd, buffer.baseAddress! + done, buffer.count - done, off_t(offset) + off_t(done))
            if n < 0 {
                if errno == EINTR { continue }
                throw StorageError.system("cannot write", path: path)
            }
            done += n
        }
    }

    public func size() throws -> Int64 {
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw StorageError.system("cannot stat", path: path) }
        return Int64(st.st_size)
    }

    public func truncate(to length: Int64) throws {
        guard ftruncate(fd, off_t(length)) == 0 else { throw StorageError.system("cannot resize", path: path) }
    }

    public func sync() throws {
        guard fsync(fd) == 0 else { throw StorageError.system("cannot flush", path: path) }
    }
}

/// Small path helpers over POSIX calls.
public enum FilePaths {
    public static func join(_ base: String, _ components: [String]) -> String {
        ([base] + components).joined(separator: "/")
    }

    public static func parent(_ path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "." }
        return slash == path.startIndex ? "/" : String(path[..<slash])
    }

    public static func lastComponent(_ path: String) -> String {
        var p = path
        while p.count > 1, p.hasSuffix("/") { p.removeLast() }
        guard let slash = p.lastIndex(of: "/") else { return p }
        return String(p[p.index(after: slash)...])
    }

    /// The absolute path with symlinks resolved, or nil when it does not exist.
    public static func realPath(_ path: String) -> String? {
        guard let p = Glibc.realpath(path, nil) else { return nil }
        defer { free(p) }
        return String(cString: p)
    }

    /// Where a write to `path` lands: its real path when it exists (symlinks followed), else
    /// its folder's real path and its name; nil when the folder does not exist either.
    public static func resolvedTarget(_ path: String) -> String? {
        if let real = realPath(path) { return real }
        guard let folder = realPath(parent(path)) else { return nil }
        return folder == "/" ? "/" + lastComponent(path) : folder + "/" + lastComponent(path)
    }

    /// True when real path `path` is `root` itself or lies under it.
    public static func isSameOrInside(_ path: String, _ root: String) -> Bool {
        path == root || path.hasPrefix(root == "/" ? "/" : root + "/")
    }

    public static func exists(_ path: String) -> Bool {
        var st = stat()
        return stat(path, &st) == 0
    }

    /// True for a regular file (after following symlinks).
    public static func isRegularFile(_ path: String) -> Bool {
        var st = stat()
        return stat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFREG
    }

    public static func isDirectory(_ path: String) -> Bool {
        var st = stat()
        return stat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFDIR
    }

    /// `mkdir -p`.
    public static func makeDirectories(_ path: String) throws {
        if path.isEmpty || isDirectory(path) { return }
        let up = parent(path)
        if up != path { try makeDirectories(up) }
        if mkdir(path, 0o755) != 0, errno != EEXIST { throw StorageError.system("cannot create folder", path: path) }
    }

    public static func rename(_ from: String, to: String) throws {
        guard Glibc.rename(from, to) == 0 else { throw StorageError.system("cannot rename to \(to):", path: from) }
    }

    public static func remove(_ path: String) {
        unlink(path)
    }

    /// Writes `bytes` to `path` through a temporary file and rename, so readers never see a partial file.
    public static func writeAtomically(_ bytes: [UInt8], to path: String) throws {
        let tmp = path + ".tmp-\(getpid())"
        // A leftover of that name (even a symlink to something precious) is replaced, never written through.
        unlink(tmp)
        do {
            let f = try FileDescriptor(path: tmp, flags: O_WRONLY | O_CREAT | O_EXCL)
            try bytes.withUnsafeBytes { (buf) throws in try f.write(buf, at: 0) }
            try f.sync()
        } catch {
            unlink(tmp)
            throw error
        }
        do { try rename(tmp, to: path) } catch {
            unlink(tmp)
            throw error
        }
    }

    /// A small secret or token file as text, trailing whitespace and newlines trimmed.
    public static func readTrimmedText(_ path: String, limit: Int = 4096) throws -> String {
        var bytes = try readAll(path, limit: limit)
        while let last = bytes.last, last == 0x20 || last == 0x09 || last == 0x0A || last == 0x0D { bytes.removeLast() }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// A whole regular file of at most `limit` bytes; anything else is refused before a
    /// byte is read (see `RegularFile`).
    public static func readAll(_ path: String, limit: Int) throws -> [UInt8] {
        let opened: (fd: Int32, size: Int64)
        do throws(RegularFile.OpenError) {
            opened = try RegularFile.open(path)
        } catch {
            if case .system(let code) = error { throw StorageError.system("cannot open", path: path, code: code) }
            throw StorageError("\(path) is \(error)")
        }
        let f = FileDescriptor(adopting: opened.fd, path: path)
        let size = opened.size
        guard size <= Int64(limit) else { throw StorageError("\(path) is \(size) bytes, more than the \(limit) byte limit") }
        var out = [UInt8](repeating: 0, count: Int(size))
        try out.withUnsafeMutableBytes { (buf) throws in try f.read(into: buf, at: 0) }
        return out
    }
}
