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
        var strict: Skipping? = nil
        try walk(root, relative: [], into: &out, skipping: &strict)
        return sorted(out)
    }

    /// Like `files(under:)`, but an entry that cannot be read (a dangling symlink, a folder
    /// that cannot be listed) is noted in `problems` and skipped, and a folder reached again
    /// through a symlink loop is not walked twice: one bad entry does not hide the rest.
    public static func files(under root: String, problems: inout [String]) throws -> [WalkedFile] {
        var out: [WalkedFile] = []
        var skipping: Skipping? = Skipping()
        var st = stat()
        if stat(root, &st) == 0 { skipping?.visited.insert(FolderID(device: UInt64(st.st_dev), inode: UInt64(st.st_ino))) }
        try walk(root, relative: [], into: &out, skipping: &skipping)
        problems += skipping?.problems ?? []
        return sorted(out)
    }

    private static func sorted(_ files: [WalkedFile]) -> [WalkedFile] {
        files.sorted { $0.relative.joined(separator: "/").utf8.lexicographicallyPrecedes($1.relative.joined(separator: "/").utf8) }
    }

    private struct FolderID: Hashable {
        var device: UInt64
        var inode: UInt64
    }

    /// What a tolerant walk has skipped, and the folders it has been in.
    private struct Skipping {
        var problems: [String] = []
        var visited: Set<FolderID> = []
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

    private static func walk(_ dir: String, relative: [String], into out: inout [WalkedFile],
                             skipping: inout Skipping?) throws {
        let entries: [String]
        do {
            entries = try names(in: dir)
        } catch {
            guard skipping != nil, !relative.isEmpty else { throw error }
            skipping?.problems.append("\(error)")
            return
        }
        for name in entries {
            let full = dir + "/" + name
            var st = stat()
            // stat follows symlinks, as mktorrent does.
            guard stat(full, &st) == 0 else {
                let error = StorageError.system("cannot read", path: full)
                guard skipping != nil else { throw error }
                skipping?.problems.append("\(error)")
                continue
            }
            switch st.st_mode & S_IFMT {
            case S_IFDIR:
                if skipping != nil {
                    guard skipping!.visited.insert(FolderID(device: UInt64(st.st_dev), inode: UInt64(st.st_ino))).inserted else {
                        skipping?.problems.append("\(full): a folder already walked (a symlink loop?)")
                        continue
                    }
                }
                try walk(full, relative: relative + [name], into: &out, skipping: &skipping)
            case S_IFREG:
                out.append(WalkedFile(relative: relative + [name], fullPath: full, size: Int64(st.st_size),
                                      mode: UInt32(st.st_mode & 0o7777), modificationTime: Int64(st.st_mtim.tv_sec)))
            default:
                continue // sockets, devices, fifos: not artifact content
            }
        }
    }
}
