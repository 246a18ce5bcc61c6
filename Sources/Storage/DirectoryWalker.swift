#if canImport(Glibc)
import Glibc
#endif

/// One regular file found under a folder.
public struct WalkedFile: Sendable {
    /// Path components relative to the folder walked.
    public var relative: [String]
    public var fullPath: String
    public var size: Int64
    public var mode: UInt32
    public var modificationTime: Int64
}

/// Lists a folder's regular files recursively, in a stable order: byte-wise by
/// relative path (the order `mktorrent` uses, so info-hashes match).
public enum DirectoryWalker {
    public static func files(under root: String) throws -> [WalkedFile] {
        var out: [WalkedFile] = []
        try walk(root, relative: [], into: &out)
        out.sort { $0.relative.joined(separator: "/").utf8.lexicographicallyPrecedes($1.relative.joined(separator: "/").utf8) }
        return out
    }

    private static func walk(_ dir: String, relative: [String], into out: inout [WalkedFile]) throws {
        guard let d = opendir(dir) else { throw StorageError.system("cannot list folder", path: dir) }
        defer { closedir(d) }
        var names: [String] = []
        while let entry = readdir(d) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(cString: raw.bindMemory(to: CChar.self).baseAddress!)
            }
            if name == "." || name == ".." { continue }
            names.append(name)
        }
        for name in names {
            let full = dir + "/" + name
            var st = stat()
            // stat follows symlinks, as mktorrent does.
            guard stat(full, &st) == 0 else { throw StorageError.system("cannot read", path: full) }
            switch st.st_mode & S_IFMT {
            case S_IFDIR:
                try walk(full, relative: relative + [name], into: &out)
            case S_IFREG:
                out.append(WalkedFile(relative: relative + [name], fullPath: full, size: Int64(st.st_size),
                                      mode: UInt32(st.st_mode & 0o7777), modificationTime: Int64(st.st_mtim.tv_sec)))
            default:
                continue // sockets, devices, fifos: not artifact content
            }
        }
    }
}
