#if canImport(Glibc)
import Glibc
#endif

/// A file-system failure, with the path and the system's reason.
public struct StorageError: Error, Sendable, CustomStringConvertible {
    public var message: String
    public var errno: Int32?

    public init(_ message: String, errno: Int32? = nil) {
        self.message = message
        self.errno = errno
    }

    /// An error for a failed system call on `path`, from the current `errno`.
    static func system(_ what: String, path: String, code: Int32 = Glibc.errno) -> StorageError {
        StorageError("\(what) \(path): \(String(cString: strerror(code)))", errno: code)
    }

    public var isDiskFull: Bool { errno == ENOSPC || errno == EDQUOT }
    public var description: String { message }
}
