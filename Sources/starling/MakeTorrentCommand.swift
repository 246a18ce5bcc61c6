import ArgumentParser
import Values
#if canImport(Glibc)
import Glibc
#endif
import BitTorrent
import Storage

struct MakeTorrentCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "make-torrent",
        abstract: "Make a .torrent of a file or a folder.",
        discussion: """
        A file gives a single-file torrent, a folder a multi-file torrent with its files in byte-wise sorted order, as mktorrent does, so both give the same info-hash for the same name and piece size.

        With --tgz the folder is first packed into NAME.tgz beside the output (a gzip tarball, as murder ships), and the torrent describes that one archive.

        Without --piece-size, the size is chosen for at most \(TorrentBuilder.automaticPieceCount) pieces (a power of two from \(TorrentBuilder.automaticPieceLengths.smallest >> 10) KiB to \(TorrentBuilder.automaticPieceLengths.largest >> 20) MiB).

        Example:
          starling make-torrent logstash.rpm --output logstash.torrent \\
              --tracker http://10.0.0.1:6969/announce
          starling make-torrent release/ --tgz --output release.torrent \\
              --tracker http://10.0.0.1:6969/announce --piece-size 1MiB
        """
    )

    @Argument(help: "The file or folder to share.")
    var path: String

    @Option(name: .long, help: "Tracker announce URL (repeat for backups, BEP 12). Omit for a gossip-only torrent.")
    var tracker: [String] = []

    @Option(name: .shortAndLong, help: "Where to write the .torrent.")
    var output: String

    @Option(name: .long, help: "Piece size: bytes or with a unit (262144, 256KiB, 1MiB); a power of two, at least 16 KiB.")
    var pieceSize: String?

    @Flag(name: .long, help: "Pack the folder into a gzip tarball first and share that one archive.")
    var tgz = false

    @Option(name: .long, help: "Name inside the torrent (default: the file or folder name).")
    var name: String?

    @Flag(name: .long, help: "Set the private flag (BEP 27).")
    var `private` = false

    @Option(name: .long, help: "A comment to store in the torrent.")
    var comment: String?

    func run() throws {
        var builder = TorrentBuilder()
        builder.trackers = tracker
        builder.isPrivate = `private`
        builder.comment = comment
        builder.createdBy = "starling \(starlingVersion)"
        if let ps = pieceSize {
            guard let n = Units.parseSize(ps), TorrentBuilder.isValidPieceLength(n) else {
                throw ValidationError("--piece-size \(ps): expected a power of two of at least 16 KiB, e.g. 262144, 256KiB or 1MiB")
            }
            builder.pieceLength = Int(n)
        }
        for t in tracker where !(t.hasPrefix("http://") || t.hasPrefix("https://") || t.hasPrefix("udp://")) {
            throw ValidationError("--tracker \(t): expected an http://, https:// or udp:// URL")
        }
        let outputDir = FilePaths.parent(output)
        guard FilePaths.isDirectory(outputDir) else { throw CLIError("cannot write \(output): folder \(outputDir) does not exist") }
        // Fail before hashing gigabytes, not after.
        guard access(outputDir, W_OK) == 0 else {
            throw CLIError("cannot write \(output): folder \(outputDir) is not writable (\(String(cString: strerror(errno))))")
        }
        guard !FilePaths.isDirectory(output) else { throw CLIError("cannot write \(output): it is a folder") }
        // The torrent replaces whatever --output names: never the input, nor a file of its folder.
        let input = FilePaths.realPath(path)
        if let input, let target = FilePaths.resolvedTarget(output), FilePaths.isSameOrInside(target, input) {
            throw CLIError(target == input
                ? "--output \(output) is the input \(path) itself: writing the torrent there would destroy it; choose another --output"
                : "--output \(output) is inside the folder being shared (\(path)): choose an --output outside it")
        }

        var source = path
        var tarball: String?
        if tgz {
            guard FilePaths.isDirectory(path) else { throw CLIError("--tgz packs a folder, but \(path) is not a folder") }
            let base = name ?? FilePaths.lastComponent(path)
            guard !base.isEmpty, base != ".", base != "..", base != ".tgz", !base.contains("/") else {
                throw CLIError("'\(base)' is not a usable archive name: pass --name")
            }
            let archiveName = base.hasSuffix(".tgz") ? base : base + ".tgz"
            let archive = FilePaths.join(outputDir, [archiveName])
            let partial = archive + ".part"
            // An archive written over or inside the folder it packs would destroy it or be packed by the next run.
            if let input, [archive, partial].contains(where: { FilePaths.resolvedTarget($0).map { FilePaths.isSameOrInside($0, input) } ?? false }) {
                throw CLIError("--tgz would write \(archive) over or inside the folder it packs: choose an --output outside \(path)")
            }
            guard FilePaths.lastComponent(output) != archiveName else {
                throw CLIError("--output \(output) is the archive itself: choose another name for the .torrent")
            }
            do {
                _ = try FileDescriptor(path: partial, flags: O_WRONLY | O_CREAT | O_TRUNC)
            } catch let e as StorageError {
                throw CLIError("cannot write \(archive): \(e.errno.map { String(cString: strerror($0)) } ?? e.message)")
            }
            do {
                try TarGz.pack(folder: path, into: partial, rootName: base.hasSuffix(".tgz") ? String(base.dropLast(4)) : base)
                try FilePaths.rename(partial, to: archive)
            } catch {
                FilePaths.remove(partial)
                throw CLIError("cannot pack \(path): \(error)")
            }
            source = archive
            tarball = archive
            builder.name = archiveName
        } else {
            builder.name = name
        }

        let started = ContinuousClock.now
        let built: (bytes: [UInt8], metainfo: Metainfo)
        do {
            built = try builder.build(path: source)
        } catch {
            throw CLIError("cannot make a torrent of \(source): \(error)")
        }
        let elapsed = started.duration(to: .now)
        do {
            try FilePaths.writeAtomically(built.bytes, to: output)
        } catch let e as StorageError {
            let reason = e.errno.map { String(cString: strerror($0)) } ?? e.message
            throw CLIError("cannot write \(output): \(reason)")
        }
        let m = built.metainfo
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        let rate = seconds > 0 ? Double(m.totalLength) / seconds / 1e6 : 0
        if let t = tarball { print("packed \(path) into \(t)") }
        print("wrote \(output): \(m.name), \(Units.formatBytes(m.totalLength)) in \(m.pieceCount) pieces of \(Units.formatBytes(Int64(m.pieceLength)))")
        print("info-hash \(m.infoHash.hex) (hashed at \(Int(rate)) MB/s)")
    }
}
