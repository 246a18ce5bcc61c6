#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Opens files that must be regular files (a .torrent, a key, a token, a configuration).
///
/// Anything else is refused before a byte is read: opening a FIFO that has no writer blocks
/// (an admin `add` of one wedged a node, SIGTERM included), and a device or a folder is never
/// what was meant. O_NONBLOCK keeps that open from blocking, and the check is made on the
/// descriptor opened, so the file cannot be swapped between check and read.
public enum RegularFile {
    public enum OpenError: Error, Sendable, Hashable, CustomStringConvertible {
        /// `open` or `fstat` failed with this errno.
        case system(Int32)
        /// The path names something else: "a FIFO", "a folder", "a device", "a socket".
        case notRegular(kind: String)

        public var description: String {
            switch self {
            case .system(let code): return String(cString: strerror(code))
            case .notRegular(let kind): return "not a regular file (it is \(kind))"
            }
        }
    }

    /// A descriptor open for reading (the caller closes it) and the file's size.
    public static func open(_ path: String) throws(OpenError) -> (fd: Int32, size: Int64) {
        let fd = Glibc.open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC)
        guard fd >= 0 else { throw .system(errno) }
        var st = stat()
        guard fstat(fd, &st) == 0 else {
            let code = errno
            close(fd)
            throw .system(code)
        }
        let kind = st.st_mode & S_IFMT
        guard kind == S_IFREG else {
            close(fd)
            switch kind {
            case S_IFIFO: throw .notRegular(kind: "a FIFO")
            case S_IFDIR: throw .notRegular(kind: "a folder")
            case S_IFCHR, S_IFBLK: throw .notRegular(kind: "a device")
            case S_IFSOCK: throw .notRegular(kind: "a socket")
            default: throw .notRegular(kind: "a special file")
            }
        }
        return (fd, Int64(st.st_size))
    }

    /// The first `limit` bytes of a regular file (all of it when shorter). A caller asks for
    /// one byte more than it accepts, to tell a file that is too long.
    public static func read(_ path: String, atMost limit: Int) throws(OpenError) -> [UInt8] {
        let fd = try open(path).fd
        defer { close(fd) }
        var out: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: max(1, min(limit, 64 << 10)))
        while out.count < limit {
            let want = min(buffer.count, limit - out.count)
            let n = buffer.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, want) }
            if n < 0 {
                if errno == EINTR { continue }
                throw .system(errno)
            }
            if n == 0 { break }
            out += buffer[0..<n]
        }
        return out
    }
}
