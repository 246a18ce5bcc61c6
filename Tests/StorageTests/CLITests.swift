import Foundation
import TestSupport
import Testing
import Values

/// Runs the built `starling` binary (`TestPaths.starling`).
enum StarlingBinary {
    static var packageRoot: String { TestPaths.packageRoot.path }
    static var path: String { TestPaths.starling }

    static func run(_ args: [String], cwd: String? = nil) throws -> RunResult {
        guard FileManager.default.isExecutableFile(atPath: path) else {
            throw TestFailure("the starling binary is missing at \(path): run `swift build` first (or set STARLING_BIN)")
        }
        // A fixed width, so help wrapping does not depend on the caller's terminal.
        return try Shell.run(path, args, cwd: cwd, environment: ["COLUMNS": "80"], timeout: 120)
    }
}

/// Asserts the shape every operator-facing failure must have.
func expectCleanFailure(_ r: RunResult, mentioning: String? = nil, sourceLocation: SourceLocation = #_sourceLocation) {
    #expect(!r.signaled, "crashed (signal \(r.status)): \(r.stderr)", sourceLocation: sourceLocation)
    #expect(r.status != 0, "exit status 0 on bad input", sourceLocation: sourceLocation)
    let lines = r.stderr.split(separator: "\n", omittingEmptySubsequences: true)
    #expect(lines.count == 1, "expected one error line, got: \(r.stderr)", sourceLocation: sourceLocation)
    #expect(r.stdout.isEmpty, "unexpected output: \(r.stdout)", sourceLocation: sourceLocation)
    if let m = mentioning {
        #expect(r.stderr.contains(m), "error does not mention '\(m)': \(r.stderr)", sourceLocation: sourceLocation)
    }
}

func listing(_ dir: String) -> [String] {
    ((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []).sorted()
}

@Suite("starling CLI", .serialized, .timeLimit(.minutes(3)), .tags(.endToEnd))
struct CLITests {
    // MARK: help and version

    @Test("starling --help lists make-torrent and inspect")
    func subcommandsListed() throws {
        let names = try Self.subcommands()
        #expect(names.contains("make-torrent") && names.contains("inspect"), "\(names)")
    }

    /// The subcommands `starling --help` lists, so every future command is checked too.
    static func subcommands() throws -> [String] {
        let out = try StarlingBinary.run(["--help"]).stdout
        let lines = out.split(separator: "\n", omittingEmptySubsequences: false)
        guard let start = lines.firstIndex(of: "SUBCOMMANDS:") else { return [] }
        return lines[(start + 1)...].prefix(while: { !$0.isEmpty })
            .filter { $0.hasPrefix("  ") && !$0.hasPrefix("   ") }
            .compactMap { $0.split(separator: " ").first.map(String.init) }
            .filter { $0 != "help" }
    }

    @Test("--help, and --help on every subcommand, succeed and show an example that is not broken")
    func helpEverywhere() throws {
        try checkHelp(["--help"])
        try checkHelp(["help", "make-torrent"])
        for name in try Self.subcommands() { try checkHelp([name, "--help"]) }
    }

    func checkHelp(_ args: [String]) throws {
        let r = try StarlingBinary.run(args)
        #expect(r.status == 0 && !r.signaled, "\(r.stderr)")
        #expect(r.stdout.contains("OVERVIEW:"))
        #expect(r.stdout.contains("Example:"), "\(args): no example")
        #expect(r.stdout.contains("USAGE:"))
        // Every example line is a whole command (or an indented continuation), never a line
        // the help printer broke in the middle.
        let lines = r.stdout.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        let start = try #require(lines.firstIndex(of: "Example:"))
        for line in lines[(start + 1)...].prefix(while: { !$0.isEmpty }) {
            #expect(line.hasPrefix("  starling ") || line.hasPrefix("      "), "\(args): broken example line: '\(line)'")
            #expect(line.count <= 80, "\(args): example line wider than 80 columns: '\(line)'")
        }
        // Prose paragraphs wrap evenly: a line followed by more of the same paragraph is not short.
        let prose = lines[..<start].dropFirst() // after OVERVIEW
        for (i, line) in zip(prose.indices, prose) where i + 1 < start && !line.isEmpty && !lines[i + 1].isEmpty {
            #expect(line.count >= 50, "\(args): ragged line break in help text: '\(line)'")
        }
    }

    @Test("--version prints the version and the commit it was built from")
    func version() throws {
        let r = try StarlingBinary.run(["--version"])
        #expect(r.status == 0)
        // "0.1.0 (commit 9db2902)" from scripts/package.sh, "0.1.0-dev (commit unknown)" otherwise.
        let words = r.stdout.trimmingCharacters(in: .whitespacesAndNewlines).split(separator: " ")
        #expect(words.count == 3 && words[1] == "(commit" && words[2].hasSuffix(")"), "\(r.stdout)")
        #expect(words.first.map { $0.split(separator: "-")[0].split(separator: ".").count == 3 } == true, "\(r.stdout)")
    }

    // MARK: make-torrent and inspect, the happy path

    @Test("make-torrent then inspect, text and JSON")
    func makeAndInspect() throws {
        try withTempDir { dir in
            try writeFile(dir.sub("app.rpm"), pseudoRandomBytes(600_000, seed: 40))
            let make = try StarlingBinary.run(["make-torrent", dir.sub("app.rpm"), "--tracker", "http://t:6969/announce",
                                               "--output", dir.sub("app.torrent"), "--piece-size", "256KiB"])
            #expect(make.status == 0, "\(make.stderr)")
            #expect(make.stdout.contains("info-hash"))
            #expect(listing(dir.path) == ["app.rpm", "app.torrent"])
            let text = try StarlingBinary.run(["inspect", dir.sub("app.torrent")])
            #expect(text.status == 0)
            #expect(text.stdout.contains("name:        app.rpm"))
            #expect(text.stdout.contains("pieces:      3 x 256.0 KiB"))
            let json = try StarlingBinary.run(["inspect", "--json", dir.sub("app.torrent")])
            #expect(json.status == 0)
            let obj = try #require(try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [String: Any])
            #expect(obj["name"] as? String == "app.rpm")
            #expect(obj["totalLength"] as? Int == 600_000)
            #expect(obj["pieceCount"] as? Int == 3)
            #expect((obj["infoHash"] as? String)?.count == 40)
            #expect(obj["trackers"] as? [String] == ["http://t:6969/announce"])
        }
    }

    @Test("--tgz packs the folder beside the output; two runs give the same archive and info-hash")
    func tgzDeterministic() throws {
        try withTempDir { dir in
            try makeSampleFolder(at: dir.sub("release"))
            var hashes: [String] = []
            var archives: [[UInt8]] = []
            for run in 0..<2 {
                let out = dir.sub("out\(run)")
                try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
                let r = try StarlingBinary.run(["make-torrent", dir.sub("release"), "--tgz", "--tracker", "http://t/a",
                                                "--output", out + "/release.torrent"])
                #expect(r.status == 0, "\(r.stderr)")
                #expect(listing(out) == ["release.tgz", "release.torrent"])
                let j = try StarlingBinary.run(["inspect", "--json", out + "/release.torrent"])
                let obj = try #require(try JSONSerialization.jsonObject(with: Data(j.stdout.utf8)) as? [String: Any])
                #expect(obj["name"] as? String == "release.tgz")
                #expect(obj["multiFile"] as? Bool == false)
                hashes.append(obj["infoHash"] as? String ?? "")
                archives.append(try readFile(out + "/release.tgz"))
            }
            #expect(hashes[0] == hashes[1])
            #expect(archives[0] == archives[1])
        }
    }

    @Test("--tgz refuses to write its archive inside the folder it packs")
    func tgzInsideFolder() throws {
        try withTempDir { dir in
            try makeSampleFolder(at: dir.sub("release"))
            let before = listing(dir.sub("release"))
            let r = try StarlingBinary.run(["make-torrent", dir.sub("release"), "--tgz",
                                            "--output", dir.sub("release/release.torrent")])
            expectCleanFailure(r, mentioning: "inside the folder")
            #expect(listing(dir.sub("release")) == before)
            let dot = try StarlingBinary.run(["make-torrent", ".", "--tgz", "--output", dir.sub("x.torrent")],
                                             cwd: dir.sub("release"))
            expectCleanFailure(dot, mentioning: "--name")
        }
    }

    @Test("make-torrent refuses an --output that is its input file, also through a symlink, and keeps the file")
    func makeOutputOverInput() throws {
        try withTempDir { dir in
            let artifact = pseudoRandomBytes(70_000, seed: 17)
            try writeFile(dir.sub("app.rpm"), artifact)
            #expect(symlink(dir.sub("app.rpm"), dir.sub("link.torrent")) == 0)
            for output in [dir.sub("app.rpm"), dir.sub("link.torrent")] {
                let r = try StarlingBinary.run(["make-torrent", dir.sub("app.rpm"), "--output", output])
                expectCleanFailure(r, mentioning: "would destroy it")
                #expect(try readFile(dir.sub("app.rpm")) == artifact)
            }
            let relative = try StarlingBinary.run(["make-torrent", "app.rpm", "--output", "./app.rpm"], cwd: dir.path)
            expectCleanFailure(relative, mentioning: "would destroy it")
            #expect(try readFile(dir.sub("app.rpm")) == artifact)
            #expect(listing(dir.path) == ["app.rpm", "link.torrent"])
        }
    }

    @Test("make-torrent refuses an --output inside the folder it shares (directly or through a symlink) and keeps its files")
    func makeOutputInsideFolder() throws {
        try withTempDir { dir in
            try makeSampleFolder(at: dir.sub("release"))
            #expect(symlink(dir.sub("release"), dir.sub("alias")) == 0)
            let before = listing(dir.sub("release"))
            let apple = try readFile(dir.sub("release/apple"))
            for output in [dir.sub("release/apple"), dir.sub("release/sub/new.torrent"), dir.sub("alias/apple")] {
                let r = try StarlingBinary.run(["make-torrent", dir.sub("release"), "--output", output])
                expectCleanFailure(r, mentioning: "inside the folder")
            }
            #expect(listing(dir.sub("release")) == before)
            #expect(listing(dir.sub("release/sub")) == ["Deep"])
            #expect(try readFile(dir.sub("release/apple")) == apple)
        }
    }

    @Test("--tgz refuses an archive path that is the folder it packs")
    func tgzOverInput() throws {
        try withTempDir { dir in
            try makeSampleFolder(at: dir.sub("release.tgz"))
            let before = listing(dir.sub("release.tgz"))
            let r = try StarlingBinary.run(["make-torrent", dir.sub("release.tgz"), "--tgz", "--output", dir.sub("r.torrent")])
            expectCleanFailure(r, mentioning: "over or inside the folder")
            #expect(listing(dir.path) == ["release.tgz"])
            #expect(listing(dir.sub("release.tgz")) == before)
        }
    }

    @Test("seed and peer refuse an admin listener off loopback without a token, naming the fix",
          arguments: ["0.0.0.0:9471", "10.77.0.1:9471", "[::]:9471"])
    func adminOffLoopbackNeedsToken(_ listen: String) throws {
        // Before the fix the seeder started and served unauthenticated admin actions (killed here by the timeout).
        try expectSeedAndPeerRefuse(["--admin-listen", listen], mentioning: "--admin-token-file")
    }

    /// `seed` and `peer` of a small torrent, each with `extra`, must fail with one line naming `text`.
    func expectSeedAndPeerRefuse(_ extra: [String], mentioning text: String) throws {
        try withTempDir { dir in
            try writeFile(dir.sub("f.bin"), pseudoRandomBytes(40_000, seed: 5))
            let made = try StarlingBinary.run(["make-torrent", dir.sub("f.bin"), "--output", dir.sub("f.torrent")])
            #expect(made.status == 0, "\(made.stderr)")
            for args in [["seed", dir.sub("f.torrent"), dir.sub("f.bin")], ["peer", dir.sub("f.torrent"), dir.sub("out.bin")]] {
                let r = try Shell.run(StarlingBinary.path, args + ["--ip", "127.0.0.1", "--no-tracker"] + extra, timeout: 20)
                expectCleanFailure(r, mentioning: text)
            }
        }
    }

    @Test("a bad --ip is refused by the option itself", arguments: ["10.0.0.999", "host.example", ""])
    func badIP(_ value: String) throws {
        try expectSeedAndPeerRefuse(["--ip", value], mentioning: "expected an IP address such as 10.0.0.7")
    }

    @Test("a bad --max-change is refused naming the option and the form it expects",
          arguments: ["0/60s", "5mbit", "5mbit/0s", "-5mbit/60s", "5mbit/soon"])
    func badMaxChange(_ value: String) throws {
        try expectSeedAndPeerRefuse(["--max-change=\(value)"], mentioning: "--max-change \(value): expected RATE/INTERVAL, e.g. 5mbit/60s")
    }

    @Test("a bad --site is refused by seed, peer and the tracker, naming the option and the form",
          arguments: [("rack1", "expected NAME=CIDR"), ("rack1=10.1.0.0/33", "is not an address block"),
                      ("a b=10.1.0.0/16", "a site name is")])
    func badSite(_ value: String, _ message: String) throws {
        try expectSeedAndPeerRefuse(["--site", value], mentioning: message)
        let r = try Shell.run(StarlingBinary.path, ["tracker", "--listen", "127.0.0.1:0", "--site", value], timeout: 20)
        expectCleanFailure(r, mentioning: message)
        let twice = try Shell.run(StarlingBinary.path, ["tracker", "--listen", "127.0.0.1:0", "--site", "r=10.1.0.0/16", "--site", "r=10.2.0.0/16"], timeout: 20)
        expectCleanFailure(twice, mentioning: "site 'r' is given twice")
    }

    @Test("inspect refuses a FIFO, a device and a folder at once, before reading")
    func inspectSpecialFiles() throws {
        try withTempDir { dir in
            #expect(mkfifo(dir.sub("pipe.torrent"), 0o600) == 0)
            for input in [dir.sub("pipe.torrent"), "/dev/zero", dir.path] {
                // Before the fix, opening the FIFO blocked until Shell.run's timeout killed it.
                let r = try Shell.run(StarlingBinary.path, ["inspect", input], timeout: 20)
                expectCleanFailure(r, mentioning: "not a regular file")
            }
        }
    }

    @Test("a FIFO given as the node configuration or the gossip key is refused at once, not waited on")
    func configAndKeyFIFOs() throws {
        try withTempDir { dir in
            #expect(mkfifo(dir.sub("node.yaml"), 0o600) == 0)
            #expect(mkfifo(dir.sub("gossip.key"), 0o600) == 0)
            let check = try Shell.run(StarlingBinary.path, ["node", "--check-config", dir.sub("node.yaml")], timeout: 20)
            expectCleanFailure(check, mentioning: "not a regular file (it is a FIFO)")
            try writeFile(dir.sub("f.bin"), [1, 2, 3])
            let made = try StarlingBinary.run(["make-torrent", dir.sub("f.bin"), "--output", dir.sub("f.torrent")])
            #expect(made.status == 0, "\(made.stderr)")
            let seed = try Shell.run(StarlingBinary.path, ["seed", dir.sub("f.torrent"), dir.sub("f.bin"), "--ip", "127.0.0.1",
                                                           "--gossip-subnet", "127.0.0.0/8", "--gossip-key-file", dir.sub("gossip.key")],
                                     timeout: 20)
            #expect(seed.status != 0 && !seed.signaled)
            #expect(seed.stderr.contains("not a regular file (it is a FIFO)"), "\(seed.stderr)")
        }
    }

    // MARK: bad input

    static let badTorrents: [(String, [UInt8])] = {
        let valid = Array("d8:announce10:http://t/a4:infod6:lengthi1e4:name1:a12:piece lengthi16384e6:pieces20:".utf8)
            + [UInt8](repeating: 1, count: 20) + Array("ee".utf8)
        let unsafe = Array("d4:infod5:filesld6:lengthi1e4:pathl2:..4:evileee4:name1:x12:piece lengthi16384e6:pieces20:".utf8)
            + [UInt8](repeating: 1, count: 20) + Array("ee".utf8)
        return [
            ("truncated", Array(valid.prefix(valid.count / 2))),
            ("deeply-nested", [UInt8](repeating: UInt8(ascii: "l"), count: 200_000)
                + [UInt8](repeating: UInt8(ascii: "e"), count: 200_000)),
            ("not-bencode", Array("<html>this is not a torrent</html>\n".utf8)),
            ("empty", []),
            ("trailing-garbage", valid + Array("junk".utf8)),
            ("unsafe-path", unsafe),
            ("not-a-dictionary", Array("li1ee".utf8)),
        ]
    }()

    @Test("inspect refuses each bad .torrent with one line and a non-zero exit",
          arguments: badTorrents.map(\.0))
    func inspectBadTorrent(_ label: String) throws {
        let bytes = try #require(Self.badTorrents.first { $0.0 == label }?.1)
        try withTempDir { dir in
            let path = dir.sub("\(label).torrent")
            try writeFile(path, bytes)
            let r = try StarlingBinary.run(["inspect", path])
            expectCleanFailure(r, mentioning: path)
            if label == "unsafe-path" { #expect(r.stderr.contains("unsafe path")) }
        }
    }

    @Test("inspect refuses an oversized (> 32 MiB) file without reading it all")
    func inspectOversized() throws {
        try withTempDir { dir in
            let path = dir.sub("huge.torrent")
            #expect(FileManager.default.createFile(atPath: path, contents: nil))
            #expect(truncate(path, off_t(32 << 20) + 1) == 0) // sparse: costs no disk
            let r = try StarlingBinary.run(["inspect", path])
            expectCleanFailure(r, mentioning: "limit")
        }
    }

    @Test("inspect of a missing file or a folder fails cleanly")
    func inspectMissing() throws {
        try withTempDir { dir in
            expectCleanFailure(try StarlingBinary.run(["inspect", dir.sub("absent.torrent")]), mentioning: "absent.torrent")
            expectCleanFailure(try StarlingBinary.run(["inspect", dir.path]))
        }
    }

    @Test("make-torrent of a missing input fails cleanly and writes nothing")
    func makeMissingInput() throws {
        try withTempDir { dir in
            let r = try StarlingBinary.run(["make-torrent", dir.sub("absent.rpm"), "--tracker", "http://t/a",
                                            "--output", dir.sub("out.torrent")])
            expectCleanFailure(r, mentioning: "absent.rpm")
            #expect(listing(dir.path).isEmpty)
        }
    }

    @Test("make-torrent of a FIFO or a device fails at once instead of blocking")
    func makeSpecialFile() throws {
        try withTempDir { dir in
            #expect(mkfifo(dir.sub("pipe"), 0o600) == 0)
            for input in [dir.sub("pipe"), "/dev/null"] {
                // Shell.run kills it and throws if it blocks.
                let r = try Shell.run(StarlingBinary.path, ["make-torrent", input, "--output", dir.sub("o.torrent")],
                                      timeout: 20)
                expectCleanFailure(r, mentioning: "not a regular file")
            }
            #expect(listing(dir.path) == ["pipe"])
        }
    }

    @Test("make-torrent into a folder that does not exist fails cleanly")
    func makeMissingOutputFolder() throws {
        try withTempDir { dir in
            try writeFile(dir.sub("f"), [1, 2, 3])
            let r = try StarlingBinary.run(["make-torrent", dir.sub("f"), "--output", dir.sub("no/such/out.torrent")])
            expectCleanFailure(r, mentioning: "does not exist")
            #expect(listing(dir.path) == ["f"])
        }
    }

    @Test("make-torrent into an unwritable folder fails cleanly and leaves no partial file")
    func makeUnwritableOutput() throws {
        try withTempDir { dir in
            try writeFile(dir.sub("in/f.bin"), pseudoRandomBytes(50_000, seed: 41))
            try makeSampleFolder(at: dir.sub("in/folder"))
            // /proc refuses new files even to root; a 0555 folder refuses them to everyone else.
            var targets = ["/proc"]
            if geteuid() != 0 {
                try FileManager.default.createDirectory(atPath: dir.sub("ro"), withIntermediateDirectories: true)
                #expect(chmod(dir.sub("ro"), 0o555) == 0)
                targets.append(dir.sub("ro"))
            }
            for target in targets {
                let before = listing(target)
                for args in [[dir.sub("in/f.bin")], [dir.sub("in/folder")], [dir.sub("in/folder"), "--tgz"]] {
                    let r = try StarlingBinary.run(["make-torrent"] + args + ["--output", target + "/out.torrent"])
                    expectCleanFailure(r, mentioning: "cannot write")
                    #expect(!FileManager.default.fileExists(atPath: target + "/out.torrent"))
                    #expect(listing(target).filter { $0.contains("out") || $0.contains(".tgz") || $0.contains(".tmp") }
                        .isEmpty)
                }
                if target != "/proc" { #expect(listing(target) == before) }
            }
            #expect(listing(dir.sub("in")) == ["f.bin", "folder"])
        }
    }

    @Test("an invalid piece size is refused with a clear message", arguments: ["1000", "3MiB", "8KiB", "lots"])
    func badPieceSize(_ size: String) throws {
        try withTempDir { dir in
            try writeFile(dir.sub("f"), [1])
            let r = try StarlingBinary.run(["make-torrent", dir.sub("f"), "--output", dir.sub("o.torrent"),
                                            "--piece-size", size])
            #expect(r.status != 0 && !r.signaled)
            #expect(r.stderr.contains("--piece-size"))
            #expect(listing(dir.path) == ["f"])
        }
    }
}
