import Foundation
import TestSupport
import Testing

/// Tools the compatibility tests need; each test skips only when its tool is absent.
enum Tools {
    static let mktorrent = TestPaths.which("mktorrent")
    static let tar = TestPaths.which("tar")
    /// The Debian python3 with libtorrent (not a pyenv python, which lacks it).
    static let libtorrentPython: String? = {
        for python in ["/usr/bin/python3", TestPaths.which("python3")].compactMap({ $0 }) {
            if let r = try? Shell.run(python, ["-c", "import libtorrent"], timeout: 30), r.status == 0 { return python }
        }
        return nil
    }()
}

/// A folder that exercises ordering: nested folders, an empty file, and names whose byte-wise
/// order differs from a case-insensitive or per-component order.
func makeSampleFolder(at root: String) throws {
    try writeFile(root + "/sub/Deep/data.bin", pseudoRandomBytes(300_000, seed: 1))
    try writeFile(root + "/a/x", Array("in a folder\n".utf8))
    try writeFile(root + "/a-b/y", Array("dash\n".utf8))
    try writeFile(root + "/a.b", Array("dot\n".utf8))
    try writeFile(root + "/B/upper", pseudoRandomBytes(70_001, seed: 2))
    try writeFile(root + "/Zebra", Array("Z\n".utf8))
    try writeFile(root + "/apple", Array("a\n".utf8))
    try writeFile(root + "/empty", [])
    try writeFile(root + "/_under", pseudoRandomBytes(40_000, seed: 3))
}

/// The byte-wise order of the sample folder's files (what `mktorrent` produces).
let sampleFolderOrder: [[String]] = [
    ["B", "upper"], ["Zebra"], ["_under"], ["a-b", "y"], ["a.b"], ["a", "x"], ["apple"], ["empty"],
    ["sub", "Deep", "data.bin"],
]
