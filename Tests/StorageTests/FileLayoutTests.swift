import BitTorrent
import NIOConcurrencyHelpers
import Storage
import TestSupport
import Testing
#if canImport(Glibc)
import Glibc
#endif

@Suite("FileLayout")
struct FileLayoutTests {
    // a:10 | (empty) | b:5 | (empty) | d:20  → starts 0, 10, 10, 15, 15; total 35
    let layout = FileLayout(files: [
        TorrentFile(path: ["a"], length: 10), TorrentFile(path: ["e1"], length: 0),
        TorrentFile(path: ["b"], length: 5), TorrentFile(path: ["e2"], length: 0),
        TorrentFile(path: ["d"], length: 20),
    ])

    @Test("starts and total length")
    func starts() {
        #expect(layout.starts == [0, 10, 10, 15, 15])
        #expect(layout.totalLength == 35)
    }

    static let spans: [(Int64, Int, [(Int, Int64, Int)])] = [
        // offset, length, expected (fileIndex, fileOffset, length)
        (Int64(0), 10, [(0, Int64(0), 10)]),
        (0, 1, [(0, 0, 1)]),
        (9, 1, [(0, 9, 1)]),
        (10, 5, [(2, 0, 5)]), // starts exactly on a boundary shared with an empty file
        (5, 15, [(0, 5, 5), (2, 0, 5), (4, 0, 5)]), // across three files
        (9, 7, [(0, 9, 1), (2, 0, 5), (4, 0, 1)]),
        (15, 20, [(4, 0, 20)]),
        (34, 1, [(4, 19, 1)]),
        (0, 35, [(0, 0, 10), (2, 0, 5), (4, 0, 20)]),
        (20, 0, []),
        (35, 0, []),
    ]

    @Test("spans map to file segments, skipping zero-length files", arguments: spans)
    func segments(_ offset: Int64, _ length: Int, _ expected: [(Int, Int64, Int)]) {
        let got = layout.segments(offset: offset, length: length)
        #expect(got == expected.map { FileSegment(fileIndex: $0.0, fileOffset: $0.1, length: $0.2) })
        #expect(got.reduce(0) { $0 + $1.length } == length)
    }

    @Test("leading and trailing empty files, and only empty files")
    func emptyEdges() {
        let lead = FileLayout(files: [TorrentFile(path: ["e"], length: 0), TorrentFile(path: ["a"], length: 4),
                                      TorrentFile(path: ["z"], length: 0)])
        #expect(lead.segments(offset: 0, length: 4) == [FileSegment(fileIndex: 1, fileOffset: 0, length: 4)])
        #expect(lead.segments(offset: 3, length: 1) == [FileSegment(fileIndex: 1, fileOffset: 3, length: 1)])
        let none = FileLayout(files: [TorrentFile(path: ["e"], length: 0), TorrentFile(path: ["f"], length: 0)])
        #expect(none.totalLength == 0)
        #expect(none.segments(offset: 0, length: 0).isEmpty)
    }

    @Test("every byte of a many-file layout maps to exactly one file position")
    func exhaustive() {
        let lengths: [Int64] = [3, 0, 0, 7, 1, 0, 16, 2, 0]
        let l = FileLayout(files: lengths.enumerated().map { TorrentFile(path: ["f\($0.offset)"], length: $0.element) })
        var expected: [(Int, Int64)] = []
        for (i, n) in lengths.enumerated() { for k in 0..<n { expected.append((i, k)) } }
        for start in 0..<expected.count {
            for len in 0...(expected.count - start) {
                var flat: [(Int, Int64)] = []
                for s in l.segments(offset: Int64(start), length: len) {
                    #expect(s.length > 0)
                    for k in 0..<Int64(s.length) { flat.append((s.fileIndex, s.fileOffset + k)) }
                }
                #expect(flat.map(\.0) == expected[start..<(start + len)].map(\.0))
                #expect(flat.map(\.1) == expected[start..<(start + len)].map(\.1))
            }
        }
    }
}

@Suite("PieceReader")
struct PieceReaderTests {
    @Test("pieces spanning files hash like the concatenated data, with 1 or several workers")
    func hashesAcrossFiles() throws {
        try withTempDir { dir in
            let parts: [[UInt8]] = [pseudoRandomBytes(20_000, seed: 10), [], pseudoRandomBytes(5, seed: 11),
                                    pseudoRandomBytes(50_000, seed: 12)]
            var paths: [String] = []
            var files: [TorrentFile] = []
            for (i, p) in parts.enumerated() {
                let path = dir.sub("f\(i)")
                if !p.isEmpty { try writeFile(path, p) } // a zero-length file need not exist
                paths.append(path)
                files.append(TorrentFile(path: ["f\(i)"], length: Int64(p.count)))
            }
            let all = parts.flatMap { $0 }
            let pieceLength = 16384
            var expected: [UInt8] = []
            var at = 0
            while at < all.count {
                expected += SHA1Hasher.hash(all[at..<min(all.count, at + pieceLength)]).bytes
                at += pieceLength
            }
            let reader = try PieceReader(paths: paths, files: files, pieceLength: pieceLength)
            #expect(reader.pieces.pieceCount == 5)
            for workers in [1, 2, 3, 8] {
                #expect(try reader.hashAllPieces(workers: workers) == expected, "workers: \(workers)")
            }
            // A read across the file boundaries gives the concatenated bytes.
            var buf = [UInt8](repeating: 0, count: 100)
            try buf.withUnsafeMutableBytes { try reader.read(offset: 19_950, into: $0) }
            #expect(buf == Array(all[19_950..<20_050]))
        }
    }

    @Test("progress is reported once per piece")
    func progress() throws {
        try withTempDir { dir in
            try writeFile(dir.sub("f"), pseudoRandomBytes(100_000, seed: 4))
            let reader = try PieceReader(paths: [dir.sub("f")], files: [TorrentFile(path: ["f"], length: 100_000)],
                                         pieceLength: 16384)
            let seen = Seen()
            _ = try reader.hashAllPieces(workers: 2) { index in seen.indices.withLockedValue { $0.append(index) } }
            #expect(seen.indices.withLockedValue { $0 }.sorted() == Array(0..<7))
        }
    }

    @Test("a file that shrinks while hashing gives an error, not a hang or a crash", .timeLimit(.minutes(1)))
    func shrinksWhileHashing() throws {
        try withTempDir { dir in
            try writeFile(dir.sub("f"), pseudoRandomBytes(200_000, seed: 5))
            let reader = try PieceReader(paths: [dir.sub("f")], files: [TorrentFile(path: ["f"], length: 200_000)],
                                         pieceLength: 16384)
            #expect(truncate(dir.sub("f"), 100_000) == 0)
            for workers in [1, 2, 5] {
                #expect(throws: StorageError.self) { _ = try reader.hashAllPieces(workers: workers) }
            }
        }
    }

    @Test("more workers than pieces, one piece, and no data at all")
    func edgeCounts() throws {
        try withTempDir { dir in
            try writeFile(dir.sub("f"), [1, 2, 3])
            let one = try PieceReader(paths: [dir.sub("f")], files: [TorrentFile(path: ["f"], length: 3)], pieceLength: 16384)
            #expect(try one.hashAllPieces(workers: 16) == SHA1Hasher.hash([1, 2, 3] as [UInt8]).bytes)
            let none = try PieceReader(paths: [dir.sub("absent")], files: [TorrentFile(path: ["e"], length: 0)],
                                       pieceLength: 16384)
            #expect(try none.hashAllPieces().isEmpty)
        }
    }

    @Test("a file shorter than declared, or missing, is an error")
    func shortOrMissing() throws {
        try withTempDir { dir in
            try writeFile(dir.sub("short"), [1, 2, 3])
            #expect(throws: StorageError.self) {
                _ = try PieceReader(paths: [dir.sub("short")], files: [TorrentFile(path: ["s"], length: 4)], pieceLength: 16384)
            }
            #expect(throws: StorageError.self) {
                _ = try PieceReader(paths: [dir.sub("absent")], files: [TorrentFile(path: ["a"], length: 4)], pieceLength: 16384)
            }
        }
    }
}

/// The pieces a progress callback saw, from the hashing threads.
private final class Seen: Sendable {
    let indices = NIOLockedValueBox<[Int]>([])
}
