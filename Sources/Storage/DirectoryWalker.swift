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

    /// The regular files directly in `folder` whose names pass `include` (symlinks followed),
    /// sorted by name, and one message per such entry that cannot be read (a dangling
    /// symlink, a symlink loop, a FIFO...), so one bad entry does not hide the others.
    /// Never descends into subfolders.
    public static func regularFiles(in folder: String, where include: (String) -> Bool)
        throws -> (files: [WalkedFile], problems: [String]) {
        var files: [WalkedFile] = []
        var problems: [String] = []
        for name in try names(in: folder).sorted() where include(name) {
            let full = folder + "/" + name
            var st = stat()
            guard stat(full, &st) == 0 else {
                problems.append("\(full): \(String(cString: strerror(errno)))")
                continue
            }
            guard st.st_mode & S_IFMT == S_IFREG else {
                problems.append("\(full): not a regular file")
                continue
            }
            files.append(WalkedFile(relative: [name], fullPath: full, size: Int64(st.st_size),
                                    mode: UInt32(st.st_mode & 0o7777), modificationTime: Int64(st.st_mtim.tv_sec)))
        }
        return (files, problems)
    }

    private static func names(in dir: String) throws -> [String] {
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
        return names
    }

    private static func walk(_ dir: String, relative: [String], into out: inout [WalkedFile]) throws {
        for name in try names(in: dir) {
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
