import Bencode
import BitTorrent
import Storage
import TestSupport
import Testing

@Suite("TorrentBuilder")
struct TorrentBuilderTests {
    static let KiB: Int64 = 1024, MiB: Int64 = 1 << 20, GiB: Int64 = 1 << 30

    static let knownSizes: [(Int64, Int)] = [
        (Int64(0), 128 * 1024), (1, 128 * 1024), (220 * MiB, 128 * 1024),
        (250 * MiB, 128 * 1024), // exactly 2000 pieces of 128 KiB
        (250 * MiB + 1, 256 * 1024), (500 * MiB, 256 * 1024), (500 * MiB + 1, 512 * 1024), (1 * GiB, 1 << 20), (2 * GiB, 2 << 20), (20 * GiB, 16 << 20),
        (31_250 * MiB, 16 << 20), (1 << 40, 16 << 20), // beyond 2000 pieces of 16 MiB: capped
    ]

    @Test("automatic piece length for known sizes", arguments: knownSizes)
    func automatic(_ total: Int64, _ expected: Int) {
        #expect(TorrentBuilder.automaticPieceLength(totalLength: total) == expected)
    }

    @Test("automatic piece length aims at <= 2000 pieces within 128 KiB...16 MiB")
    func automaticProperty() {
        var total: Int64 = 1
        while total < 1 << 42 {
            for t in [total - 1, total, total + 1, total * 3 / 2] where t >= 0 {
                let p = Int64(TorrentBuilder.automaticPieceLength(totalLength: t))
                #expect(p >= 128 * Self.KiB && p <= 16 * Self.MiB && p & (p - 1) == 0)
                let pieces = (t + p - 1) / p
                // At most 2000 pieces unless capped at 16 MiB...
                #expect(pieces <= 2000 || p == 16 * Self.MiB, "total \(t): \(pieces) pieces of \(p)")
                // ...and the smallest such size: half of it would give more than 2000.
                if p > 128 * Self.KiB { #expect((t + p / 2 - 1) / (p / 2) > 2000, "total \(t): \(p) is not the smallest") }
            }
            total *= 2
        }
    }

    static let pieceLengths: [(Int64, Bool)] = [
        (Int64(16384), true), (32768, true), (1 << 20, true), (1 << 30, true),
        (0, false), (-16384, false), (8192, false), (16383, false), (16385, false), (3 * 16384, false),
        (1 << 31, false), (Int64.min, false),
    ]

    @Test("valid piece lengths", arguments: pieceLengths)
    func validPieceLengths(_ n: Int64, _ valid: Bool) {
        #expect(TorrentBuilder.isValidPieceLength(n) == valid)
    }

    @Test("an invalid piece size is refused by build")
    func invalidPieceSizeRefused() throws {
        try withTempDir { dir in
            try writeFile(dir.sub("f"), [1, 2, 3])
            for bad in [0, 1000, 16383, 3 << 14] {
                var builder = TorrentBuilder()
                builder.pieceLength = bad
                #expect(throws: StorageError.self) { _ = try builder.build(path: dir.sub("f")) }
            }
        }
    }

    @Test("a single file: pieces, name, length and trackers")
    func singleFile() throws {
        try withTempDir { dir in
            let data = pseudoRandomBytes(100_000, seed: 5)
            try writeFile(dir.sub("artifact.rpm"), data)
            var builder = TorrentBuilder()
            builder.pieceLength = 32768
            builder.trackers = ["http://a/announce", "udp://b:6969"]
            builder.isPrivate = true
            builder.comment = "note"
            let built = try builder.build(path: dir.sub("artifact.rpm"))
            let m = built.metainfo
            #expect(m.name == "artifact.rpm")
            #expect(!m.isMultiFile)
            #expect(m.isPrivate)
            #expect(m.totalLength == 100_000)
            #expect(m.pieceCount == 4)
            #expect(m.pieceHash(3) == SHA1Hasher.hash(data[98304...]))
            #expect(m.pieceHash(0) == SHA1Hasher.hash(data[0..<32768]))
            #expect(m.announce == "http://a/announce")
            #expect(m.announceList == [["http://a/announce"], ["udp://b:6969"]])
            #expect(m.comment == "note")
            // No creation date by default: the bytes depend only on the content and options.
            #expect(try Bencode.decode(built.bytes)["creation date"] == nil)
            // The info dictionary holds exactly the BEP 3 keys (and private).
            let info = try #require(Bencode.decode(built.bytes)["info"]?.dictionaryEntries)
            #expect(info.map { String(decoding: $0.key, as: UTF8.self) }.sorted()
                == ["length", "name", "piece length", "pieces", "private"])
        }
    }

    @Test("a folder: files in byte-wise order, reproducible bytes")
    func folder() throws {
        try withTempDir { dir in
            try makeSampleFolder(at: dir.sub("release"))
            var builder = TorrentBuilder()
            builder.trackers = ["http://t/announce"]
            let first = try builder.build(path: dir.sub("release"))
            #expect(first.metainfo.isMultiFile)
            #expect(first.metainfo.name == "release")
            #expect(first.metainfo.files.map(\.path) == sampleFolderOrder)
            #expect(first.metainfo.pieceLength == TorrentBuilder.automaticPieceLengths.smallest)
            let second = try builder.build(path: dir.sub("release"))
            #expect(first.bytes == second.bytes)
            // A trailing slash or another name changes nothing but the name.
            #expect(try builder.build(path: dir.sub("release/")).bytes == first.bytes)
            var renamed = builder
            renamed.name = "other"
            #expect(try renamed.build(path: dir.sub("release")).metainfo.name == "other")
        }
    }

    @Test("refusals: missing path, empty folder, unusable name")
    func refusals() throws {
        try withTempDir { dir in
            #expect(throws: StorageError.self) { _ = try TorrentBuilder().build(path: dir.sub("absent")) }
            try FileManagerShim.mkdir(dir.sub("empty-folder/inner"))
            #expect(throws: StorageError.self) { _ = try TorrentBuilder().build(path: dir.sub("empty-folder")) }
            // No data at all: libtorrent would refuse the torrent ("invalid length of torrent").
            try writeFile(dir.sub("zero"), [])
            try writeFile(dir.sub("only-empty/a"), [])
            try writeFile(dir.sub("only-empty/b/c"), [])
            #expect(throws: StorageError.self) { _ = try TorrentBuilder().build(path: dir.sub("zero")) }
            #expect(throws: StorageError.self) { _ = try TorrentBuilder().build(path: dir.sub("only-empty")) }
            try writeFile(dir.sub("f"), [1])
            for bad in ["", ".", "..", "a/b"] {
                var builder = TorrentBuilder()
                builder.name = bad
                #expect(throws: StorageError.self, "name \(bad)") { _ = try builder.build(path: dir.sub("f")) }
            }
        }
    }
}

enum FileManagerShim {
    static func mkdir(_ path: String) throws { try FilePaths.makeDirectories(path) }
}
