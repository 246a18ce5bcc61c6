import ArgumentParser
import StarlingNode

/// `starling --version`: the version and the commit it was built from.
let starlingVersion = BuildStamp.description

@main
struct Starling: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "starling",
        abstract: "Push large artifacts to fleets of servers through a BitTorrent-compatible swarm.",
        discussion: """
        Make a torrent of the artifact, run a tracker, seed it from one host and fetch it on every other host: each receiver also serves, so the source is never the bottleneck.

        Example:
          starling make-torrent app.rpm --output app.torrent \\
              --tracker http://10.0.0.1:6969/announce
          starling inspect app.torrent
        """,
        version: starlingVersion,
        subcommands: [MakeTorrentCommand.self, InspectCommand.self, TrackerCommand.self, SeedCommand.self, PeerCommand.self, CtlCommand.self, StatusCommand.self, NodeCommand.self]
    )
}

/// A failure the operator can act on: printed as one line, exit status 1.
struct CLIError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}
