import BitTorrent
import Foundation
import TestSupport
import Storage
import Testing

/// Checks against tools nobody here wrote: mktorrent (Debian) and libtorrent (python3-libtorrent).
/// Each test is skipped only when its tool is absent; CI installs both.
@Suite("make-torrent compatibility", .timeLimit(.minutes(3)), .tags(.endToEnd))
struct MakeTorrentCompatibilityTests {
    static let tracker = "http://10.0.0.1:6969/announce"

    /// Prints the v1 info-hash, file count and total size libtorrent sees in a .torrent.
    static let libtorrentLoad = """
        import sys, libtorrent as lt
        ti = lt.torrent_info(sys.argv[1])
        h = ti.info_hashes().v1 if hasattr(ti, 'info_hashes') else ti.info_hash()
        print(h, ti.num_files(), ti.total_size(), ti.piece_length(), ti.name())
        """

    /// Makes a v1 torrent of argv[1] with piece size argv[2] into argv[3] and prints its info-hash.
    static let libtorrentCreate = """
        import sys, os, libtorrent as lt
        path, piece, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
        fs = lt.file_storage()
        lt.add_files(fs, path)
        # libtorrent 2.0 makes hybrid v1+v2 torrents unless told otherwise.
        flags = lt.create_torrent.v1_only if hasattr(lt.create_torrent, 'v1_only') else 0
        ct = lt.create_torrent(fs, piece, flags=flags)
        ct.add_tracker('http://t/announce')
        lt.set_piece_hashes(ct, os.path.dirname(os.path.abspath(path)))
        open(out, 'wb').write(lt.bencode(ct.generate()))
        ti = lt.torrent_info(out)
        print(ti.info_hashes().v1 if hasattr(ti, 'info_hashes') else ti.info_hash())
        """

    static func starling(_ path: String, pieceLog2: Int, name: String? = nil, isPrivate: Bool = false)
        throws -> (bytes: [UInt8], metainfo: Metainfo) {
        var builder = TorrentBuilder()
        builder.trackers = [tracker]
        builder.pieceLength = 1 << pieceLog2
        builder.name = name
        builder.isPrivate = isPrivate
        return try builder.build(path: path)
    }

    static func mktorrent(_ path: String, pieceLog2: Int, name: String, output: String, isPrivate: Bool = false)
        throws -> Metainfo {
        var args = ["-l", "\(pieceLog2)", "-a", tracker, "-n", name, "-o", output]
        if isPrivate { args.append("-p") }
        let r = try Shell.run(Tools.mktorrent!, args + [path])
        guard r.status == 0 else { throw TestFailure("mktorrent failed (\(r.status)): \(r.stderr)") }
        // Starling parses what mktorrent made.
        return try Metainfo(bytes: readFile(output))
    }

    // MARK: mktorrent

    @Test("a file: same info-hash as mktorrent", .enabled(if: Tools.mktorrent != nil, "mktorrent is not installed"),
          arguments: [15, 18])
    func fileMatchesMktorrent(pieceLog2: Int) throws {
        try withTempDir { dir in
            // Not a multiple of the piece size, so the last piece is short.
            try writeFile(dir.sub("logstash.rpm"), pseudoRandomBytes(1_234_567, seed: 30))
            let theirs = try Self.mktorrent(dir.sub("logstash.rpm"), pieceLog2: pieceLog2, name: "logstash.rpm",
                                            output: dir.sub("mk.torrent"))
            let ours = try Self.starling(dir.sub("logstash.rpm"), pieceLog2: pieceLog2)
            #expect(ours.metainfo.infoHash == theirs.infoHash)
            #expect(theirs.files == ours.metainfo.files)
            #expect(theirs.pieceHashes == ours.metainfo.pieceHashes)
            #expect(theirs.trackers == [Self.tracker])
        }
    }

    @Test("a file with another name and the private flag: same info-hash as mktorrent",
          .enabled(if: Tools.mktorrent != nil, "mktorrent is not installed"))
    func renamedPrivateFile() throws {
        try withTempDir { dir in
            try writeFile(dir.sub("f.bin"), pseudoRandomBytes(40_000, seed: 31))
            let theirs = try Self.mktorrent(dir.sub("f.bin"), pieceLog2: 15, name: "Renamed Artifact",
                                            output: dir.sub("mk.torrent"), isPrivate: true)
            let ours = try Self.starling(dir.sub("f.bin"), pieceLog2: 15, name: "Renamed Artifact", isPrivate: true)
            #expect(theirs.isPrivate && theirs.name == "Renamed Artifact")
            #expect(ours.metainfo.infoHash == theirs.infoHash)
        }
    }

    @Test("a folder: same info-hash and file order as mktorrent",
          .enabled(if: Tools.mktorrent != nil, "mktorrent is not installed"), arguments: [15, 18])
    func folderMatchesMktorrent(pieceLog2: Int) throws {
        try withTempDir { dir in
            try makeSampleFolder(at: dir.sub("release"))
            let theirs = try Self.mktorrent(dir.sub("release"), pieceLog2: pieceLog2, name: "release",
                                            output: dir.sub("mk.torrent"))
            let ours = try Self.starling(dir.sub("release"), pieceLog2: pieceLog2)
            #expect(theirs.files.map(\.path) == sampleFolderOrder)
            #expect(ours.metainfo.files == theirs.files)
            #expect(ours.metainfo.infoHash == theirs.infoHash)
        }
    }

    // MARK: libtorrent

    @Test("libtorrent loads Starling's torrents with the same info-hash",
          .enabled(if: Tools.libtorrentPython != nil, "python3-libtorrent is not installed"))
    func libtorrentLoadsStarling() throws {
        try withTempDir { dir in
            try writeFile(dir.sub("one.bin"), pseudoRandomBytes(700_000, seed: 32))
            try makeSampleFolder(at: dir.sub("release"))
            for (path, log2) in [(dir.sub("one.bin"), 16), (dir.sub("release"), 15)] {
                let ours = try Self.starling(path, pieceLog2: log2)
                let torrentPath = path + ".torrent"
                try writeFile(torrentPath, ours.bytes)
                let r = try Shell.run(Tools.libtorrentPython!, ["-c", Self.libtorrentLoad, torrentPath])
                #expect(r.status == 0, "libtorrent: \(r.stderr)")
                let fields = r.stdout.split(separator: " ").map { $0.trimmingCharacters(in: .whitespacesAndNewlines) }
                #expect(fields.count == 5, "\(r.stdout)")
                guard fields.count == 5 else { continue }
                #expect(fields[0] == ours.metainfo.infoHash.hex)
                #expect(Int(fields[1]) == ours.metainfo.files.count)
                #expect(Int64(fields[2]) == ours.metainfo.totalLength)
                #expect(Int(fields[3]) == 1 << log2)
                #expect(fields[4] == ours.metainfo.name)
            }
        }
    }

    @Test("Starling parses torrents made by libtorrent, with the same info-hash",
          .enabled(if: Tools.libtorrentPython != nil, "python3-libtorrent is not installed"))
    func starlingParsesLibtorrent() throws {
        try withTempDir { dir in
            try writeFile(dir.sub("one.bin"), pseudoRandomBytes(300_001, seed: 33))
            try makeSampleFolder(at: dir.sub("release"))
            for path in [dir.sub("one.bin"), dir.sub("release")] {
                let out = path + ".lt.torrent"
                let r = try Shell.run(Tools.libtorrentPython!, ["-c", Self.libtorrentCreate, path, "32768", out])
                #expect(r.status == 0, "libtorrent: \(r.stderr)")
                guard r.status == 0 else { continue }
                let m = try Metainfo(bytes: readFile(out))
                #expect(m.infoHash.hex == r.stdout.trimmingCharacters(in: .whitespacesAndNewlines))
                #expect(m.pieceLength == 32768)
                #expect(m.trackers == ["http://t/announce"])
                // The same files, whatever order and padding libtorrent chose; and the same data.
                let real = m.files.filter { $0.path.first != ".pad" }
                if path.hasSuffix("release") {
                    #expect(m.isMultiFile)
                    #expect(Set(real.map(\.path)) == Set(sampleFolderOrder))
                } else {
                    #expect(!m.isMultiFile && m.totalLength == 300_001)
                }
                // Starling's reader verifies libtorrent's piece hashes over the same files.
                let root = m.isMultiFile ? path : (path as NSString).deletingLastPathComponent
                let paths = m.files.map { m.isMultiFile ? FilePaths.join(root, $0.path) : path }
                if real.count == m.files.count {
                    let reader = try PieceReader(paths: paths, files: m.files, pieceLength: m.pieceLength)
                    #expect(try reader.hashAllPieces() == m.pieceHashes)
                }
            }
        }
    }
}
