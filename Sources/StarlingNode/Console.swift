#if canImport(Glibc)
import Glibc
#endif

/// Unbuffered writes to standard error, safe from any thread.
public enum Console {
    public static func writeError(_ text: String) {
        var bytes = Array(text.utf8)
        var done = 0
        while done < bytes.count {
            let n = bytes.withUnsafeMutableBytes { write(STDERR_FILENO, $0.baseAddress! + done, $0.count - done) }
            if n <= 0 { return }
            done += n
        }
    }
}
