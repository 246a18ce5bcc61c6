import BitTorrent

extension Metainfo {
    /// Reads and parses a .torrent file; the error names the path once, whichever step failed.
    public static func load(path: String) throws -> Metainfo {
        let bytes = try FilePaths.readAll(path, limit: maxFileSize)
        do {
            return try Metainfo(bytes: bytes)
        } catch {
            throw StorageError("\(path): \(error)")
        }
    }
}
