import BitTorrent
import Foundation
import Storage
import Testing

// Helpers are fileprivate and prefixed: other branches add files (and helpers) to this target.

/// A fresh folder under /tmp, removed by `remove()`.
fileprivate struct StoreScratch {
    let path: String

    init() throws {
        path = "/tmp/starling-piecestore-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    func sub(_ p: String) -> String { path + "/" + p }
    func remove() { try? FileManager.default.removeItem(atPath: path) }
}

fileprivate func withScratch(_ body: (StoreScratch) throws -> Void) throws {
    let s = try StoreScratch()
    defer { s.remove() }
    try body(s)
}

/// Minimal bencode writer, so the torrent's layout is exactly what the test says.
fileprivate indirect enum B {
    case i(Int64), s([UInt8]), l([B]), d([(String, B)])
    static func str(_ t: String) -> B { .s(Array(t.utf8)) }
    var bytes: [UInt8] {
        switch self {
        case .i(let v): return Array("i\(v)e".utf8)
        case .s(let b): return Array("\(b.count):".utf8) + b
        case .l(let items): return [UInt8(ascii: "l")] + items.flatMap(\.bytes) + [UInt8(ascii: "e")]
        case .d(let pairs):
            return [UInt8(ascii: "d")]
                + pairs.sorted { $0.0 < $1.0 }.flatMap { B.str($0.0).bytes + $0.1.bytes }
                + [UInt8(ascii: "e")]
        }
    }
}

fileprivate func sha1(_ bytes: ArraySlice<UInt8>) -> [UInt8] {
    Array(bytes).withUnsafeBytes { SHA1Hasher.hash($0).bytes }
}

/// A torrent over `files` (path, content), with its content concatenated.
fileprivate struct Fixture {
    var files: [([String], [UInt8])]
    var pieceLength: Int
    var name = "bundle"
    var multiFile = true

    var data: [UInt8] { files.flatMap(\.1) }

    func piece(_ i: Int) -> ArraySlice<UInt8> {
        let d = data
        return d[(i * pieceLength)..<min(d.count, (i + 1) * pieceLength)]
    }

    func metainfo() throws -> Metainfo {
        let d = data
        var hashes: [UInt8] = []
        var at = 0
        while at < d.count {
            hashes += sha1(d[at..<min(d.count, at + pieceLength)])
            at += pieceLength
        }
        var info: [(String, B)] = [("name", .str(name)), ("piece length", .i(Int64(pieceLength))), ("pieces", .s(hashes))]
        if multiFile {
            info.append(("files", .l(files.map { f in .d([("length", .i(Int64(f.1.count))), ("path", .l(f.0.map(B.str)))]) })))
        } else {
            info.append(("length", .i(Int64(d.count))))
        }
        return try Metainfo(bytes: B.d([("announce", .str("http://127.0.0.1:1/announce")), ("info", .d(info))]).bytes)
    }

    /// Writes the files under `root` as a finished download would have them.
    func materialize(at root: String) throws {
        if !multiFile {
            _ = FileManager.default.createFile(atPath: root, contents: Data(data))
            return
        }
        for (path, content) in files {
            let full = root + "/" + path.joined(separator: "/")
            try FileManager.default.createDirectory(atPath: (full as NSString).deletingLastPathComponent,
                                                    withIntermediateDirectories: true)
            _ = FileManager.default.createFile(atPath: full, contents: Data(content))
        }
    }
}

fileprivate func content(_ n: Int, seed: UInt8) -> [UInt8] { (0..<n).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ Int(seed) &+ 1) | 1 } }

/// 26 bytes in 8-byte pieces: piece 0 spans a, b and c (with an empty file between a and b),
/// empty files at both ends and in a subfolder; the last piece is 2 bytes.
fileprivate let edgy = Fixture(files: [
    (["empty-first"], []),
    (["a"], content(3, seed: 1)),
    (["sub", "empty"], []),
    (["b"], content(2, seed: 2)),
    (["c"], content(7, seed: 3)),
    (["sub", "deeper", "d"], content(14, seed: 4)),
    (["z-empty-last"], []),
], pieceLength: 8)

fileprivate func contentsOf(_ path: String) -> [UInt8]? {
    FileManager.default.contents(atPath: path).map { [UInt8]($0) }
}

fileprivate func isDir(_ path: String) -> Bool {
    var d: ObjCBool = false
    return FileManager.default.fileExists(atPath: path, isDirectory: &d) && d.boolValue
}

fileprivate func write(_ store: PieceStore, _ f: Fixture, pieces: some Sequence<Int>) throws {
    for i in pieces {
        let bytes = Array(f.piece(i))
        try bytes.withUnsafeBytes { buf in
            #expect(store.matches(piece: i, data: buf))
            try store.write(piece: i, data: buf)
        }
    }
}

@Suite("Piece store")
struct PieceStoreTests {
    @Test("the fixture's layout has the edges it claims")
    func layoutEdges() throws {
        let m = try edgy.metainfo()
        #expect(m.pieceCount == 4)
        #expect(m.layout.length(ofPiece: 3) == 2)
        func spans(_ offset: Int64, _ length: Int) -> [[Int]] {
            FileLayout(files: m.files).segments(offset: offset, length: length).map { [$0.fileIndex, Int($0.fileOffset), $0.length] }
        }
        #expect(spans(0, 8) == [[1, 0, 3], [3, 0, 2], [4, 0, 3]])
        #expect(spans(24, 2) == [[5, 12, 2]])
    }

    @Test("a multi-file download lands in OUT.part, then finalize renames the folder to OUT")
    func downloadAndFinalize() throws {
        try withScratch { dir in
            let m = try edgy.metainfo()
            let out = dir.sub("deep/OUT")
            let store = try PieceStore(metainfo: m, target: out, mode: .download)
            #expect(!store.isFinal)
            #expect(isDir(out + ".part"))
            #expect(!FileManager.default.fileExists(atPath: out))
            // every file exists at its full size, empty ones included
            for (path, bytes) in edgy.files {
                let attrs = try FileManager.default.attributesOfItem(atPath: out + ".part/" + path.joined(separator: "/"))
                #expect((attrs[.size] as? NSNumber)?.intValue == bytes.count)
            }
            #expect(try store.verifyExisting().isEmpty)
            // wrong data never matches: a flipped byte, a short piece
            var bad = Array(edgy.piece(0))
            bad[4] ^= 0xFF
            bad.withUnsafeBytes { #expect(!store.matches(piece: 0, data: $0)) }
            Array(edgy.piece(0).dropLast()).withUnsafeBytes { #expect(!store.matches(piece: 0, data: $0)) }

            try write(store, edgy, pieces: [3, 1, 0, 2])
            #expect(try store.verifyExisting().isComplete)
            // a block read across three files comes back whole
            var block = [UInt8](repeating: 0, count: 6)
            try block.withUnsafeMutableBytes { try store.read(piece: 0, begin: 1, length: 6, into: $0) }
            #expect(block == Array(edgy.piece(0).dropFirst().prefix(6)))
            // just written, it is in the page cache: read without waiting for the disk, alike
            var cached = [UInt8](repeating: 0, count: 6)
            #expect(try cached.withUnsafeMutableBytes { try store.readIfCached(piece: 0, begin: 1, length: 6, into: $0) })
            #expect(cached == block)

            try store.finalize()
            #expect(store.isFinal)
            #expect(!FileManager.default.fileExists(atPath: out + ".part"))
            #expect(isDir(out))
            for (path, bytes) in edgy.files {
                #expect(contentsOf(out + "/" + path.joined(separator: "/")) == bytes, "\(path)")
            }
            try store.finalize()   // idempotent
        }
    }

    @Test("a single-file download: OUT.part is a file renamed to OUT")
    func singleFile() throws {
        try withScratch { dir in
            let f = Fixture(files: [(["artifact.rpm"], content(100, seed: 9))], pieceLength: 32, name: "artifact.rpm", multiFile: false)
            let m = try f.metainfo()
            let out = dir.sub("artifact.rpm")
            let store = try PieceStore(metainfo: m, target: out, mode: .download)
            #expect(FileManager.default.fileExists(atPath: out + ".part") && !isDir(out + ".part"))
            try write(store, f, pieces: 0..<m.pieceCount)
            try store.finalize()
            #expect(contentsOf(out) == f.data)
            #expect(!FileManager.default.fileExists(atPath: out + ".part"))
        }
    }

    @Test("reopening a half-written .part resumes with exactly the pieces written")
    func resume() throws {
        try withScratch { dir in
            let m = try edgy.metainfo()
            let out = dir.sub("OUT")
            do {
                let store = try PieceStore(metainfo: m, target: out, mode: .download)
                try write(store, edgy, pieces: [0, 3])
            }   // closed: an interrupted run
            let again = try PieceStore(metainfo: m, target: out, mode: .download)
            #expect(!again.isFinal)
            #expect(try again.verifyExisting().indices == [0, 3])
            try write(again, edgy, pieces: [1, 2])
            #expect(try again.verifyExisting().isComplete)
            try again.finalize()
            #expect(contentsOf(out + "/sub/deeper/d") == edgy.files[5].1)
        }
    }

    @Test("a complete OUT opens as final and verifies whole")
    func completeOpensFinal() throws {
        try withScratch { dir in
            let m = try edgy.metainfo()
            let out = dir.sub("OUT")
            try edgy.materialize(at: out)
            let store = try PieceStore(metainfo: m, target: out, mode: .download)
            #expect(store.isFinal)
            #expect(!FileManager.default.fileExists(atPath: out + ".part"))
            #expect(try store.verifyExisting().isComplete)
            // zero-length files may be missing from a finished folder
            try FileManager.default.removeItem(atPath: out + "/z-empty-last")
            let seed = try PieceStore(metainfo: m, target: out, mode: .seed)
            #expect(try seed.verifyExisting().isComplete)
        }
    }

    @Test("writing into a finished store is an error, not a crash")
    func writeIntoFinal() throws {
        try withScratch { dir in
            let m = try edgy.metainfo()
            let out = dir.sub("OUT")
            var f = edgy
            f.files[4].1[0] ^= 0x55   // an older version of the artifact is in the way
            try f.materialize(at: out)
            let store = try PieceStore(metainfo: m, target: out, mode: .download)
            #expect(store.isFinal)
            #expect(try store.verifyExisting().indices == [1, 2, 3])
            let piece = Array(edgy.piece(0))
            #expect(throws: StorageError.self) {
                try piece.withUnsafeBytes { try store.write(piece: 0, data: $0) }
            }
            #expect(contentsOf(out + "/c") == f.files[4].1, "the existing file was modified")
        }
    }

    @Test("seeding from a file of the wrong size is a clear StorageError")
    func seedWrongSize() throws {
        try withScratch { dir in
            let m = try edgy.metainfo()
            let out = dir.sub("OUT")
            var f = edgy
            f.files[4].1.append(0x42)   // c is 8 bytes instead of 7
            try f.materialize(at: out)
            let error = #expect(throws: StorageError.self) {
                _ = try PieceStore(metainfo: m, target: out, mode: .seed)
            }
            #expect(error?.description.contains(out + "/c") == true)
            #expect(error?.description.contains("is 8 bytes") == true)
            #expect(error?.description.contains("says 7") == true)
            // a missing non-empty file is an error too
            try FileManager.default.removeItem(atPath: out + "/c")
            #expect(throws: StorageError.self) {
                _ = try PieceStore(metainfo: m, target: out, mode: .seed)
            }
        }
    }

    @Test("finalize refuses when OUT appeared meanwhile; the data stays in .part")
    func finalizeRefuses() throws {
        try withScratch { dir in
            let m = try edgy.metainfo()
            let out = dir.sub("OUT")
            let store = try PieceStore(metainfo: m, target: out, mode: .download)
            try write(store, edgy, pieces: 0..<4)
            try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: false)
            _ = FileManager.default.createFile(atPath: out + "/someone-elses", contents: Data([1, 2, 3]))
            let error = #expect(throws: StorageError.self) { try store.finalize() }
            #expect(error?.description.contains(out) == true)
            #expect(!store.isFinal)
            #expect(contentsOf(out + "/someone-elses") == [1, 2, 3])
            #expect(contentsOf(out + ".part/c") == edgy.files[4].1)
            // once the intruder is gone, finalize succeeds
            try FileManager.default.removeItem(atPath: out)
            try store.finalize()
            #expect(contentsOf(out + "/c") == edgy.files[4].1)
        }
    }
}
