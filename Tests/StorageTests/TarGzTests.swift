import Foundation
import TestSupport
import Storage
import Testing

@Suite("TarGz", .timeLimit(.minutes(2)))
struct TarGzTests {
    /// Relative path -> contents of the folder packed by these tests.
    static func sample() -> [(String, [UInt8])] {
        let longDir = String(repeating: "d", count: 70)
        let longFile = String(repeating: "f", count: 60) + ".txt"
        return [
            ("top.txt", Array("top\n".utf8)),
            ("empty", []),
            ("nested/deeper/deepest/file.bin", pseudoRandomBytes(1_500_000, seed: 20)), // > one 1 MiB chunk
            ("\(longDir)/\(longFile)", Array("long path\n".utf8)), // > 100 bytes with the root prefix
            (String(repeating: "x", count: 96), Array("96 + 'pkg/' = exactly 100\n".utf8)),
            (String(repeating: "y", count: 97), Array("101 bytes\n".utf8)),
            ((0..<12).map { "level\($0)" }.joined(separator: "/") + "/" + String(repeating: "z", count: 200),
             Array("very long\n".utf8)),
            ("café/naïve.txt", Array("utf-8\n".utf8)),
            ("block/exactly512", [UInt8](repeating: 0x41, count: 512)),
        ]
    }

    static func makeFolder(_ root: String) throws {
        for (rel, data) in sample() { try writeFile(root + "/" + rel, data) }
        chmod(root + "/top.txt", 0o755)
    }

    @Test("a packed folder unpacks with tar to the same bytes", .enabled(if: Tools.tar != nil, "tar is not installed"))
    func roundTripWithTar() throws {
        try withTempDir { dir in
            try Self.makeFolder(dir.sub("src"))
            try TarGz.pack(folder: dir.sub("src"), into: dir.sub("pkg.tgz"), rootName: "pkg")
            let archive = try readFile(dir.sub("pkg.tgz"))
            #expect(archive.prefix(2) == [0x1f, 0x8b]) // gzip magic
            try FilePaths.makeDirectories(dir.sub("out"))
            let r = try Shell.run(Tools.tar!, ["xzf", dir.sub("pkg.tgz"), "-C", dir.sub("out")])
            #expect(r.status == 0, "tar: \(r.stderr)")
            #expect(r.stderr.isEmpty, "tar warned: \(r.stderr)")
            for (rel, data) in Self.sample() {
                #expect(try readFile(dir.sub("out/pkg/" + rel)) == data, "\(rel)")
            }
            // Nothing else was unpacked.
            let listed = try Shell.run(Tools.tar!, ["tzf", dir.sub("pkg.tgz")])
            let files = listed.stdout.split(separator: "\n").filter { !$0.hasSuffix("/") }.map { String($0.dropFirst(4)) }
            #expect(files.sorted() == Self.sample().map(\.0).sorted())
            // The file mode travels.
            var st = stat()
            #expect(stat(dir.sub("out/pkg/top.txt"), &st) == 0)
            #expect(st.st_mode & 0o777 == 0o755)
        }
    }

    @Test("packing the same folder twice gives the same bytes")
    func deterministic() throws {
        try withTempDir { dir in
            try Self.makeFolder(dir.sub("src"))
            try TarGz.pack(folder: dir.sub("src"), into: dir.sub("one.tgz"), rootName: "pkg")
            try TarGz.pack(folder: dir.sub("src"), into: dir.sub("two.tgz"), rootName: "pkg")
            let one = try readFile(dir.sub("one.tgz"))
            #expect(one == (try readFile(dir.sub("two.tgz"))))
            // gzip header: no timestamp.
            #expect(one[4..<8] == [0, 0, 0, 0])
        }
    }

    @Test("an unreadable output location is an error, not a crash")
    func badOutput() throws {
        try withTempDir { dir in
            try Self.makeFolder(dir.sub("src"))
            #expect(throws: StorageError.self) {
                try TarGz.pack(folder: dir.sub("src"), into: dir.sub("no/such/folder/x.tgz"), rootName: "pkg")
            }
            #expect(throws: StorageError.self) {
                try TarGz.pack(folder: dir.sub("absent"), into: dir.sub("x.tgz"), rootName: "pkg")
            }
        }
    }
}
