import ArgumentParser
import Bencode
import BitTorrent
import Storage
import Values

struct InspectCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "inspect",
        abstract: "Show what a .torrent holds: name, size, pieces, info-hash, files and trackers.",
        discussion: """
        Example:
          starling inspect app.torrent
          starling inspect app.torrent --json | jq -r .infoHash
        """
    )

    @Argument(help: "The .torrent file.")
    var torrent: String

    @Flag(name: .long, help: "Print JSON for scripts.")
    var json = false

    func run() throws {
        let m = try Metainfo.load(path: torrent)
        if json {
            print(inspectJSON(m))
            return
        }
        print("name:        \(m.name)")
        print("size:        \(Units.formatBytes(m.totalLength)) (\(m.totalLength) bytes)")
        print("pieces:      \(m.pieceCount) x \(Units.formatBytes(Int64(m.pieceLength)))")
        print("info-hash:   \(m.infoHash.hex)")
        print("private:     \(m.isPrivate ? "yes" : "no")")
        print("trackers:    \(m.trackers.isEmpty ? "(none: gossip only)" : m.trackers.joined(separator: ", "))")
        print("files:       \(m.files.count)")
        for f in m.files {
            print("  \(f.path.joined(separator: "/"))  \(f.length)")
        }
    }

    func inspectJSON(_ m: Metainfo) -> String {
        let files = m.files.map { f in
            "{\"path\":\(JSONText.quote(f.path.joined(separator: "/"))),\"length\":\(f.length)}"
        }
        let trackers = m.trackers.map(JSONText.quote)
        return "{\"name\":\(JSONText.quote(m.name)),\"totalLength\":\(m.totalLength),\"pieceLength\":\(m.pieceLength),"
            + "\"pieceCount\":\(m.pieceCount),\"infoHash\":\"\(m.infoHash.hex)\",\"private\":\(m.isPrivate),"
            + "\"multiFile\":\(m.isMultiFile),\"trackers\":[\(trackers.joined(separator: ","))],"
            + "\"files\":[\(files.joined(separator: ","))]}"
    }
}
