/// What `starling --version` prints: the release version and the commit the binary was
/// built from. A plain `swift build` gives the defaults below; `scripts/package.sh` writes
/// the real values into `BuildStamp.generated.swift` (never committed) and builds with
/// `-DSTARLING_STAMPED`, which swaps that file's definitions for these.
public enum BuildStamp {
    /// The version the next release carries; packages are named after it.
    public static let release = "0.1.0"
    #if !STARLING_STAMPED
    public static let version = release + "-dev"
    public static let commit = "unknown"
    #endif
    /// "0.1.0 (commit 9db2902)".
    public static var description: String { "\(version) (commit \(commit))" }
}
